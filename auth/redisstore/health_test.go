package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// replica is one mailgate's token login path: a throttle around a cached
// validator, both sharing st.
type replica struct {
	th    *auth.Throttle
	cache *auth.Cache
	a     auth.Authenticator
}

func newReplica(st *redisstore.Store, v auth.Validator, failClosed bool) *replica {
	th := auth.NewThrottle(auth.ThrottleOptions{Failures: 3, Shared: st, SharedFailClosed: failClosed, Logger: discardLogger()})
	cache := auth.NewCache(v, auth.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Shared: st})
	ta := auth.TokenAuthenticator{Validator: cache, Logger: discardLogger(), Source: "userinfo"}
	return &replica{th: th, cache: cache, a: auth.Throttled{Next: ta, T: th}}
}

func (r *replica) login(ip, token string) error {
	_, err := r.a.Authenticate(context.Background(), auth.Credentials{Mechanism: auth.MechXOAUTH2, Token: token, RemoteAddr: ip})
	return err
}

// Redis going away mid-test: logins go on from local state, the store says
// so once; Redis coming back: sharing resumes, and the store says so once.
func TestRedisDownAndBack(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	rec := &stateRecorder{}
	st := newStore(t, r, redisstore.Options{ProbeInterval: fastProbe, OnStateChange: rec.record})
	v := &countingValidator{}
	a, b := newReplica(st, v, false), newReplica(st, v, false)
	if err := a.login("192.0.2.1:1", "ok-before"); err != nil {
		t.Fatal(err)
	}
	if err := b.login("192.0.2.1:2", "ok-before"); err != nil || v.calls.Load() != 1 {
		t.Fatalf("before: %v, %d provider calls", err, v.calls.Load())
	}

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := a.login("192.0.2.1:3", "ok-during"); err != nil {
			t.Fatalf("login %d while Redis is down: %v", i, err)
		}
	}
	if !st.Degraded() || st.State().Err == nil {
		t.Fatalf("state while down: %+v", st.State())
	}
	if n := v.calls.Load(); n != 2 {
		t.Errorf("provider calls while down = %d, want 2 (the local cache works)", n)
	}
	for range 4 { // the local throttle works: 3 free, then delays
		b.th.Failure("198.51.100.1", "")
	}
	if d, _ := b.th.Delay("198.51.100.1", ""); d != auth.DefaultThrottleBaseDelay {
		t.Errorf("local delay while down: %v", d)
	}
	if down, up := rec.counts(); down != 1 || up != 0 {
		t.Errorf("state changes while down: %s", rec)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to come back", func() bool { return !st.Degraded() })
	if down, up := rec.counts(); down != 1 || up != 1 {
		t.Errorf("state changes: %s, want one down and one up", rec)
	}
	if !strings.HasPrefix(rec.String(), "down: redisstore: ") {
		t.Errorf("down error %q", rec)
	}
	a.login("192.0.2.1:4", "ok-after")
	b.login("192.0.2.1:5", "ok-after")
	if n := v.calls.Load(); n != 3 {
		t.Errorf("provider calls after Redis came back = %d, want 3 (shared again)", n)
	}
	for range 4 {
		a.th.Failure("198.51.100.2", "")
	}
	if d, _ := b.th.Delay("198.51.100.2", ""); d != auth.DefaultThrottleBaseDelay {
		t.Errorf("the other replica's delay after Redis came back: %v", d)
	}
}

// Failing closed, logins are refused with a temporary error while Redis
// is down (IMAP NO [UNAVAILABLE], SMTP 454), and pass again after.
func TestRedisDownFailClosed(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{ProbeInterval: fastProbe})
	v := &countingValidator{}
	rep := newReplica(st, v, true)
	if err := rep.login("192.0.2.1:1", "ok-1"); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	waitFor(t, "the store to go down", st.Degraded)
	calls := v.calls.Load()
	err := rep.login("192.0.2.1:1", "ok-1")
	if result, internal := proxy.Classify(err); result != proxy.ResultUnavailable || internal ||
		!errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrThrottled) {
		t.Errorf("token login while down: %v (%s, internal %v)", err, result, internal)
	}
	if _, err := rep.th.Begin(context.Background(), "192.0.2.1", "alice@example.test"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("password attempt while down: %v", err)
	}
	if v.calls.Load() != calls {
		t.Error("a refused login reached the provider")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to come back", func() bool { return !st.Degraded() })
	if err := rep.login("192.0.2.1:1", "ok-1"); err != nil {
		t.Errorf("after Redis came back: %v", err)
	}
}

// A Redis that hangs costs a login at most one OpTimeout: the first
// operation that times out takes the store down, and the rest do not wait.
func TestRedisHangs(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	p := startFaultProxy(t, r.Addr)
	rec := &stateRecorder{}
	// No probe during the test: the logins must find out.
	st := openStore(t, redisstore.Options{Addrs: []string{p.addr()}, ProbeInterval: time.Hour, OnStateChange: rec.record})
	v := &countingValidator{}
	rep := newReplica(st, v, false)
	if err := rep.login("192.0.2.1:1", "ok-warm"); err != nil || st.Degraded() {
		t.Fatalf("through the proxy: %v, %+v", err, st.State())
	}
	p.stall()
	var total, worst time.Duration
	for i := range 20 {
		start := time.Now()
		err := rep.login("192.0.2.1:1", fmt.Sprintf("ok-hang-%d", i))
		el := time.Since(start)
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		total, worst = total+el, max(worst, el)
	}
	t.Logf("20 logins against a hung Redis: %v in all, %v at worst (OpTimeout %v)", total, worst, testOpTimeout)
	// One login waits OpTimeout, the others nothing; the margins are for
	// a loaded machine.
	if worst > testOpTimeout+slack || total > testOpTimeout+2*slack {
		t.Errorf("logins took %v at worst, %v in all; want at most one OpTimeout (%v) in all", worst, total, testOpTimeout)
	}
	if s := st.Stats(); s.Errors != 1 || s.Skipped == 0 {
		t.Errorf("stats %+v: want exactly one operation to time out", s)
	}
	if down, up := rec.counts(); down != 1 || up != 0 {
		t.Errorf("state changes %s", rec)
	}
}

