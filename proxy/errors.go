package proxy

import (
	"errors"
	"fmt"

	"github.com/mailgate/mailgate/auth"
)

// Errors of the backend login. Their text goes to the log only.
var (
	// errBackendAuthz: the backend accepted the master user but not the
	// target mailbox (Dovecot NO [AUTHORIZATIONFAILED]: no such user).
	errBackendAuthz = errors.New("backend refused the mailbox")
	// errBackendUnavailable: the backend could not be reached or did not
	// complete the login (down, slow, TLS failure, master login refused).
	errBackendUnavailable = errors.New("backend unavailable")
	// errBackendRefused: the backend refused the user's own credentials
	// (password passthrough: wrong password, unknown user).
	errBackendRefused = errors.New("backend refused the credentials")
	// errClientGone: the client closed its connection, or it was closed to
	// make room, while its login was under way. Nobody is told anything.
	errClientGone = errors.New("client gone")
)

// errUnsafeIdentity: the authenticator vouched for a name that cannot go on
// a backend protocol line (CR, LF, NUL, quotes...). auth.Policy never does;
// the proxy checks again, fails closed, and treats it as a refused login.
var errUnsafeIdentity = fmt.Errorf("%w: the authenticator returned an unsafe mailbox name", auth.ErrInvalidCredentials)

// safeIdentity checks a verified identity before it reaches a backend.
func safeIdentity(id auth.Identity) error {
	if !auth.SafeMailbox(id.User) {
		return errUnsafeIdentity
	}
	return nil
}

// Results, as logged and counted.
const (
	resultOK          = "ok"
	resultInvalid     = "invalid"
	resultUnavailable = "unavailable"
	resultMalformed   = "malformed"
	resultLimited     = "limited" // no seat in the logged-in pool
	resultAborted     = "aborted" // the client went away during the login
	resultBlocked     = "blocked" // the client's network is blocked after many failures
)
