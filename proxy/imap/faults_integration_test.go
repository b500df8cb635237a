package imap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// The fault matrix of the IMAP front: each cell is one fault of the
// provider, the backend or the client, with the exact reply the client gets
// and no goroutine or file descriptor left behind (proxytest.CheckLeaks).
// Backends are the real Dovecot of internal/testenv unless the fault needs
// a stub (a backend that says nothing, or hangs up right after the login).
// proxy/smtp has the cells for submission.

// imapUnavailable is the exact reply of a temporary failure.
const imapUnavailable = "a1 NO [UNAVAILABLE] Temporary authentication failure, try again later."

// backendFaultDialTimeout is proxy.Limits.DialTimeout in the backend cells.
const backendFaultDialTimeout = time.Second

func TestFaultProviderIMAP(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	for name, url := range proxytest.ProviderFaults(t) {
		t.Run(name, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			tp := newTestProxy(t, proxy.Options{
				Authenticator: proxytest.ProviderAuthenticator(t, url, proxytest.ProviderFaultTimeout),
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
			mark := dc.Log.Mark()
			c := proxytest.DialFrom(t, "127.0.0.41", tp.tlsAddr)
			c.UpgradeTLS(tp.clientTLS)
			c.Expect("* OK")
			start := time.Now()
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "token-for-"+strings.ReplaceAll(name, " ", "-")))
			if got := c.ReadLine(); got != imapUnavailable {
				t.Fatalf("reply %q, want %q", got, imapUnavailable)
			}
			if d := time.Since(start); d > proxytest.ProviderFaultTimeout+3*time.Second {
				t.Errorf("answered after %v, want about the provider timeout (%v)", d, proxytest.ProviderFaultTimeout)
			}
			c.Send("a2 LOGOUT")
			c.Expect("* BYE")
			c.Expect("a2 OK")
			c.ExpectClosed()
			waitConnsClosed(t, tp.srv)
			if strings.Contains(dc.Log.Since(mark), "rip=127.0.0.41") {
				t.Error("Dovecot was contacted although the token was never validated")
			}
		})
	}
}

// imapStubLoginThenClose answers the master login with OK, then hangs up.
func imapStubLoginThenClose(c net.Conn) {
	br := bufio.NewReader(c)
	io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN] stub ready.\r\n")
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	tag, _, _ := strings.Cut(line, " ")
	io.WriteString(c, tag+" OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
}

func TestFaultBackendIMAP(t *testing.T) {
	for _, tt := range []struct {
		name  string
		stubs bool           // a stub backend (else a port nobody listens on)
		stub  func(net.Conn) // the stub's connection handler; nil: silent
		want  string         // the reply to AUTHENTICATE
		ends  bool           // the connection ends after it
	}{
		{name: "refused", want: imapUnavailable},
		{name: "slow greeting", stubs: true, want: imapUnavailable},
		{name: "closing right after login", stubs: true, stub: imapStubLoginThenClose,
			want: "a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in", ends: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			addr := proxytest.ClosedAddr(t)
			var sb *proxytest.StubBackend
			if tt.stubs {
				sb = proxytest.StartStubBackend(t, tt.stub)
				addr = sb.Addr
			}
			tp := newTestProxy(t, proxy.Options{
				Authenticator: fakeAuthenticator,
				Limits:        proxy.Limits{DialTimeout: backendFaultDialTimeout},
			}, Options{Backend: proxy.Backend{Address: addr, TLS: proxy.TLSNone}})
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			start := time.Now()
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
			if got := c.ReadLine(); got != tt.want {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			if d := time.Since(start); d > backendFaultDialTimeout+3*time.Second {
				t.Errorf("answered after %v, want within the dial timeout (%v)", d, backendFaultDialTimeout)
			}
			if tt.ends {
				c.ExpectClosed()
				c.C.Close() // as a client does once the server has hung up
			} else {
				c.Send("a2 LOGOUT")
				c.Expect("* BYE")
				c.Expect("a2 OK")
				c.ExpectClosed()
			}
			waitConnsClosed(t, tp.srv)
			if sb != nil {
				proxytest.WaitFor(t, "mailgate to close its backend connection", func() bool { return sb.Open.Load() == 0 })
			}
		})
	}
}

// TestFaultBackendClosingMidRelayIMAP: Dovecot stops while a session is
// relayed; the client gets Dovecot's goodbye, then the connection ends.
func TestFaultBackendClosingMidRelayIMAP(t *testing.T) {
	proxytest.CheckLeaks(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	// Plain IMAP to Dovecot: with TLS, imap-login would proxy the session
	// and could die before the imap process says goodbye.
	// Dovecot 2.4 takes plaintext only behind PROXY v2 with the SSL TLV.
	backend := proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSNone, ClientIP: "id"}
	if testenv.Generation() == "2.4" {
		backend = proxy.Backend{Address: dc.HAProxyAddr, TLS: proxy.TLSNone, ClientIP: "proxy"}
	}
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: backend})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK [CAPABILITY")
	c.Send("a2 SELECT INBOX")
	c.ExpectTagged("a2", "a2 OK")
	if err := dc.Stop(); err != nil {
		t.Fatalf("stop Dovecot: %v", err)
	}
	if got, want := c.ReadLine(), "* BYE Server shutting down."; got != want {
		t.Fatalf("after Dovecot stopped: %q, want %q", got, want)
	}
	c.ExpectClosed()
	waitConnsClosed(t, tp.srv)
}

