package imap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestPreloginPerIPCap: over its network's pre-login cap a client is refused
// with one line on the plaintext port, and without a TLS handshake on the
// implicit-TLS port; another network is not affected.
func TestPreloginPerIPCap(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	obs := newCountingObserver()
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{MaxPreloginPerIP: 2},
		Observer:      obs,
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	a := proxytest.DialPlain(t, tp.plainAddr)
	a.Expect("* OK")
	b := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	b.Expect("* OK")
	c := proxytest.DialPlain(t, tp.plainAddr)
	c.Expect("* BYE [UNAVAILABLE] Too many connections")
	c.ExpectClosed()
	// Over TLS: closed before any handshake.
	raw, err := net.Dial("tcp", tp.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc := tls.Client(raw, tp.clientTLS)
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS handshake over the cap succeeded; want the connection closed first")
	}
	if n := obs.refused(refusedPerIP); n != 2 {
		t.Errorf("refused %s = %d, want 2", refusedPerIP, n)
	}
	// Another address is not affected.
	d := proxytest.DialFrom(t, "127.0.0.2", tp.plainAddr)
	d.Expect("* OK")
	// Once one closes, there is room again.
	a.Send("x LOGOUT")
	a.Expect("* BYE")
	a.Expect("x OK")
	a.ExpectClosed()
	proxytest.WaitFor(t, "a free slot", func() bool {
		e := proxytest.DialPlain(t, tp.plainAddr)
		line := e.ReadLine()
		e.C.Close()
		return strings.HasPrefix(line, "* OK")
	})
}

// TestPreloginEvictsOldestOfBusiest: a full pre-login pool makes room by
// closing the oldest pre-login connection of the network holding the most.
func TestPreloginEvictsOldestOfBusiest(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{MaxPrelogin: 3, MaxPreloginPerIP: -1},
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	a1 := proxytest.DialFrom(t, "127.0.0.2", tp.plainAddr)
	a1.Expect("* OK")
	a2 := proxytest.DialFrom(t, "127.0.0.2", tp.plainAddr)
	a2.Expect("* OK")
	b := proxytest.DialFrom(t, "127.0.0.3", tp.plainAddr)
	b.Expect("* OK")
	c := proxytest.DialFrom(t, "127.0.0.4", tp.plainAddr)
	c.Expect("* OK")
	a1.ExpectClosed()
	for _, still := range []*proxytest.Conn{a2, b, c} {
		still.Send("n NOOP")
		still.Expect("n OK")
	}
}

// TestSecurityPreloginFloodCannotLockOutUsers (issue 11, problem 3): idle
// pre-login connections from one residential /56, spread over its /64s,
// fill the pre-login pool; a user from elsewhere still connects and logs in,
// and users already logged in stay so.
func TestSecurityPreloginFloodCannotLockOutUsers(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator:     fakeAuthenticator,
		ProxyProtocolFrom: []string{"127.0.0.1/32"},
		Limits:            proxy.Limits{MaxPrelogin: 40, MaxPreloginPerIP: 40, MaxConnections: 5, ConnRate: -1},
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	// A user logged in before the flood.
	u1 := proxytest.DialProxied(t, tp.plainAddr, "198.51.100.7")
	u1.Expect("* OK")
	u1.StartTLS(tp.clientTLS)
	u1.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	u1.Expect("a1 OK")

	// The flood: 60 idle connections from 2001:db8:0:100::/56, one per /64.
	// With per-/64 keys each would be alone; with /56 keys they are one
	// network, capped at 40, which fills the pool.
	var flood []*proxytest.Conn
	for i := 0; i < 60; i++ {
		c := proxytest.DialProxied(t, tp.plainAddr, fmt.Sprintf("2001:db8:0:1%02x::1", i))
		flood = append(flood, c)
	}
	refused := 0
	for _, c := range flood {
		if l := c.ReadLine(); strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
			refused++
		}
	}
	if refused != 20 {
		t.Errorf("%d flood connections refused at once, want 20 (over the /56's cap of 40)", refused)
	}

	// A new user from another network gets in and logs in.
	u2 := proxytest.DialProxied(t, tp.plainAddr, "203.0.113.20")
	u2.Expect("* OK")
	u2.StartTLS(tp.clientTLS)
	u2.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	u2.Expect("a1 OK")
	// The first one is still relayed (the fake backend echoes).
	u1.Send("n NOOP")
	u1.Expect("* ECHO NOOP")
	if pre, in := tp.srv.Pools(); pre > 40 || in != 2 {
		t.Errorf("pools: %d pre-login (cap 40), %d logged in (want 2)", pre, in)
	}
}

