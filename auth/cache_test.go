package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingValidator answers from a function and counts calls; when gate is
// not nil every call waits for it to be closed.
type countingValidator struct {
	calls  atomic.Int32
	gate   chan struct{}
	answer func(token string) (Claims, error)
}

func (v *countingValidator) Validate(ctx context.Context, token string) (Claims, error) {
	v.calls.Add(1)
	if v.gate != nil {
		select {
		case <-v.gate:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	return v.answer(token)
}

// answers maps token prefixes to outcomes: "ok…" accepted (exp in "exp…"
// tokens is an hour away), "bad…" refused, "down…" unavailable.
func answers(now func() time.Time) func(string) (Claims, error) {
	return func(tok string) (Claims, error) {
		switch {
		case strings.HasPrefix(tok, "ok"):
			return Claims{"email": "alice@example.test"}, nil
		case strings.HasPrefix(tok, "exp10s"):
			return Claims{"email": "alice@example.test", "exp": float64(now().Add(10 * time.Second).Unix())}, nil
		case strings.HasPrefix(tok, "bad"):
			return nil, fmt.Errorf("%w: nope", ErrInvalidCredentials)
		case strings.HasPrefix(tok, "eyJ"): // a JWT: userinfo-like answer without exp
			return Claims{"email": "alice@example.test"}, nil
		default:
			return nil, fmt.Errorf("%w: HTTP 503", ErrUnavailable)
		}
	}
}

func TestCacheTTLs(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	clock := newFakeClock(start)
	jwt10s := rawJWT(map[string]any{"alg": "RS256"}, map[string]any{"exp": start.Add(10 * time.Second).Unix()}, "c2ln")
	tests := []struct {
		name      string
		opts      CacheOptions
		token     string
		cachedFor time.Duration // 0 = not cached
	}{
		{"accepted: TTL", CacheOptions{TTL: time.Minute}, "ok1", time.Minute},
		{"accepted: capped at exp", CacheOptions{TTL: time.Minute}, "exp10s", 10 * time.Second},
		{"accepted: capped at the unverified exp of a JWT (userinfo)", CacheOptions{TTL: time.Minute}, jwt10s, 10 * time.Second},
		{"accepted, TTL 0: not cached", CacheOptions{NegativeTTL: time.Minute}, "ok1", 0},
		{"refused: negative TTL", CacheOptions{TTL: time.Minute, NegativeTTL: 5 * time.Second}, "bad1", 5 * time.Second},
		{"refused, negative TTL 0: not cached", CacheOptions{TTL: time.Minute}, "bad1", 0},
		{"unavailable: never cached", CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute}, "down1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(start)
			next := &countingValidator{answer: answers(clock.Now)}
			tt.opts.Now = clock.Now
			c := NewCache(next, tt.opts)
			first, err1 := c.Validate(context.Background(), tt.token)
			if tt.cachedFor > 0 {
				clock.Advance(tt.cachedFor - time.Second)
			}
			second, err2 := c.Validate(context.Background(), tt.token)
			if fmt.Sprint(first, err1) != fmt.Sprint(second, err2) {
				t.Errorf("answers differ: %v %v / %v %v", first, err1, second, err2)
			}
			wantCalls := int32(1)
			if tt.cachedFor == 0 {
				wantCalls = 2
			}
			if n := next.calls.Load(); n != wantCalls {
				t.Fatalf("calls = %d, want %d", n, wantCalls)
			}
			if tt.cachedFor > 0 {
				clock.Advance(time.Second)
				c.Validate(context.Background(), tt.token)
				if n := next.calls.Load(); n != 2 {
					t.Errorf("calls after expiry = %d, want 2", n)
				}
			}
			st := c.Stats()
			if st.Hits+st.NegativeHits+st.Misses == 0 || st.ProviderCalls != uint64(next.calls.Load()) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestCacheKeepsNoToken(t *testing.T) {
	c := NewCache(&countingValidator{answer: answers(time.Now)}, CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute})
	c.Validate(context.Background(), "ok-secret-token-value")
	c.Validate(context.Background(), "bad-secret-token-value")
	c.mu.RLock()
	defer c.mu.RUnlock()
	if dump := fmt.Sprintf("%+v", c.entries); strings.Contains(dump, "secret-token") {
		t.Errorf("cache holds the token: %s", dump)
	}
}

func TestCacheBounded(t *testing.T) {
	clock := newFakeClock(time.Now())
	next := &countingValidator{answer: answers(clock.Now)}
	c := NewCache(next, CacheOptions{TTL: time.Minute, NegativeTTL: time.Second, MaxEntries: 10, Now: clock.Now})
	for i := range 10 {
		c.Validate(context.Background(), fmt.Sprintf("bad%d", i))
	}
	clock.Advance(2 * time.Second) // the refusals have expired
	for i := range 10 {
		c.Validate(context.Background(), fmt.Sprintf("ok%d", i))
	}
	if st := c.Stats(); st.Entries != 10 || st.Evictions != 0 {
		t.Fatalf("expired entries were not dropped first: %+v", st)
	}
	for i := range 100 {
		c.Validate(context.Background(), fmt.Sprintf("ok-more-%d", i))
	}
	if st := c.Stats(); st.Entries != 10 || st.Evictions != 100 {
		t.Errorf("stats %+v, want 10 entries, 100 evictions", st)
	}
}

// 100 concurrent validations of one token: exactly one provider call.
func TestCacheCoalesces(t *testing.T) {
	next := &countingValidator{gate: make(chan struct{}), answer: answers(time.Now)}
	c := NewCache(next, CacheOptions{TTL: time.Minute})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := c.Validate(context.Background(), "ok-shared")
			if err == nil && cl["email"] != "alice@example.test" {
				err = fmt.Errorf("claims %v", cl)
			}
			errs <- err
		}()
	}
	waitFor(t, "all callers to miss", func() bool { return c.Stats().Misses == n })
	close(next.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls := next.calls.Load(); calls != 1 {
		t.Errorf("provider calls = %d, want 1", calls)
	}
}

// The same through HTTP: 100 concurrent logins with one token reach a
// userinfo endpoint once.
func TestCacheCoalescesHTTP(t *testing.T) {
	if n := concurrentLogins(t, 100, 1); n != 1 {
		t.Errorf("userinfo requests = %d, want 1", n)
	}
}

// concurrentLogins runs rounds of n concurrent authentications, each round
// with a new token, against a userinfo stub, and returns the requests it got.
func concurrentLogins(tb testing.TB, n, rounds int) int32 {
	var reqs atomic.Int32
	var gate atomic.Pointer[chan struct{}]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		<-*gate.Load() // hold the answer until every caller is waiting
		io.WriteString(w, `{"email":"alice@example.test","email_verified":true}`)
	}))
	defer srv.Close()
	cache := NewCache(UserinfoValidator{URL: srv.URL}, CacheOptions{TTL: time.Minute, MaxConcurrent: 8})
	a := TokenAuthenticator{Validator: cache, Logger: discardLogger()}
	for r := range rounds {
		tok := fmt.Sprintf("opaque-token-%d", r)
		release := make(chan struct{})
		gate.Store(&release)
		before := cache.Stats().Misses
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, err := a.Authenticate(context.Background(), Credentials{Mechanism: MechXOAUTH2, User: "alice@example.test", Token: tok})
				if err != nil || id.User != "alice@example.test" {
					failed.Add(1)
				}
			}()
		}
		deadline := time.Now().Add(10 * time.Second)
		for cache.Stats().Misses-before < uint64(n) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		if f := failed.Load(); f > 0 {
			tb.Fatalf("%d of %d logins failed", f, n)
		}
	}
	return reqs.Load()
}

