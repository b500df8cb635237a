package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Password passthrough (Options.Passwords), the parts every front shares.
// The password is held only for the duration of the backend login: it is
// not logged, not cached and not kept in the session.

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
