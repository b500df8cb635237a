package apppass

import (
	"context"
	"time"
)

// The roles of a Store, one per consumer, so that each can depend
// on (and fake) only what it uses. *Store implements both (the page and
// its revalidator name theirs in package apppage).

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

var (
	_ Verifier = (*Store)(nil)
	_ Manager  = (*Store)(nil)
)
