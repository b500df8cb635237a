package auth

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Outcome is what a password attempt came to.
type Outcome int

const (
	// AttemptSucceeded: the backend accepted the password. The address's
	// and the user's failures are forgotten (not an active block).
	AttemptSucceeded Outcome = iota
	// AttemptFailed: the backend refused the password. It counts for the
	// address and for the user.
	AttemptFailed
	// AttemptUndecided: no verdict (backend down, client gone, attempt
	// abandoned). It counts for nothing.
	AttemptUndecided
)

// String returns the outcome's name, for logs.
func (o Outcome) String() string {
	switch o {
	case AttemptSucceeded:
		return "succeeded"
	case AttemptFailed:
		return "failed"
	case AttemptUndecided:
		return "undecided"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// userTurn serialises the password attempts for one user.
type userTurn struct {
	sem  chan struct{} // holds a value while an attempt is in flight
	refs int           // attempts in flight or waiting; guarded by Throttle.mu
}

// Begin is called before a password attempt by ip for user. It waits until
// no other attempt for the same user is in flight (attempts for one user
// run one at a time, so parallel guesses for one user queue up behind each
// other's delays; the wait is bounded by ctx), then waits the delay the
// address and the user have earned, and returns done, which must be called
// exactly once with the attempt's outcome; done records it (see Outcome)
// and releases the user's turn. Later calls of done do nothing.
//
// When the address is blocked it returns at once (or as soon as its turn
// comes, if the block began meanwhile) with an error wrapping ErrBlocked. A
// ctx that ends while waiting gives an error wrapping ErrThrottled and
// ctx.Err(), and holds nothing. With a shared store that fails and
// SharedFailClosed, the error wraps ErrUnavailable. On error done is nil.
//
// An empty user is not serialised (malformed attempts: see Failure). A nil
// *Throttle returns a done that does nothing.
//
// The table of turns holds only users with an attempt in flight or
// waiting: its size is bounded by the number of concurrent attempts.
func (t *Throttle) Begin(ctx context.Context, ip, user string) (done func(Outcome), err error) {
	if t == nil {
		return func(Outcome) {}, nil
	}
	if _, until, err := t.earned(ctx, ip, ""); err != nil || !until.IsZero() {
		return nil, waitBegin(ctx, 0, until, err)
	}
	key := userKeyOf(user)
	turn, err := t.acquireTurn(ctx, key)
	if err != nil {
		return nil, err
	}
	d, until, err := t.earned(ctx, ip, user)
	if err := waitBegin(ctx, d, until, err); err != nil {
		t.releaseTurn(key, turn)
		return nil, err
	}
	rctx := context.WithoutCancel(ctx) // the verdict is recorded even if the client has gone
	var once atomic.Bool
	return func(o Outcome) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		switch o {
		case AttemptSucceeded:
			t.success(rctx, ip, user)
		case AttemptFailed:
			t.failure(rctx, ip, user)
		}
		t.releaseTurn(key, turn)
	}, nil
}

// waitBegin is the second half of Begin's wait: a failing shared store
// (failErr, when failing closed), the block found once the user's turn
// came, or the earned delay.
func waitBegin(ctx context.Context, d time.Duration, until time.Time, failErr error) error {
	if failErr != nil {
		return failErr
	}
	if !until.IsZero() {
		return blockedError(until)
	}
	return waitDelay(ctx, d)
}

// acquireTurn waits until no other attempt for key is in flight and makes
// this one the attempt in flight. key "" is not serialised (nil turn).
func (t *Throttle) acquireTurn(ctx context.Context, key string) (*userTurn, error) {
	if key == "" {
		return nil, nil
	}
	t.mu.Lock()
	u := t.turns[key]
	if u == nil {
		u = &userTurn{sem: make(chan struct{}, 1)}
		t.turns[key] = u
	}
	u.refs++
	t.mu.Unlock()
	select {
	case u.sem <- struct{}{}: // free: take it even if ctx has ended
		return u, nil
	default:
	}
	if t.testHookWaitTurn != nil {
		t.testHookWaitTurn(key)
	}
	select {
	case u.sem <- struct{}{}:
		return u, nil
	case <-ctx.Done():
		t.dropTurnRef(key, u)
		return nil, fmt.Errorf("%w: waiting for another login attempt for the same user: %w", ErrThrottled, ctx.Err())
	}
}

// releaseTurn ends the attempt in flight u for key (nil: none).
func (t *Throttle) releaseTurn(key string, u *userTurn) {
	if u == nil {
		return
	}
	<-u.sem
	t.dropTurnRef(key, u)
}

// dropTurnRef forgets one attempt for key, and key itself after the last.
func (t *Throttle) dropTurnRef(key string, u *userTurn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u.refs--; u.refs == 0 && t.turns[key] == u {
		delete(t.turns, key)
	}
}

// turnsLen returns the number of users with an attempt in flight or waiting.
func (t *Throttle) turnsLen() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.turns)
}
