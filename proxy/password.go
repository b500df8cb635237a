package proxy

import (
	"context"
	"errors"
	"fmt"
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

// appPasswordLogin checks pass as an app password (authCtx bounds the
// check) and, when it is one and valid, logs in to the backend as the
// master user on behalf of its mailbox, as a token login does. The
// throttle's done is called with the check's verdict, except for an error
// wrapping auth.ErrNotAppPassword (nothing was checked): the caller goes
// on with the attempt and calls done itself.
func (c *Conn) appPasswordLogin(ctx, authCtx context.Context, mech, user, pass string, req LoginRequest, done func(auth.Outcome)) (*Session, error) {
	ap, err := c.s.opts.AppPasswords.Verifier.VerifyAppPassword(authCtx, user, pass, c.proto, c.Raw.RemoteAddr().String())
	if errors.Is(err, auth.ErrNotAppPassword) {
		return nil, err
	}
	if err == nil && ap.User == "" {
		err = fmt.Errorf("%w: the app-password check returned no mailbox", auth.ErrUnavailable) // fail closed
	}
	done(auth.AppPasswordOutcome(err))
	if err != nil {
		return nil, &appPasswordError{id: ap.ID, err: err}
	}
	id := auth.Identity{User: ap.User, Mechanism: mech, Source: auth.SourceAppPassword}
	if err := safeIdentity(id); err != nil {
		return nil, &appPasswordError{id: ap.ID, err: err}
	}
	bs, err := c.backendLogin(ctx, req, c.s.MasterAuth(id.User))
	if err != nil {
		return nil, &appPasswordError{id: ap.ID, err: err}
	}
	return &Session{BackendSession: bs, Identity: id, AppPassword: ap.ID,
		Log: c.Log.With("user", id.User, "mech", mech, "apppass", ap.ID)}, nil
}

// appPasswordError is a failed app-password login, with the password's
// public id for the login line (apppass=<id>).
type appPasswordError struct {
	id  string
	err error
}

func (e *appPasswordError) Error() string { return e.err.Error() }
func (e *appPasswordError) Unwrap() error { return e.err }

// appPasswordAttrs are the login line's fields naming the app password of a
// failed login, if any.
func appPasswordAttrs(err error) []any {
	if e := (*appPasswordError)(nil); errors.As(err, &e) && e.id != "" {
		return []any{"apppass", e.id}
	}
	return nil
}