// A server slower than OpTimeout takes the store down, and keeps it down
// (no flapping) until it is fast again.
func TestRedisSlow(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	p := startFaultProxy(t, r.Addr)
	rec := &stateRecorder{}
	st := openStore(t, redisstore.Options{Addrs: []string{p.addr()}, ProbeInterval: fastProbe, OnStateChange: rec.record})
	rep := newReplica(st, &countingValidator{}, false)
	if err := rep.login("192.0.2.1:1", "ok-fast"); err != nil || st.Degraded() {
		t.Fatalf("through the proxy: %v, %+v", err, st.State())
	}
	p.slow(testOpTimeout * 6 / 5)
	start := time.Now()
	if err := rep.login("192.0.2.1:1", "ok-slow"); err != nil {
		t.Fatal(err)
	}
	if el, s := time.Since(start), st.Stats(); el > testOpTimeout+slack || s.Errors > 1 {
		t.Errorf("a login took %v, %d operations failed; want at most one OpTimeout (%v)", el, s.Errors, testOpTimeout)
	}
	waitFor(t, "the store to go down", st.Degraded)
	probes := st.Stats().Probes
	waitFor(t, "5 more probes", func() bool { return st.Stats().Probes >= probes+5 })
	if down, up := rec.counts(); down != 1 || up != 0 {
		t.Errorf("state changes while slow: %s", rec)
	}
	p.slow(0)
	waitFor(t, "the store to come back", func() bool { return !st.Degraded() })
	if down, up := rec.counts(); down != 1 || up != 1 {
		t.Errorf("state changes: %s", rec)
	}
}

// A store whose server hangs or is absent at start starts down, within
// its time bound, and comes up when the server appears.
func TestRedisAbsentAtStart(t *testing.T) {
	p := startFaultProxy(t, "")
	rec := &stateRecorder{}
	start := time.Now()
	st := openStore(t, redisstore.Options{Addrs: []string{p.addr()}, OnStateChange: rec.record})
	if el := time.Since(start); el > redisstore.DefaultDialTimeout+testOpTimeout+slack {
		t.Errorf("New took %v", el)
	}
	if down, up := rec.counts(); !st.Degraded() || down != 1 || up != 0 {
		t.Errorf("hung server: degraded %v, changes %s", st.Degraded(), rec)
	}

	r := testenv.StartRedis(t, testenv.RedisOptions{})
	r.Stop()
	rec = &stateRecorder{}
	st = newStore(t, r, redisstore.Options{ProbeInterval: fastProbe, OnStateChange: rec.record})
	if !st.Degraded() {
		t.Fatal("a store without a server is up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to come up", func() bool { return !st.Degraded() })
	if down, up := rec.counts(); down != 1 || up != 1 {
		t.Errorf("state changes %s", rec)
	}
}

// The least-privileged ACL user of the package documentation, over TLS,
// is enough; a wrong password keeps the store down.
func TestRedisTLSAndACL(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{TLS: true, Username: "mailgate", Password: "pw-1",
		ACL: "~mailgate:* resetchannels -@all +hello +auth +get +set +del +evalsha +eval +hmget +hset +pexpire +time"})
	rec := &stateRecorder{}
	st := newStore(t, r, redisstore.Options{OnStateChange: rec.record})
	if st.Degraded() {
		t.Fatalf("down: %v", st.State().Err)
	}
	v := &countingValidator{}
	a, b := newReplica(st, v, false), newReplica(st, v, false)
	a.login("192.0.2.1:1", "ok-tls")
	b.login("192.0.2.1:1", "ok-tls")
	a.login("192.0.2.1:1", "bad-tls")
	b.cache.Forget("bad-tls")
	if n := v.calls.Load(); n != 2 || a.cache.Stats().SharedErrors+b.cache.Stats().SharedErrors != 0 || st.Stats().Errors != 0 {
		t.Errorf("%d provider calls, cache stats %+v %+v, store stats %+v", n, a.cache.Stats(), b.cache.Stats(), st.Stats())
	}
	if d, _ := b.th.Delay("192.0.2.1", ""); d != 0 || rec.String() != "" {
		t.Errorf("delay %v, state changes %q", d, rec)
	}

	wrong := openStore(t, redisstore.Options{Addrs: []string{r.Addr}, Username: "mailgate", Password: "wrong",
		TLS: true, CAFile: r.CAFile, ServerName: testenv.ServerName})
	if err := wrong.State().Err; !wrong.Degraded() || !strings.Contains(fmt.Sprint(err), "WRONGPASS") {
		t.Errorf("wrong password: %+v", wrong.State())
	}
}