// TestSessionsLimitAtLogin: the logged-in pool is checked when the login
// starts; a client over it is told to come back, temporarily, and its
// connection stays usable.
func TestSessionsLimitAtLogin(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{MaxConnections: 1},
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	a := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	a.Expect("* OK")
	a.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	a.Expect("a1 OK")
	b := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	b.Expect("* OK")
	b.Send("b1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	b.Expect("b1 NO [UNAVAILABLE] Too many sessions")
	a.C.Close()
	proxytest.WaitFor(t, "the session's seat to free", func() bool {
		_, in := tp.srv.Pools()
		return in == 0
	})
	b.Send("b2 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	b.Expect("b2 OK")
}

// TestConnectionRatePerNetwork: past its burst a network's new connections
// are refused until its bucket refills; other networks are not affected.
func TestConnectionRatePerNetwork(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	obs := newCountingObserver()
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{ConnRate: 0.001, ConnBurst: 3},
		Observer:      obs,
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	for i := 0; i < 3; i++ {
		c := proxytest.DialFrom(t, "127.0.0.5", tp.plainAddr)
		c.Expect("* OK")
	}
	c := proxytest.DialFrom(t, "127.0.0.5", tp.plainAddr)
	c.Expect("* BYE [UNAVAILABLE] Too many connections")
	if n := obs.refused(refusedRate); n != 1 {
		t.Errorf("refused %s = %d, want 1", refusedRate, n)
	}
	d := proxytest.DialFrom(t, "127.0.0.6", tp.plainAddr)
	d.Expect("* OK")
}

// TestExemptNetworks pay no per-network cap or rate.
func TestExemptNetworks(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits: proxy.Limits{ConnRate: 0.001, ConnBurst: 1, MaxPreloginPerIP: 1,
			ExemptNetworks: mustPrefixes("127.0.0.7/32")},
	}, Options{Backend: proxy.Backend{Address: fb.Addr}})
	for i := 0; i < 4; i++ {
		c := proxytest.DialFrom(t, "127.0.0.7", tp.plainAddr)
		c.Expect("* OK")
	}
}

// flakyListener fails Accept with err n times before each real accept.
type flakyListener struct {
	net.Listener
	err   error
	fails int
	n     int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n < l.fails {
		l.n++
		return nil, l.err
	}
	l.n = 0
	return l.Listener.Accept()
}

// TestSecurityAcceptErrorsDoNotStopServer (issue 11, problem 1): running out
// of descriptors makes Accept fail with EMFILE; the server waits and goes
// on instead of returning (which made mailgate exit).
func TestSecurityAcceptErrorsDoNotStopServer(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	serverTLS, _ := proxytest.TLSPair(t)
	srv, err := proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	f := New(srv, Options{Backend: proxy.Backend{Address: fb.Addr}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ECONNABORTED} {
		done := make(chan error, 1)
		fl := &flakyListener{Listener: ln, err: &net.OpError{Op: "accept", Net: "tcp", Err: e}, fails: 4}
		go func() { done <- srv.Serve(t.Context(), fl, false, f) }()
		c := proxytest.DialPlain(t, addr)
		c.Expect("* OK")
		select {
		case err := <-done:
			t.Fatalf("Serve returned %v after %v", err, e)
		default:
		}
		// Stop this round's loop without closing ln: a fresh server per error
		// would need a fresh listener; instead take the listener back.
		srv.Close()
		if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Fatalf("after Close: %v", err)
		}
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv, _ = proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS})
		f = New(srv, Options{Backend: proxy.Backend{Address: fb.Addr}})
	}
	ln.Close()
}

// Reasons of Observer.ConnRefused (proxy/pools.go).
const (
	refusedPerIP = "prelogin_per_ip"
	refusedRate  = "rate"
)

// countingObserver counts refused connections by reason.
type countingObserver struct {
	proxy.NopObserver
	mu      sync.Mutex
	refusal map[string]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{refusal: map[string]int{}}
}

func (o *countingObserver) ConnRefused(proto, listener, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refusal[reason]++
}

func (o *countingObserver) refused(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.refusal[reason]
}

func mustPrefixes(cidrs ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		out = append(out, netip.MustParsePrefix(c))
	}
	return out
}