// TestFaultClientVanishesMidIDLE: a client killed while in IDLE; mailgate
// closes its Dovecot session (Dovecot logs the disconnect during IDLE).
func TestFaultClientVanishesMidIDLE(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	proxytest.CheckLeaks(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("bob@example.test", "bob-token"))
	c.Expect("a1 OK [CAPABILITY")
	c.Send("a2 SELECT INBOX")
	c.ExpectTagged("a2", "a2 OK")
	c.Send("a3 IDLE")
	c.Expect("+ idling")
	mark := dc.Log.Mark()
	c.Reset()
	line := dc.Log.WaitSince(t, mark, "imap(bob@example.test)", 15*time.Second)
	if !strings.Contains(line, "Disconnected") || !strings.Contains(line, "IDLE") {
		t.Fatalf("Dovecot's log line %q, want a disconnect during IDLE", line)
	}
	waitConnsClosed(t, tp.srv)
}

// TestFaultClientVanishesMidAPPEND: the IMAP analogue of a cut DATA: a client
// killed inside an APPEND literal leaves no message in the Maildir.
func TestFaultClientVanishesMidAPPEND(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	proxytest.CheckLeaks(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"}})
	subject := proxytest.UniqueSubject("fault-append")
	msg := fmt.Sprintf("From: alice@example.test\r\nSubject: %s\r\n\r\n%s\r\n", subject, strings.Repeat("x", 64<<10))
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK [CAPABILITY")
	c.Send(fmt.Sprintf("a2 APPEND INBOX {%d}", len(msg)))
	c.Expect("+ ")
	c.C.Write([]byte(msg[:len(msg)/2]))
	mark := dc.Log.Mark()
	c.Reset()
	line := dc.Log.WaitSince(t, mark, "imap(alice@example.test)", 15*time.Second)
	if !strings.Contains(line, "Disconnected") {
		t.Fatalf("Dovecot's log line %q, want a disconnect", line)
	}
	waitConnsClosed(t, tp.srv)
	if _, found := dc.FindMessage("alice@example.test", subject); found {
		t.Fatal("the message cut off in APPEND was stored")
	}
}

// TestFaultBackendStallsAfterSTARTTLS: a backend that completes STARTTLS and
// then says nothing; the login gives up at the dial timeout.
//
// Under -race this also catches the deadline callback of imap_backend.go
// reading the connection variable that the STARTTLS upgrade reassigned.
func TestFaultBackendStallsAfterSTARTTLS(t *testing.T) {
	proxytest.CheckLeaks(t)
	stubTLS, backendTLS := proxytest.TLSPair(t)
	sb := proxytest.StartStubBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS] stub ready.\r\n")
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(line, " ")
		io.WriteString(c, tag+" OK Begin TLS negotiation now.\r\n")
		tc := tls.Server(c, stubTLS)
		if tc.Handshake() != nil {
			return
		}
		io.Copy(io.Discard, tc) // silent until mailgate hangs up
	})
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Limits:        proxy.Limits{DialTimeout: backendFaultDialTimeout},
	}, Options{Backend: proxy.Backend{Address: sb.Addr, TLS: proxy.TLSStartTLS, TLSConfig: backendTLS}})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	start := time.Now()
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	if got := c.ReadLine(); got != imapUnavailable {
		t.Fatalf("reply %q, want %q", got, imapUnavailable)
	}
	if d := time.Since(start); d < backendFaultDialTimeout || d > backendFaultDialTimeout+3*time.Second {
		t.Errorf("answered after %v, want at the dial timeout (%v)", d, backendFaultDialTimeout)
	}
	c.Send("a2 LOGOUT")
	c.Expect("* BYE")
	c.Expect("a2 OK")
	c.ExpectClosed()
	waitConnsClosed(t, tp.srv)
	proxytest.WaitFor(t, "mailgate to close its backend connection", func() bool { return sb.Open.Load() == 0 })
}

// TestFaultBackendClosedRelayEndsWithoutClient: once the backend has hung
// up and the client has been told (EOF), mailgate closes the client
// connection itself instead of waiting for the client to close it.
func TestFaultBackendClosedRelayEndsWithoutClient(t *testing.T) {
	proxytest.CheckLeaks(t)
	sb := proxytest.StartStubBackend(t, imapStubLoginThenClose)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
	}, Options{Backend: proxy.Backend{Address: sb.Addr, TLS: proxy.TLSNone}})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in")
	c.ExpectClosed()
	deadline := time.Now().Add(5 * time.Second)
	for tp.srv.Conns() > 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			relays := ""
			for _, g := range strings.Split(stacks, "\n\n") {
				if strings.Contains(g, "relayCopy") {
					relays += g + "\n\n"
				}
			}
			t.Fatalf("mailgate still holds the client connection 5 s after the backend hung up; relay goroutines:\n%s", relays)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFaultClientVanishesMidAuthenticate: the client disappears while
// mailgate waits for its SASL response, and while the provider is still
// validating its token; mailgate lets go of everything.
func TestFaultClientVanishesMidAuthenticate(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	for _, during := range []string{"sasl continuation", "token validation"} {
		t.Run("imap "+during, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			validating := make(chan struct{}, 1)
			slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				validating <- struct{}{}
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			}))
			t.Cleanup(slow.Close)
			authn := proxytest.ProviderAuthenticator(t, slow.URL, 3*time.Second)
			tp := newTestProxy(t, proxy.Options{
				Authenticator: authn,
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: dc.IMAPAddr, TLS: proxy.TLSStartTLS, TLSConfig: dc.TLSConfig()}})
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			if during == "sasl continuation" {
				c.Send("a1 AUTHENTICATE XOAUTH2")
				c.Expect("+ ")
			} else {
				c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "vanishing-token"))
			}
			if during == "token validation" {
				select {
				case <-validating:
				case <-time.After(10 * time.Second):
					t.Fatal("the provider was never asked")
				}
			}
			c.Reset()
			waitConnsClosed(t, tp.srv)
		})
	}
}