// A caller whose context ends stops waiting (ErrUnavailable); the provider
// call goes on and its answer serves the next caller.
func TestCacheCallerGivesUp(t *testing.T) {
	next := &countingValidator{gate: make(chan struct{}), answer: answers(time.Now)}
	c := NewCache(next, CacheOptions{TTL: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Validate(ctx, "ok-slow"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	close(next.gate)
	waitFor(t, "the detached call to be cached", func() bool { return c.Stats().Entries == 1 })
	if _, err := c.Validate(context.Background(), "ok-slow"); err != nil || next.calls.Load() != 1 {
		t.Errorf("err = %v, calls = %d", err, next.calls.Load())
	}
}

func TestCacheMaxConcurrent(t *testing.T) {
	next := &countingValidator{gate: make(chan struct{}), answer: answers(time.Now)}
	c := NewCache(next, CacheOptions{TTL: time.Minute, MaxConcurrent: 2})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Validate(context.Background(), fmt.Sprintf("ok-%d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "two calls in flight", func() bool { return next.calls.Load() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Validate(ctx, "ok-third")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("third call: %v", err)
	}
	waitFor(t, "the third call to give up its slot wait", func() bool { return c.Stats().Saturated == 1 })
	close(next.gate)
	wg.Wait()
	if _, err := c.Validate(context.Background(), "ok-third"); err != nil {
		t.Errorf("after release: %v", err)
	}
	if n := next.calls.Load(); n != 3 {
		t.Errorf("calls = %d, want 3", n)
	}
}

// BenchmarkCacheHit is the cost of a cached validation of a JWT-sized token.
func BenchmarkCacheHit(b *testing.B) {
	tok := "eyJ" + strings.Repeat("x", 900)
	c := NewCache(&countingValidator{answer: answers(time.Now)}, CacheOptions{TTL: time.Hour})
	ctx := context.Background()
	if _, err := c.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			c.Validate(ctx, tok)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Validate(ctx, tok)
			}
		})
	})
}

// Benchmark100ConcurrentLogins: per op, 100 concurrent logins with one new
// token through TokenAuthenticator, Cache and a userinfo endpoint over
// HTTP; it reports the endpoint's requests per op (want 1).
func Benchmark100ConcurrentLogins(b *testing.B) {
	n := concurrentLogins(b, 100, b.N)
	b.ReportMetric(float64(n)/float64(b.N), "provider-calls/op")
	if int(n) != b.N {
		b.Fatalf("%d provider calls for %d rounds", n, b.N)
	}
}

// TestCacheForget: a forgotten token is asked for again; others stay cached.
func TestCacheForget(t *testing.T) {
	v := &countingValidator{answer: answers(time.Now)}
	c := NewCache(v, CacheOptions{TTL: time.Minute})
	ctx := context.Background()
	for _, tok := range []string{"ok1", "ok2", "ok1", "ok2"} {
		if _, err := c.Validate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.calls.Load(); n != 2 {
		t.Fatalf("provider calls = %d, want 2 (both cached)", n)
	}
	c.Forget("ok1")
	c.Validate(ctx, "ok1")
	c.Validate(ctx, "ok2")
	if n := v.calls.Load(); n != 3 {
		t.Fatalf("provider calls = %d, want 3 (only ok1 asked again)", n)
	}
}
