package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Failure modes of shared stores. The real store (auth/redisstore) is
// tested against a real Redis in its own package.

var errStoreDown = errors.New("store down")

// downStore is a shared store that always fails.
type downStore struct{ calls atomic.Int32 }

func (s *downStore) Get(context.Context, string) ([]byte, bool, error) {
	s.calls.Add(1)
	return nil, false, errStoreDown
}

func (s *downStore) Set(context.Context, string, []byte, time.Duration) error {
	s.calls.Add(1)
	return errStoreDown
}

func (s *downStore) Delete(context.Context, string) error {
	s.calls.Add(1)
	return errStoreDown
}

func (s *downStore) Penalties(context.Context, ...PenaltyOp) ([]PenaltyState, error) {
	s.calls.Add(1)
	return nil, errStoreDown
}

// fixedCache answers every Get with val.
type fixedCache struct{ val []byte }

func (c fixedCache) Get(context.Context, string) ([]byte, bool, error)      { return c.val, true, nil }
func (fixedCache) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (fixedCache) Delete(context.Context, string) error                     { return nil }

// A failing shared throttle (failing open) throttles on the local table
// exactly as without one.
func TestSharedThrottleFailsOpen(t *testing.T) {
	clock := newFakeClock(time.Now())
	store := &downStore{}
	opts := ThrottleOptions{Failures: 3, Now: clock.Now, Logger: discardLogger()}
	local := NewThrottle(opts)
	opts.Shared = store
	shared := NewThrottle(opts)
	for i := range 12 {
		d1, u1 := local.Delay("192.0.2.1", "u")
		d2, u2 := shared.Delay("192.0.2.1", "u")
		if d1 != d2 || !u1.Equal(u2) {
			t.Fatalf("attempt %d: local %v %v, with a failing store %v %v", i, d1, u1, d2, u2)
		}
		if err := shared.Check(context.Background(), "192.0.2.9", ""); err != nil {
			t.Fatalf("Check: %v", err)
		}
		local.Failure("192.0.2.1", "u")
		shared.Failure("192.0.2.1", "u")
	}
	if store.calls.Load() == 0 {
		t.Error("the store was never asked")
	}
}

// Failing closed, attempts get a temporary error (not a refusal) and never
// reach the next authenticator.
func TestSharedThrottleFailsClosed(t *testing.T) {
	th := NewThrottle(ThrottleOptions{Shared: &downStore{}, SharedFailClosed: true, Logger: discardLogger()})
	var calls int
	next := AuthenticatorFunc(func(context.Context, Credentials) (Identity, error) {
		calls++
		return Identity{User: "alice@example.test"}, nil
	})
	_, err := Throttled{Next: next, T: th}.Authenticate(context.Background(), Credentials{RemoteAddr: "192.0.2.1:1", Token: "t"})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrThrottled) || errors.Is(err, ErrInvalidCredentials) || calls != 0 {
		t.Errorf("token login: %v, %d calls", err, calls)
	}
	if done, err := th.Begin(context.Background(), "192.0.2.1", "alice@example.test"); !errors.Is(err, ErrUnavailable) || done != nil {
		t.Errorf("Begin: %v", err)
	}
	if th.turnsLen() != 0 {
		t.Error("a failed Begin holds a turn")
	}
	if d, until := th.Delay("192.0.2.1", ""); d != 0 || !until.IsZero() {
		t.Errorf("Delay: %v %v", d, until)
	}
	if NewThrottle(ThrottleOptions{SharedFailClosed: true}).failClosed {
		t.Error("SharedFailClosed without Shared fails closed")
	}
}

// A failing shared cache costs nothing but the attempt: the provider
// answers, the local cache keeps the answer.
func TestSharedCacheFails(t *testing.T) {
	store := &downStore{}
	next := &countingValidator{answer: answers(time.Now)}
	c := NewCache(next, CacheOptions{TTL: time.Minute, Shared: store})
	for range 3 {
		if _, err := c.Validate(context.Background(), "ok-1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := next.calls.Load(); n != 1 {
		t.Errorf("provider calls = %d, want 1", n)
	}
	if s := c.Stats(); s.SharedErrors != 2 || s.Hits != 2 { // Get, Set
		t.Errorf("stats %+v", s)
	}
}

// Shared entries are rebuilt strictly: garbage and unknown kinds are
// misses, a refusal keeps its text and sentinel, and no entry outlives
// this cache's own TTLs.
func TestSharedCacheEntries(t *testing.T) {
	clock := newFakeClock(time.Now())
	exp := func(d time.Duration) string { return fmt.Sprint(clock.Now().Add(d).UnixMilli()) }
	for _, tt := range []struct {
		name, val string
		wantCall  bool
		wantErr   string
	}{
		{"garbage", `{"kind":`, true, ""},
		{"unknown kind", `{"kind":"maybe","expires_ms":` + exp(time.Hour) + `}`, true, ""},
		{"expired", `{"kind":"accepted","claims":{"email":"a@example.test"},"expires_ms":` + exp(-time.Second) + `}`, true, ""},
		{"accepted", `{"kind":"accepted","claims":{"email":"a@example.test"},"expires_ms":` + exp(time.Hour) + `}`, false, ""},
		{"refused", `{"kind":"refused","claims":null,"refusal":"auth: invalid credentials: revoked","expires_ms":` + exp(time.Hour) + `}`,
			false, "auth: invalid credentials: revoked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := &countingValidator{answer: answers(clock.Now)}
			c := NewCache(next, CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Now: clock.Now, Shared: fixedCache{[]byte(tt.val)}})
			_, err := c.Validate(context.Background(), "ok-x")
			if called := next.calls.Load() == 1; called != tt.wantCall {
				t.Errorf("provider called: %v, want %v", called, tt.wantCall)
			}
			if tt.wantErr != "" && (!errors.Is(err, ErrInvalidCredentials) || err.Error() != tt.wantErr) {
				t.Errorf("err = %v", err)
			}
			if !tt.wantCall {
				clock.Advance(time.Minute) // the local copy ends with this cache's TTL
				c.Validate(context.Background(), "ok-x")
				if s := c.Stats(); s.Hits+s.NegativeHits != 0 || s.SharedHits+s.SharedNegativeHits != 2 {
					t.Errorf("stats %+v: the local copy outlived the TTL", s)
				}
			}
		})
	}
}

// A refusal whose text holds the token is shared without it.
func TestSharedCacheRefusalWithoutToken(t *testing.T) {
	const tok = "opaque-secret-token"
	got := refusalText(fmt.Errorf("%w: token %s unknown", ErrInvalidCredentials, tok), tok)
	if strings.Contains(got, tok) || !strings.HasPrefix(got, ErrInvalidCredentials.Error()) {
		t.Errorf("refusalText = %q", got)
	}
	long := refusalText(fmt.Errorf("%w: %s", ErrInvalidCredentials, strings.Repeat("é", 400)), tok)
	if len(long) > maxRefusalText+len("…") || !strings.HasSuffix(long, "…") {
		t.Errorf("long refusal text: %d bytes", len(long))
	}
}
