package auth

import (
	"context"
	"errors"
)

// SourceAppPassword is Identity.Source of a login with an app password.
const SourceAppPassword = "app_password"

// ErrNotAppPassword: the password a client gave does not have the form of
// an app password. Nothing was hashed and no store was asked: the caller
// may try it as the user's own password (passthrough), or refuse it.
var ErrNotAppPassword = errors.New("auth: not an app password")

// AppPassword is an app password a login gave: its public id (safe to log)
// and the mailbox it opens.
type AppPassword struct {
	ID   string // the password's public lookup id; "" if unknown
	User string // the mailbox address, lower case; set on success only
}

// AppPasswords checks app passwords for the login path (package proxy);
// cmd adapts the store (package apppass) to it, so that neither auth nor
// proxy depends on the store.
//
// VerifyAppPassword checks a login of user with password over proto
// ("imap", "smtp", "pop3", "sieve") from clientIP. Errors: one wrapping
// ErrNotAppPassword, at once (not an app password, nothing hashed); one
// wrapping ErrInvalidCredentials (refused: wrong, revoked, expired, out
// of scope); one wrapping ErrUnavailable (the store failed). A refusal
// returns the password's ID when it is known. A well-formed password costs
// one slow hash: callers throttle before calling.
//
// IsAppPassword reports, without any lookup or hash, whether password has
// the form of an app password, so that the caller can throttle it before
// checking: such a password cannot be guessed, so a wrong one is charged
// to the client's address, never to the user it names.
type AppPasswords interface {
	VerifyAppPassword(ctx context.Context, user, password, proto, clientIP string) (AppPassword, error)
	IsAppPassword(password string) bool
}

// AppPasswordOutcome is what an app-password check came to, for the
// throttle: a refusal is a failure, an outage proves nothing.
func AppPasswordOutcome(err error) Outcome {
	switch {
	case err == nil:
		return AttemptSucceeded
	case errors.Is(err, ErrUnavailable):
		return AttemptUndecided
	case errors.Is(err, ErrInvalidCredentials):
		return AttemptFailed
	}
	return AttemptUndecided
}
