package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/internal/testenv"
)

// trace is what attempts were given, in order: a delay, or "blocked".
type trace []string

// failRoundRobin fails attempts against replicas in turn, as a load
// balancer spreads them, until blocked or n attempts: it returns what each
// attempt was given before it failed. ip and user name the attempt.
func failRoundRobin(replicas []*auth.Throttle, n int, ip, user func(i int) string) trace {
	var out trace
	for i := range n {
		th := replicas[i%len(replicas)]
		d, until := th.Delay(ip(i), user(i))
		if !until.IsZero() {
			return append(out, "blocked")
		}
		out = append(out, d.String())
		th.Failure(ip(i), user(i))
	}
	return out
}

func fixed(s string) func(int) string { return func(int) string { return s } }

// Two replicas sharing Redis delay and block at the same failures as one
// replica alone; without Redis they would let through twice as many.
func TestThrottleSharedSameLimit(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{CallerClock: true})
	for _, tt := range []struct {
		name     string
		ip, user func(int) string
	}{
		{"address", fixed("192.0.2.7:50000"), fixed("")},
		{"user, from many addresses", func(i int) string { return fmt.Sprintf("198.51.100.%d", i) }, fixed("Alice@example.test")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(time.Now())
			opts := auth.ThrottleOptions{Failures: 10, Now: clock.Now, Logger: discardLogger()}
			alone := failRoundRobin([]*auth.Throttle{auth.NewThrottle(opts)}, 80, tt.ip, tt.user)
			local := failRoundRobin([]*auth.Throttle{auth.NewThrottle(opts), auth.NewThrottle(opts)}, 80, tt.ip, tt.user)
			opts.Shared = st
			shared := failRoundRobin([]*auth.Throttle{auth.NewThrottle(opts), auth.NewThrottle(opts)}, 80, tt.ip, tt.user)
			if !slices.Equal(shared, alone) {
				t.Errorf("two replicas sharing Redis:\n got %v\nwant %v (one replica)", shared, alone)
			}
			if slices.Equal(local, alone) {
				t.Errorf("two replicas without Redis behave as one: %v (the test proves nothing)", local)
			}
		})
	}
}

// The trace of one address on one replica, as the local tests have it.
func TestThrottleSharedTrace(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{CallerClock: true})
	clock := newFakeClock(time.Now())
	var logs [2]bytes.Buffer
	var replicas []*auth.Throttle
	for i := range logs {
		replicas = append(replicas, auth.NewThrottle(auth.ThrottleOptions{
			Failures: 10, Now: clock.Now, Shared: st, Logger: slog.New(slog.NewTextHandler(&logs[i], nil))}))
	}
	got := failRoundRobin(replicas, 40, fixed("192.0.2.9"), fixed(""))
	want := "[0s 0s 0s 0s 0s 0s 0s 0s 0s 0s 1s 2s 4s 8s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s blocked]"
	if fmt.Sprint(got) != want {
		t.Errorf("trace\n got %v\nwant %s", got, want)
	}
	if n := strings.Count(logs[0].String()+logs[1].String(), "client blocked"); n != 1 {
		t.Errorf("%d block lines, want 1 (from the replica that started it):\n%s%s", n, &logs[0], &logs[1])
	}
	for i, th := range replicas {
		th.Success("192.0.2.9", "") // does not lift the block
		if _, until := th.Delay("192.0.2.9", ""); until.Sub(clock.Now()) != auth.DefaultThrottleBlockFor {
			t.Errorf("replica %d: block until %v", i, until)
		}
	}
	clock.Advance(auth.DefaultThrottleBlockFor) // 10 per minute for 5 minutes: drained
	if d, until := replicas[1].Delay("192.0.2.9", ""); d != 0 || !until.IsZero() {
		t.Errorf("after the block: %v %v", d, until)
	}
}

// A success on one replica forgets the failures for all.
func TestThrottleSharedSuccess(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{CallerClock: true})
	clock := newFakeClock(time.Now())
	opts := auth.ThrottleOptions{Failures: 2, Now: clock.Now, Shared: st, Logger: discardLogger()}
	a, b := auth.NewThrottle(opts), auth.NewThrottle(opts)
	for range 3 {
		a.Failure("192.0.2.1", "bob@example.test")
	}
	if d, _ := b.Delay("203.0.113.5", "bob@example.test"); d != 2*auth.DefaultThrottleBaseDelay { // 3 failures, 2 free
		t.Fatalf("the other replica's delay for the user: %v", d)
	}
	b.Success("192.0.2.1", "bob@example.test")
	if d, _ := a.Delay("192.0.2.1", "bob@example.test"); d != 0 {
		t.Errorf("after a success on the other replica: delay %v", d)
	}
}

// Password attempts (Begin) for one user are charged across replicas, and
// records expire once drained.
func TestThrottleSharedBeginAndExpiry(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{})                                                          // the server's clock
	opts := auth.ThrottleOptions{Failures: 4, Window: time.Second, Shared: st, Logger: discardLogger()} // drains 4/s
	a, b := auth.NewThrottle(opts), auth.NewThrottle(opts)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, th := range []*auth.Throttle{a, b, a, b} {
		wg.Go(func() {
			done, err := th.Begin(ctx, fmt.Sprintf("192.0.2.%d", i), "carol@example.test")
			if err != nil {
				t.Error(err)
				return
			}
			done(auth.AttemptFailed)
		})
	}
	wg.Wait()
	c := rawClient(t, r)
	ttl := c.PTTL(ctx, "mailgate:throttle:user:carol@example.test").Val()
	// 4 failures drain in a second, plus a second.
	if ttl <= 0 || ttl > 2*time.Second {
		t.Errorf("user record TTL %v, want at most 2s", ttl)
	}
	if got := c.HGet(ctx, "mailgate:throttle:ip:192.0.2.0", "s").Val(); got != "1" {
		t.Errorf("address record score %q, want 1", got)
	}
	waitFor(t, "the records to expire", func() bool { return len(keys(t, c)) == 0 })
}

