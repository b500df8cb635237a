package auth

import (
	"context"
	"time"
)

// Shared state: the interfaces through which a Cache (CacheOptions.Shared)
// and a Throttle (ThrottleOptions.Shared) share what they learn with the
// other mailgate replicas behind one load balancer. Package
// auth/redisstore implements both with Redis or Valkey; this package does
// not depend on it.
//
// Implementations bound every call themselves (a login must never wait
// long on shared state) and report any failure as an error. Cache and
// Throttle then carry on with their local state, as without a shared store;
// only ThrottleOptions.SharedFailClosed turns a failure into a refusal.

// SharedCache is a key-value store with expiry, shared by several
// replicas. Keys are ASCII (lower-case hex digests, optionally prefixed by
// CacheOptions.SharedNamespace); values are opaque to the store. Safe for
// concurrent use.
type SharedCache interface {
	// Get returns the value under key; ok is false when there is none (no
	// error: a miss is not a failure).
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Set stores value under key for ttl (> 0), replacing any value.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// SharedThrottle keeps failure records, shared by several replicas, and
// applies each PenaltyOp atomically, as Throttle does with its own table:
// a record's score drains at PenaltyOp.Rate per second since its last
// update (never below zero), a failure adds one, and a failure that brings
// the score to PenaltyOp.BlockAt (when not 0) while no block is running
// starts a block of PenaltyOp.BlockFor. Records that have drained and are
// not blocked may be forgotten. Safe for concurrent use.
type SharedThrottle interface {
	// Penalties applies ops, each atomically on its own record, and
	// returns one state per op. On error no state is returned, and some of
	// the ops may or may not have been applied.
	Penalties(ctx context.Context, ops ...PenaltyOp) ([]PenaltyState, error)
}

// PenaltyKind is what a PenaltyOp does to a failure record.
type PenaltyKind int

const (
	// PenaltyRead changes nothing: it returns the drained score and the
	// block.
	PenaltyRead PenaltyKind = iota
	// PenaltyFail adds a failure, and may start a block (see
	// SharedThrottle).
	PenaltyFail
	// PenaltyForget deletes the record, unless a block is running (a
	// success does not lift a block).
	PenaltyForget
)

// String returns the kind's name, as the wire and logs use it.
func (k PenaltyKind) String() string {
	switch k {
	case PenaltyRead:
		return "read"
	case PenaltyFail:
		return "fail"
	case PenaltyForget:
		return "forget"
	}
	return "unknown"
}

// PenaltyOp is one operation on the failure record Key ("ip:192.0.2.1",
// "ip:2001:db8::/56", "user:alice@example.test": see Throttle). The policy
// travels with each operation, so the store keeps none.
type PenaltyOp struct {
	Key  string
	Kind PenaltyKind
	// Now is the caller's clock. An implementation may use a clock of its
	// own instead (one for every replica), and then uses it throughout.
	Now time.Time
	// Rate is how much score drains per second (> 0).
	Rate float64
	// BlockAt is the score at which a failure starts a block; 0: never
	// (users are never blocked).
	BlockAt float64
	// BlockFor is how long a block lasts.
	BlockFor time.Duration
}

// PenaltyState is a failure record after a PenaltyOp.
type PenaltyState struct {
	// Score is the drained score, including the op's failure.
	Score float64
	// Blocked is how long the running block still lasts; 0: none.
	Blocked time.Duration
	// Started reports whether this op started the block (so that exactly
	// one replica logs it).
	Started bool
}
