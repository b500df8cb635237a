package apppass

import (
	"errors"
	"fmt"

	"github.com/mailgate/mailgate/auth"
)

// Errors of Verify. A refused app password is a *Refusal wrapping one of
// ErrInvalid, ErrProtocol or ErrSuspended and auth.ErrInvalidCredentials;
// the client gets the same authentication failure for all three, the log
// gets Refusal.Reason. A store outage wraps auth.ErrUnavailable.
var (
	// ErrNotAppPassword: the value does not have the form of an app
	// password, so the caller may try it as a password (passthrough).
	// Nothing was hashed and the store was not asked.
	ErrNotAppPassword = errors.New("apppass: not an app password")
	// ErrInvalid: unknown id, wrong secret, another user's password,
	// revoked or expired.
	ErrInvalid = errors.New("apppass: invalid app password")
	// ErrProtocol: the password is right but not for this protocol (its
	// scope, or the policy, does not include it).
	ErrProtocol = errors.New("apppass: app password not valid for this protocol")
	// ErrSuspended: the password is right but the user's provider link is
	// suspended (the provider refused a refresh); the user must sign in
	// on the page again.
	ErrSuspended = errors.New("apppass: app passwords suspended until the user signs in again")
)

// Errors of the management and provider-link operations, wrapped with a
// detail.
var (
	// ErrBadUser: the user is not a mailbox address (see auth.ParseMailbox).
	ErrBadUser = errors.New("apppass: invalid user")
	// ErrBadName: the name is empty, too long or has control characters.
	ErrBadName = errors.New("apppass: invalid name")
	// ErrNotAllowed: a protocol or an expiry outside the policy.
	ErrNotAllowed = errors.New("apppass: not allowed by policy")
	// ErrTooMany: the user already has Policy.MaxPerUser app passwords.
	ErrTooMany = errors.New("apppass: too many app passwords")
	// ErrNotFound: no such (unrevoked) app password of this user.
	ErrNotFound = errors.New("apppass: no such app password")
	// ErrNoLink: the user has no provider link (no refresh token stored).
	ErrNoLink = errors.New("apppass: no provider link")
	// ErrNoKey: the store was opened without Options.Keys.
	ErrNoKey = errors.New("apppass: no encryption key configured")
	// ErrKey: a refresh token could not be decrypted: its key is not in
	// the keyring, or it does not authenticate under it.
	ErrKey = errors.New("apppass: cannot decrypt refresh token")
	// ErrSchemaTooNew: the database was migrated by a newer mailgate.
	ErrSchemaTooNew = errors.New("apppass: database schema is newer than this mailgate")
	// ErrNotDue: the user's revalidation was claimed by another replica
	// or is not due, or the link changed since the claim (a new sign-in,
	// which wins), or it is suspended.
	ErrNotDue = errors.New("apppass: revalidation not due")
)

// ErrNoSession is the error of the page's sessions and sign-ins: the
// session or sign-in is unknown, expired, ended (or already taken) or
// malformed.
var ErrNoSession = errors.New("apppass: no such session")

// Refusal is the error of a Verify that refused a well-formed app
// password. Its Error text (with Reason) is for the server log, never for
// the client.
type Refusal struct {
	// Err is ErrInvalid, ErrProtocol or ErrSuspended.
	Err error
	// Reason says why, for the log: "unknown id", "wrong secret",
	// "revoked", "expired", "another user's password", "invalid user
	// name", "protocol pop3 not in scope imap,smtp", "suspended: ...".
	Reason string
	// ID is the password's public lookup id (safe to log).
	ID string
}

// Error implements error.
func (r *Refusal) Error() string {
	return fmt.Sprintf("%v (id %s): %s", r.Err, r.ID, r.Reason)
}

// Unwrap returns Err and auth.ErrInvalidCredentials.
func (r *Refusal) Unwrap() []error { return []error{r.Err, auth.ErrInvalidCredentials} }

// unavailable wraps a store failure of operation op: auth.ErrUnavailable
// and err.
func unavailable(op string, err error) error {
	return fmt.Errorf("apppass: %s: %w: %w", op, auth.ErrUnavailable, err)
}

// Outcome names the result of Verify for metrics and logs: "ok",
// "not_app_password", "invalid", "protocol", "suspended", "unavailable",
// or "error" for anything else.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotAppPassword):
		return "not_app_password"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, ErrSuspended):
		return "suspended"
	case errors.Is(err, auth.ErrUnavailable):
		return "unavailable"
	default:
		return "error"
	}
}