// The penalty script, op by op: drain, block once, forget but not a
// block; the server's clock; a flushed script cache.
func TestPenaltiesScript(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{CallerClock: true})
	ctx := context.Background()
	t0 := time.Now()
	op := func(kind auth.PenaltyKind, at time.Duration) auth.PenaltyState {
		t.Helper()
		s, err := st.Penalties(ctx, auth.PenaltyOp{Key: "ip:192.0.2.1", Kind: kind, Now: t0.Add(at),
			Rate: 2, BlockAt: 3, BlockFor: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return s[0]
	}
	for _, step := range []struct {
		kind auth.PenaltyKind
		at   time.Duration
		want auth.PenaltyState
	}{
		{auth.PenaltyFail, 0, auth.PenaltyState{Score: 1}},
		{auth.PenaltyFail, 0, auth.PenaltyState{Score: 2}},
		{auth.PenaltyRead, 500 * time.Millisecond, auth.PenaltyState{Score: 1}}, // 2 per second
		{auth.PenaltyFail, 500 * time.Millisecond, auth.PenaltyState{Score: 2}},
		{auth.PenaltyFail, 500 * time.Millisecond, auth.PenaltyState{Score: 3, Blocked: time.Minute, Started: true}},
		{auth.PenaltyFail, time.Second, auth.PenaltyState{Score: 3, Blocked: time.Minute - 500*time.Millisecond}},
		{auth.PenaltyForget, time.Second, auth.PenaltyState{Score: 3, Blocked: time.Minute - 500*time.Millisecond}},
		{auth.PenaltyRead, 0, auth.PenaltyState{Score: 3, Blocked: time.Minute + 500*time.Millisecond}}, // a clock that went back drains nothing
		{auth.PenaltyRead, time.Minute, auth.PenaltyState{Score: 0, Blocked: time.Second / 2}},
		{auth.PenaltyForget, 2 * time.Minute, auth.PenaltyState{}},
		{auth.PenaltyRead, 2 * time.Minute, auth.PenaltyState{}},
	} {
		if got := op(step.kind, step.at); got != step.want {
			t.Errorf("%s at +%v: %+v, want %+v", step.kind, step.at, got, step.want)
		}
	}
	c := rawClient(t, r)
	if n := len(keys(t, c)); n != 0 {
		t.Errorf("%d keys left after forget", n)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := op(auth.PenaltyFail, 0); got.Score != 1 {
		t.Errorf("after SCRIPT FLUSH: %+v", got)
	}

	server := newStore(t, r, redisstore.Options{}) // the server's clock
	fail := auth.PenaltyOp{Key: "user:u", Kind: auth.PenaltyFail, Rate: 1}
	s1, err1 := server.Penalties(ctx, fail)
	time.Sleep(20 * time.Millisecond) // real time must pass on the server's clock
	fail.Kind = auth.PenaltyRead
	s2, err2 := server.Penalties(ctx, fail)
	if err1 != nil || err2 != nil || s1[0].Score != 1 || !(s2[0].Score < 1 && s2[0].Score > 0) {
		t.Errorf("server clock: %+v %v, then %+v %v", s1, err1, s2, err2)
	}
}

// BenchmarkThrottleShared is what the throttle adds to a successful token
// login (Check, then Success), locally and with Redis.
func BenchmarkThrottleShared(b *testing.B) {
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	st := newStore(b, r, redisstore.Options{})
	ctx := context.Background()
	for _, bb := range []struct {
		name   string
		shared auth.SharedThrottle
	}{{"local", nil}, {"shared", st}} {
		b.Run(bb.name, func(b *testing.B) {
			th := auth.NewThrottle(auth.ThrottleOptions{Shared: bb.shared, Logger: discardLogger()})
			b.ReportAllocs()
			for b.Loop() {
				if err := th.Check(ctx, "192.0.2.1:993", ""); err != nil {
					b.Fatal(err)
				}
				th.Success("192.0.2.1:993", "")
			}
		})
	}
}

// A Redis that answers reads but refuses writes (maxmemory reached with
// noeviction: "OOM") cannot switch throttling off: the replica's own
// count of the failures it saw stands.
func TestThrottleSharedWritesRefused(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{CallerClock: true})
	c := rawClient(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil { // below what Redis already uses
		t.Fatal(err)
	}
	if err := c.Set(ctx, "probe", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("a write with maxmemory reached: %v, want OOM", err)
	}
	clock := newFakeClock(time.Now())
	th := auth.NewThrottle(auth.ThrottleOptions{Failures: 2, Now: clock.Now, Shared: st, SharedFailClosed: true, Logger: discardLogger()})
	for range 5 {
		th.Failure("192.0.2.1", "")
	}
	if d, until := th.Delay("192.0.2.1", ""); d == 0 && until.IsZero() {
		t.Error("no delay or block after 5 failures while Redis refused writes")
	}
}
