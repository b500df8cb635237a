package load

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Loopback is the i-th address of 127.0.0.0/8: 127.0.0.0 + i. Linux
// answers on every one of them, so clients can come from many addresses.
func Loopback(i int) net.IP {
	return net.IPv4(127, byte(i>>16), byte(i>>8), byte(i))
}

// HoldSpec describes idle connections that never send a byte. Connection i
// (First <= i < First+N) goes to Targets[i%len(Targets)] from the source
// address Loopback(AddrBase + i/PerAddr).
type HoldSpec struct {
	Targets     []string
	First, N    int
	AddrBase    int
	PerAddr     int
	Conc        int           // dials at once; 0 = 256
	DialTimeout time.Duration // 0 = 10 s; with TLS, for the connect and the handshake
	// TLS, when set, makes every connection complete a TLS handshake as a
	// client (implicit TLS) before it idles; it then sends nothing more. A
	// failed handshake counts in DialErrs ("TLS handshake: ..."), not in
	// Connected. In-process only: a worker's spec carries no TLS.
	TLS *tls.Config `json:"-"`
}

// TargetStats count what happened to the connections to one target.
type TargetStats struct {
	Target    string         `json:"target"`
	Dialed    int            `json:"dialed"`    // connection attempts
	Connected int            `json:"connected"` // TCP handshakes completed
	DialErrs  map[string]int `json:"dial_errors,omitempty"`
	// Greeted got at least one byte from the server (a plaintext greeting,
	// or the "too many connections" line of a refusal).
	Greeted int `json:"greeted"`
	// ClosedFast were closed by the server within FastClose of connecting,
	// ClosedLater later (the server's metrics say why: refused, evicted,
	// timed out).
	ClosedFast  int `json:"closed_fast"`
	ClosedLater int `json:"closed_later"`
	Open        int `json:"open"` // still open now
}

// HoldStats are a Held's counts, per target.
type HoldStats struct {
	Targets  []TargetStats `json:"targets"`
	OpenTook time.Duration `json:"open_took"` // time to make every attempt
}

// Total adds up the targets.
func (s HoldStats) Total() TargetStats {
	t := TargetStats{Target: "all", DialErrs: map[string]int{}}
	for _, x := range s.Targets {
		t.Dialed += x.Dialed
		t.Connected += x.Connected
		t.Greeted += x.Greeted
		t.ClosedFast += x.ClosedFast
		t.ClosedLater += x.ClosedLater
		t.Open += x.Open
		for k, v := range x.DialErrs {
			t.DialErrs[k] += v
		}
	}
	return t
}

// FastClose is how soon a close must follow the connect to count in
// ClosedFast.
const FastClose = time.Second

// Held is a set of idle connections. Every connection has a goroutine that
// reads (and drops) whatever the server sends, to notice when the server
// closes it.
type Held struct {
	spec    HoldSpec
	mu      sync.Mutex
	conns   []net.Conn
	closing atomic.Bool
	wg      sync.WaitGroup
	stats   []targetCounters
	took    time.Duration
}

type targetCounters struct {
	dialed, connected, greeted, fast, later atomic.Int64
	mu                                      sync.Mutex
	errs                                    map[string]int
}

// Hold makes every connection attempt of spec, conc at a time, and returns
// once all were made (or ctx ended); the connections stay open until the
// server closes them or Close is called.
func Hold(ctx context.Context, spec HoldSpec) *Held {
	if spec.Conc <= 0 {
		spec.Conc = 256
	}
	if spec.DialTimeout <= 0 {
		spec.DialTimeout = 10 * time.Second
	}
	spec.PerAddr = max(spec.PerAddr, 1)
	h := &Held{spec: spec, stats: make([]targetCounters, len(spec.Targets))}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range spec.Conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= spec.N {
					return
				}
				h.dial(spec.First + i)
			}
		}()
	}
	wg.Wait()
	h.took = time.Since(start)
	return h
}

func (h *Held) dial(i int) {
	t := i % len(h.spec.Targets)
	tc := &h.stats[t]
	tc.dialed.Add(1)
	d := net.Dialer{Timeout: h.spec.DialTimeout, LocalAddr: &net.TCPAddr{IP: Loopback(h.spec.AddrBase + i/h.spec.PerAddr)}}
	fail := func(kind string) {
		tc.mu.Lock()
		if tc.errs == nil {
			tc.errs = map[string]int{}
		}
		tc.errs[kind]++
		tc.mu.Unlock()
	}
	c, err := d.Dial("tcp", h.spec.Targets[t])
	if err != nil {
		fail(errKind(err))
		return
	}
	if h.spec.TLS != nil {
		tlc := tls.Client(c, h.spec.TLS)
		tlc.SetDeadline(time.Now().Add(h.spec.DialTimeout))
		if err := tlc.Handshake(); err != nil {
			c.Close()
			fail("TLS handshake: " + errKind(err))
			return
		}
		tlc.SetDeadline(time.Time{})
		c = tlc
	}
	at := time.Now()
	tc.connected.Add(1)
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		var buf [256]byte
		greeted := false
		for {
			n, err := c.Read(buf[:])
			if n > 0 && !greeted {
				greeted = true
				tc.greeted.Add(1)
			}
			if err != nil {
				break
			}
		}
		if h.closing.Load() {
			return
		}
		c.Close()
		if time.Since(at) < FastClose {
			tc.fast.Add(1)
		} else {
			tc.later.Add(1)
		}
	}()
}

// errKind names a dial error briefly: timeout, refused, EMFILE, ...
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EMFILE):
		return "EMFILE (client's open-files limit)"
	case errors.Is(err, syscall.ENFILE):
		return "ENFILE"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no source port"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other: " + err.Error()
}

// Stats counts the connections now.
func (h *Held) Stats() HoldStats {
	s := HoldStats{OpenTook: h.took}
	for i := range h.stats {
		tc := &h.stats[i]
		ts := TargetStats{
			Target: h.spec.Targets[i], Dialed: int(tc.dialed.Load()), Connected: int(tc.connected.Load()),
			Greeted: int(tc.greeted.Load()), ClosedFast: int(tc.fast.Load()), ClosedLater: int(tc.later.Load()),
		}
		ts.Open = ts.Connected - ts.ClosedFast - ts.ClosedLater
		tc.mu.Lock()
		if len(tc.errs) > 0 {
			ts.DialErrs = map[string]int{}
			for k, v := range tc.errs {
				ts.DialErrs[k] = v
			}
		}
		tc.mu.Unlock()
		s.Targets = append(s.Targets, ts)
	}
	return s
}

// Close closes every connection and waits for the readers; the counts stay
// as they were.
func (h *Held) Close() {
	h.closing.Store(true)
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	h.wg.Wait()
}
