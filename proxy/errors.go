package proxy

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"

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

// SMTP replies of the authentication phase (RFC 4954, RFC 3463). go-smtp
// sends an *smtp.SMTPError as is and err.Error() for anything else, so every
// error given back to it is one of these.
var (
	smtpReplyMalformed = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid SASL message"}
	smtpReplyInvalid   = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	smtpReplyTempFail  = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}

	smtpReplyTooManySessions = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many sessions, try again later"}
	smtpReplyBlocked         = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins from your network, try again later"}
)

type smtpAuthResult struct {
	result   string
	reply    *smtp.SMTPError
	internal bool // an unexpected error: log it loudly
}

// smtpAuthReply is the one place where authentication and backend-login
// errors become SMTP replies: a refused token and a missing mailbox look the
// same to the client (535 5.7.8); an outage is temporary (454 4.7.0).
func smtpAuthReply(err error) smtpAuthResult {
	switch {
	case errors.Is(err, errClientGone), errors.Is(err, context.Canceled):
		return smtpAuthResult{result: resultAborted, reply: smtpReplyTempFail}
	case errors.Is(err, errTooManySessions):
		return smtpAuthResult{result: resultLimited, reply: smtpReplyTooManySessions}
	case errors.Is(err, auth.ErrBlocked):
		return smtpAuthResult{result: resultBlocked, reply: smtpReplyBlocked}
	case errors.Is(err, auth.ErrMalformed), errors.Is(err, auth.ErrCanceled):
		return smtpAuthResult{result: resultMalformed, reply: smtpReplyMalformed}
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrThrottled), errors.Is(err, errBackendAuthz),
		errors.Is(err, errBackendRefused):
		return smtpAuthResult{result: resultInvalid, reply: smtpReplyInvalid}
	case errors.Is(err, auth.ErrUnavailable), errors.Is(err, errBackendUnavailable):
		return smtpAuthResult{result: resultUnavailable, reply: smtpReplyTempFail}
	default:
		return smtpAuthResult{result: resultUnavailable, reply: smtpReplyTempFail, internal: true}
	}
}
