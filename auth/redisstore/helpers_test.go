package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/redis/go-redis/v9"
)

const (
	// waitTimeout bounds every wait for a state change in these tests.
	waitTimeout = 10 * time.Second
	// testOpTimeout is the stores' OpTimeout: short, so that the tests
	// that wait for it are quick, and long enough for a loaded machine.
	testOpTimeout = 100 * time.Millisecond
	// fastProbe is the probe period of tests that wait for a recovery.
	fastProbe = 20 * time.Millisecond
	// slack is what timing assertions allow beyond a time bound, for
	// scheduling on a loaded machine (and -race).
	slack = 250 * time.Millisecond
)

// newStore connects a Store to r (its credentials and TLS included) with
// the given options, and closes it at the end of the test.
func newStore(t testing.TB, r *testenv.Redis, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	opts.Addrs = []string{r.Addr}
	opts.Username, opts.Password = r.Username, r.Password
	if r.TLS {
		opts.TLS, opts.CAFile, opts.ServerName = true, r.CAFile, testenv.ServerName
	}
	return openStore(t, opts)
}

// openStore is New with opts (OpTimeout testOpTimeout unless set), closed
// at the end of the test.
func openStore(t testing.TB, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	if opts.OpTimeout == 0 {
		opts.OpTimeout = testOpTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := redisstore.New(ctx, opts)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return st
}

// rawClient is a plain go-redis client of r, for looking at what the
// store wrote.
func rawClient(t testing.TB, r *testenv.Redis) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password,
		TLSConfig: r.ClientTLS(), DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// keys returns every key of r.
func keys(t testing.TB, c *redis.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out []string
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// stateRecorder records OnStateChange calls.
type stateRecorder struct {
	mu      sync.Mutex
	changes []string // "up" or "down: <err>"
}

func (r *stateRecorder) record(up bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up {
		r.changes = append(r.changes, "up")
		return
	}
	r.changes = append(r.changes, fmt.Sprintf("down: %v", err))
}

// counts returns the number of down and up calls.
func (r *stateRecorder) counts() (down, up int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		if c == "up" {
			up++
		} else {
			down++
		}
	}
	return down, up
}

func (r *stateRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.changes, " | ")
}

// countingValidator is the provider: "ok…" tokens are accepted, "bad…"
// refused ("badecho…" with the token in the error), anything else
// unavailable; it counts its calls.
type countingValidator struct{ calls atomic.Int32 }

func (v *countingValidator) Validate(_ context.Context, token string) (auth.Claims, error) {
	v.calls.Add(1)
	switch {
	case strings.HasPrefix(token, "ok"):
		return auth.Claims{"email": "alice@example.test", "email_verified": true, "scope": "openid mail",
			"exp": float64(time.Now().Add(time.Hour).Unix())}, nil
	case strings.HasPrefix(token, "badecho"): // a provider that quotes the token
		return nil, fmt.Errorf("%w: token %s revoked", auth.ErrInvalidCredentials, token)
	case strings.HasPrefix(token, "bad"):
		return nil, fmt.Errorf("%w: token revoked", auth.ErrInvalidCredentials)
	}
	return nil, fmt.Errorf("%w: HTTP 503", auth.ErrUnavailable)
}

// waitFor polls cond until it holds, or fails t after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeClock is a clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// faultProxy relays TCP connections to a server, with the server's
// answers delayed by slow; after stall it accepts connections and never
// answers, and the connections it relayed go silent without closing: a
// server that hangs.
type faultProxy struct {
	ln      net.Listener
	target  string // "": stalled from the start
	stalled atomic.Bool
	delay   atomic.Int64 // added to each answer, in ns

	mu    sync.Mutex
	conns []net.Conn // client sides, closed at the end of the test
	ups   []net.Conn // server sides, closed by stall
}

// startFaultProxy listens on 127.0.0.1; target "" never relays.
func startFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target}
	p.stalled.Store(target == "")
	done := make(chan struct{})
	go func() { defer close(done); p.serve() }()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range append(p.conns, p.ups...) {
			c.Close()
		}
	})
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		if p.stalled.Load() {
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.ups = append(p.ups, up)
		p.mu.Unlock()
		go io.Copy(up, c) // ends when up is closed; never closes c
		go p.answer(c, up)
	}
}

// answer copies the server's answers to the client, each after the delay.
func (p *faultProxy) answer(c, up net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			time.Sleep(time.Duration(p.delay.Load())) // the simulated latency
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// slow delays every answer by d from now on (0: none).
func (p *faultProxy) slow(d time.Duration) { p.delay.Store(int64(d)) }

// stall makes the proxy hang.
func (p *faultProxy) stall() {
	p.stalled.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, up := range p.ups {
		up.Close()
	}
	p.ups = nil
}
