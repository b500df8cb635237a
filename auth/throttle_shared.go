package auth

import (
	"context"
	"fmt"
	"math"
	"time"
)

// blockStart is a block that a failure started (zero: none).
type blockStart struct {
	started bool
	score   float64
	until   time.Time
}

// earned returns the delay that ip and user have earned, or the end of ip's
// block: from the shared store when there is one and it answers, else
// from the local table (always charged). While the store drops failure
// updates but still answers reads (full, evicting), the stricter of the
// two, so that filling the store cannot switch throttling off. When the
// store fails and the throttle fails closed, err wraps ErrUnavailable (d
// and until are then the local table's).
func (t *Throttle) earned(ctx context.Context, ip, user string) (d time.Duration, until time.Time, err error) {
	if t == nil {
		return 0, time.Time{}, nil
	}
	ipKey, userKey := t.ipGroup(ip), userKeyOf(user)
	d, until = t.localEarned(ipKey, userKey)
	if t.shared == nil {
		return d, until, nil
	}
	sd, suntil, err := t.sharedEarned(ctx, ipKey, userKey)
	switch {
	case err == nil && !t.writesLost.Load():
		return sd, suntil, nil
	case err == nil:
		if suntil.After(until) {
			until = suntil
		}
		return max(d, sd), until, nil
	case t.failClosed:
		return d, until, fmt.Errorf("%w: shared throttle state unavailable: %w", ErrUnavailable, err)
	}
	return d, until, nil
}

// sharedEarned is localEarned on the shared records.
func (t *Throttle) sharedEarned(ctx context.Context, ipKey, userKey string) (time.Duration, time.Time, error) {
	now := t.now()
	ops := t.penaltyOps(PenaltyRead, now, ipKey, userKey)
	if len(ops) == 0 {
		return 0, time.Time{}, nil
	}
	st, err := t.penalties(ctx, ops)
	if err != nil {
		return 0, time.Time{}, err
	}
	var d time.Duration
	for _, s := range st {
		if s.Blocked > 0 { // only address groups get blocked
			return 0, now.Add(s.Blocked), nil
		}
		d = max(d, t.delayFor(s.Score))
	}
	return d, time.Time{}, nil
}

// failure is Failure. The local table is always charged; when the shared
// store answers, its records decide whether this failure started a block,
// so that only the replica that started it logs it.
func (t *Throttle) failure(ctx context.Context, ip, user string) {
	if t == nil {
		return
	}
	ipKey, userKey := t.ipGroup(ip), userKeyOf(user)
	b := t.localFailure(ipKey, userKey)
	if t.shared != nil {
		sb, err := t.sharedFailure(ctx, ipKey, userKey)
		t.writesLost.Store(err != nil)
		if err == nil {
			b = sb
		}
	}
	if b.started {
		t.log.Warn("auth: client blocked after repeated authentication failures",
			"ip_group", ipKey, "failures", int(math.Round(b.score)), "until", b.until.UTC().Format(time.RFC3339))
	}
}

// sharedFailure charges the shared records and reports a block it started.
func (t *Throttle) sharedFailure(ctx context.Context, ipKey, userKey string) (blockStart, error) {
	now := t.now()
	ops := t.penaltyOps(PenaltyFail, now, ipKey, userKey)
	if len(ops) == 0 {
		return blockStart{}, nil
	}
	st, err := t.penalties(ctx, ops)
	if err != nil {
		return blockStart{}, err
	}
	for _, s := range st {
		if s.Started {
			return blockStart{started: true, score: s.Score, until: now.Add(s.Blocked)}, nil
		}
	}
	return blockStart{}, nil
}

// success is Success. A shared store that fails is ignored: the records
// it keeps drain by themselves.
func (t *Throttle) success(ctx context.Context, ip, user string) {
	if t == nil {
		return
	}
	ipKey, userKey := t.ipGroup(ip), userKeyOf(user)
	t.localSuccess(ipKey, userKey)
	if t.shared != nil {
		if ops := t.penaltyOps(PenaltyForget, t.now(), ipKey, userKey); len(ops) > 0 {
			_, _ = t.penalties(ctx, ops)
		}
	}
}

// penaltyOps returns kind's operations on the records of ipKey and userKey
// (each only if not ""), with the throttle's policy: address groups may be
// blocked, users never.
func (t *Throttle) penaltyOps(kind PenaltyKind, now time.Time, ipKey, userKey string) []PenaltyOp {
	ops := make([]PenaltyOp, 0, 2)
	if ipKey != "" {
		ops = append(ops, PenaltyOp{Key: ipKey, Kind: kind, Now: now, Rate: t.rate, BlockAt: t.blockAt, BlockFor: t.blockFor})
	}
	if userKey != "" {
		ops = append(ops, PenaltyOp{Key: userKey, Kind: kind, Now: now, Rate: t.rate})
	}
	return ops
}

// penalties applies ops to the shared store and checks the answer's shape.
func (t *Throttle) penalties(ctx context.Context, ops []PenaltyOp) ([]PenaltyState, error) {
	st, err := t.shared.Penalties(ctx, ops...)
	if err != nil {
		return nil, err
	}
	if len(st) != len(ops) {
		return nil, fmt.Errorf("auth: shared throttle returned %d states for %d operations", len(st), len(ops))
	}
	return st, nil
}
