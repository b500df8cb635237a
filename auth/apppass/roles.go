package apppass

import (
	"context"
	"time"
)

// The three roles of a Store, one per consumer, so that each can depend
// on (and fake) only what it uses. *Store implements all three.

// Verifier is what a login path needs: the login, and the recheck of the
// sessions it opened.
type Verifier interface {
	Verify(ctx context.Context, user, password string, proto Protocol, clientIP string) (Record, error)
	StillValid(ctx context.Context, id, user string, proto Protocol) error
}

// Manager is what the page and the operator command need.
type Manager interface {
	Create(ctx context.Context, user, name string, protocols []Protocol, expiry time.Duration) (string, Record, error)
	List(ctx context.Context, user string) ([]Record, error)
	Revoke(ctx context.Context, user, id string) error
	RevokeAll(ctx context.Context, user string) (int, error)
}

// Revalidator is what the provider revalidation loop needs.
type Revalidator interface {
	DueForRevalidation(ctx context.Context, before time.Time, limit int) ([]string, error)
	ClaimRevalidationRetry(ctx context.Context, user string, before time.Time, retry time.Duration) (Claim, error)
	Revalidated(ctx context.Context, c Claim, newToken string) error
	Refused(ctx context.Context, c Claim, reason string) error
}

var (
	_ Verifier    = (*Store)(nil)
	_ Manager     = (*Store)(nil)
	_ Revalidator = (*Store)(nil)
)
