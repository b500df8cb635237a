package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Password passthrough (Options.Passwords), the parts IMAP and SMTP share.
// The password is held only for the duration of the backend login: it is
// not logged, not cached and not kept in the session.

// mechLOGIN is the obsolete but widespread LOGIN SASL mechanism
// (draft-murchison-sasl-login): "Username:", then "Password:".
const mechLOGIN = "LOGIN"

// Challenges of the LOGIN mechanism, before base64.
var (
	loginUserChallenge = []byte("Username:")
	loginPassChallenge = []byte("Password:")
)

// sourcePassword is auth.Identity.Source of a password login.
const sourcePassword = "password"

// passwordLoginTimeout is the least time a backend login with the user's own
// password may take: Dovecot answers a wrong password after 2 s, and delays
// further attempts from the same address by up to 15 s (its auth penalty),
// which must not look like an outage.
const passwordLoginTimeout = 20 * time.Second

// backendLoginTimeout bounds a backend dial and login.
func (s *Server) backendLoginTimeout(ownPassword bool) time.Duration {
	if ownPassword {
		return max(s.limits.DialTimeout, passwordLoginTimeout)
	}
	return s.limits.DialTimeout
}

// passwordThrottle returns Options.Passwords.Throttle, or one that lets
// everything through.
func (s *Server) passwordThrottle() Throttle {
	if s.opts.Passwords.Throttle == nil {
		return noThrottle{}
	}
	return s.opts.Passwords.Throttle
}

type noThrottle struct{}

func (noThrottle) Begin(context.Context, string, string) (func(auth.Outcome), error) {
	return func(auth.Outcome) {}, nil
}
func (noThrottle) Failure(string, string) {}

// passwordOutcome is what a backend login with the user's own password came
// to, for the throttle: refused credentials are a failure; an outage, a
// client gone or a full pool prove nothing.
func passwordOutcome(err error) auth.Outcome {
	switch {
	case err == nil:
		return auth.AttemptSucceeded
	case errors.Is(err, errBackendRefused):
		return auth.AttemptFailed
	}
	return auth.AttemptUndecided
}

// checkPassword refuses, before anything reaches the backend, what cannot
// be a valid login: a user name that is unsafe on a protocol line or holds
// Dovecot's master user separator "*" (which would make it a master login),
// an empty password, or one with a NUL (it cannot travel in PLAIN).
func checkPassword(user, password string) error {
	if !auth.SafeMailbox(user) {
		return fmt.Errorf("%w: unacceptable user name", auth.ErrInvalidCredentials)
	}
	if password == "" || strings.IndexByte(password, 0) >= 0 {
		return fmt.Errorf("%w: empty password or one with a NUL", auth.ErrInvalidCredentials)
	}
	return nil
}

// plainCredentials decodes a PLAIN message for password passthrough. An
// authorization identity other than the user's own is refused: passthrough
// logs users in as themselves only.
func plainCredentials(msg []byte) (user, password string, err error) {
	authz, authc, pass, err := auth.DecodePLAIN(msg)
	if err != nil {
		return "", "", err
	}
	if authz != "" && !strings.EqualFold(authz, authc) {
		return "", "", fmt.Errorf("%w: PLAIN authorization identity differs from the user", auth.ErrInvalidCredentials)
	}
	return authc, pass, nil
}
