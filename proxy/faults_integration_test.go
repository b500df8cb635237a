package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
)

// The fault matrix: each cell is one fault of the provider, the backend or
// the client, for IMAP and SMTP where it applies, with the exact reply the
// client gets and no goroutine or file descriptor left behind (checkLeaks).
// Backends are the real Dovecot and Postfix of internal/testenv unless the
// fault needs a stub (a backend that says nothing, or hangs up right after
// the login).

// The exact replies of the matrix.
const (
	imapUnavailable = "a1 NO [UNAVAILABLE] Temporary authentication failure, try again later."
	smtpUnavailable = "454 4.7.0 Temporary authentication failure"
	smtpBackendLost = "451 4.4.2 Connection to the mail server lost, try again"
)

// providerFaults are userinfo endpoints that fail in every way a provider
// can; the validator's timeout is providerFaultTimeout.
const providerFaultTimeout = 500 * time.Millisecond

func providerFaults(t *testing.T) map[string]string {
	t.Helper()
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()
	stub := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	return map[string]string{
		"refused": refusedURL,
		"slow": stub(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}),
		"500": stub(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}),
		"invalid json": stub(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"email": "alice@example.test", "email_verified": tru`)
		}),
		"oversized body": stub(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"email": "alice@example.test", "padding": "`+strings.Repeat("x", 80<<10)+`"}`)
		}),
	}
}

// providerAuthenticator validates tokens at url with its own HTTP client,
// whose idle connections are closed when the test ends.
func providerAuthenticator(t *testing.T, url string) auth.TokenAuthenticator {
	t.Helper()
	return providerAuthenticatorTimeout(t, url, providerFaultTimeout)
}

func providerAuthenticatorTimeout(t *testing.T, url string, timeout time.Duration) auth.TokenAuthenticator {
	t.Helper()
	hc, err := auth.NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return auth.TokenAuthenticator{
		Validator: auth.UserinfoValidator{URL: url, Client: hc, Timeout: timeout},
		Policy:    auth.Policy{UsernameClaim: "email"},
		Source:    "userinfo",
	}
}

func TestFaultProviderIMAP(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	for name, url := range providerFaults(t) {
		t.Run(name, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			tp := newTestProxy(t, Options{
				Authenticator: providerAuthenticator(t, url),
				Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
				IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
			})
			mark := dc.Log.Mark()
			c := proxytest.DialFrom(t, "127.0.0.41", tp.tlsAddr)
			c.UpgradeTLS(tp.clientTLS)
			c.Expect("* OK")
			start := time.Now()
			c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "token-for-"+strings.ReplaceAll(name, " ", "-")))
			if got := c.ReadLine(); got != imapUnavailable {
				t.Fatalf("reply %q, want %q", got, imapUnavailable)
			}
			if d := time.Since(start); d > providerFaultTimeout+3*time.Second {
				t.Errorf("answered after %v, want about the provider timeout (%v)", d, providerFaultTimeout)
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

func TestFaultProviderSMTP(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	for name, url := range providerFaults(t) {
		t.Run(name, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			tp := newSMTPTestProxy(t, Options{
				Authenticator: providerAuthenticator(t, url),
				Master:        Master{User: pf.Dovecot.MasterUser, Password: pf.Dovecot.MasterPassword},
				SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
				SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
			})
			mark := pf.Log.Mark()
			c := tp.dialSubmissions(t)
			start := time.Now()
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", "token-for-"+strings.ReplaceAll(name, " ", "-")), smtpUnavailable)
			if d := time.Since(start); d > providerFaultTimeout+3*time.Second {
				t.Errorf("answered after %v, want about the provider timeout (%v)", d, providerFaultTimeout)
			}
			c.SMTPCmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
			c.SMTPCmd("QUIT", "221 ")
			c.ExpectClosed()
			waitConnsClosed(t, tp.srv)
			if log := pf.Log.Since(mark); postfixLogin.MatchString(log) {
				t.Errorf("Postfix was asked to log in although the token was never validated:\n%s", log)
			}
		})
	}
}

// postfixLogin matches Postfix log lines of a session that tried to log in.
var postfixLogin = regexp.MustCompile(`auth=\d|sasl_username=`)

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

// smtpStubLoginThenClose speaks submission up to a successful AUTH, then
// hangs up (a capability probe ends with QUIT).
func smtpStubLoginThenClose(c net.Conn) {
	tp := textproto.NewConn(c)
	tp.PrintfLine("220 stub ESMTP")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			tp.PrintfLine("250-stub\r\n250-AUTH PLAIN\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME")
		case "AUTH":
			tp.PrintfLine("235 2.7.0 Authentication successful")
			return
		case "QUIT":
			tp.PrintfLine("221 2.0.0 Bye")
			return
		default:
			tp.PrintfLine("502 5.5.2 Error: command not recognized")
		}
	}
}

// backendFaultDialTimeout is Limits.DialTimeout in the backend cells.
const backendFaultDialTimeout = time.Second

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
			tp := newTestProxy(t, Options{
				Authenticator: fakeAuthenticator,
				IMAPBackend:   Backend{Address: addr, TLS: TLSNone},
				Limits:        Limits{DialTimeout: backendFaultDialTimeout},
			})
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

func TestFaultBackendSMTP(t *testing.T) {
	for _, tt := range []struct {
		name  string
		stubs bool                    // a stub backend (else a port nobody listens on)
		stub  func(net.Conn)          // the stub's connection handler; nil: silent
		auth  string                  // the reply to AUTH
		after func(c *proxytest.Conn) // more of the conversation, before QUIT
	}{
		{name: "refused", auth: smtpUnavailable},
		{name: "slow greeting", stubs: true, auth: smtpUnavailable},
		{name: "closing right after login", stubs: true, stub: smtpStubLoginThenClose,
			auth: "235 2.0.0 Authentication succeeded",
			after: func(c *proxytest.Conn) {
				c.SMTPCmd("MAIL FROM:<alice@example.test>", smtpBackendLost)
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			addr := proxytest.ClosedAddr(t)
			var sb *proxytest.StubBackend
			if tt.stubs {
				sb = proxytest.StartStubBackend(t, tt.stub)
				addr = sb.Addr
			}
			tp := newSMTPTestProxy(t, Options{
				Authenticator: fakeAuthenticator,
				SMTPBackend:   Backend{Address: addr, TLS: TLSNone},
				SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
				Limits:        Limits{DialTimeout: backendFaultDialTimeout},
			})
			c := tp.dialSubmissions(t)
			start := time.Now()
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", proxytest.TestToken), tt.auth)
			if d := time.Since(start); d > backendFaultDialTimeout+3*time.Second {
				t.Errorf("answered after %v, want within the dial timeout (%v)", d, backendFaultDialTimeout)
			}
			if tt.after != nil {
				tt.after(c)
			}
			c.SMTPCmd("QUIT", "221 ")
			c.ExpectClosed()
			waitConnsClosed(t, tp.srv)
			if sb != nil {
				proxytest.WaitFor(t, "mailgate to close its backend connections", func() bool { return sb.Open.Load() == 0 })
			}
		})
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
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		IMAPBackend:   Backend{Address: sb.Addr, TLS: TLSStartTLS, TLSConfig: backendTLS},
		Limits:        Limits{DialTimeout: backendFaultDialTimeout},
	})
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
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		IMAPBackend:   Backend{Address: sb.Addr, TLS: TLSNone},
	})
	c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.Expect("* OK")
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in")
	c.ExpectClosed()
	deadline := time.Now().Add(5 * time.Second)
	for openConnCount(tp.srv) > 0 {
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

// TestFaultBackendClosingMidRelayIMAP: Dovecot stops while a session is
// relayed; the client gets Dovecot's goodbye, then the connection ends.
func TestFaultBackendClosingMidRelayIMAP(t *testing.T) {
	proxytest.CheckLeaks(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
	// Plain IMAP to Dovecot: with TLS, imap-login would proxy the session
	// and could die before the imap process says goodbye.
	// Dovecot 2.4 takes plaintext only behind PROXY v2 with the SSL TLV.
	backend := Backend{Address: dc.IMAPAddr, TLS: TLSNone, ClientIP: "id"}
	if testenv.Generation() == "2.4" {
		backend = Backend{Address: dc.HAProxyAddr, TLS: TLSNone, ClientIP: "proxy"}
	}
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		IMAPBackend:   backend,
	})
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

// TestFaultBackendClosingMidRelaySMTP: Postfix stops in the middle of a
// message body; the client hears 451 4.4.2 after its final dot.
func TestFaultBackendClosingMidRelaySMTP(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	proxytest.CheckLeaks(t)
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
	tp := newSMTPTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
		SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
	})
	subject := uniqueSubject("fault-mid-relay")
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.C.Write([]byte("Subject: " + subject + "\r\n\r\nfirst part\r\n"))
	if err := pf.Stop(); err != nil {
		t.Fatalf("stop Postfix: %v", err)
	}
	c.SMTPCmd("second part\r\n.", smtpBackendLost)
	c.SMTPCmd("QUIT", "221 ")
	c.ExpectClosed()
	waitConnsClosed(t, tp.srv)
	if _, found := dc.FindMessage("alice@example.test", subject); found {
		t.Fatal("the message cut off by the backend was delivered")
	}
}

// TestFaultClientVanishesMidAuthenticate: the client disappears while
// mailgate waits for its SASL response, and while the provider is still
// validating its token; mailgate lets go of everything.
func TestFaultClientVanishesMidAuthenticate(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	pf := testenv.SharedPostfix(t)
	for _, proto := range []string{"imap", "smtp"} {
		for _, during := range []string{"sasl continuation", "token validation"} {
			t.Run(proto+" "+during, func(t *testing.T) {
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
				authn := providerAuthenticatorTimeout(t, slow.URL, 3*time.Second)
				var srv *Server
				var c *proxytest.Conn
				var pfMark int64
				if proto == "imap" {
					tp := newTestProxy(t, Options{
						Authenticator: authn,
						Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
						IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig()},
					})
					srv = tp.srv
					c = proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
					c.Expect("* OK")
					if during == "sasl continuation" {
						c.Send("a1 AUTHENTICATE XOAUTH2")
						c.Expect("+ ")
					} else {
						c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "vanishing-token"))
					}
				} else {
					tp := newSMTPTestProxy(t, Options{
						Authenticator: authn,
						Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
						SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
						SMTP:          SMTPOptions{Hostname: "mailgate.test"},
					})
					pfMark = pf.Log.Mark()
					srv = tp.srv
					c = tp.dialSubmissions(t)
					if during == "sasl continuation" {
						c.SMTPCmd("AUTH XOAUTH2", "334 ")
					} else {
						c.Send("AUTH XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "vanishing-token"))
					}
				}
				if during == "token validation" {
					select {
					case <-validating:
					case <-time.After(10 * time.Second):
						t.Fatal("the provider was never asked")
					}
				}
				c.Reset()
				waitConnsClosed(t, srv)
				if proto == "smtp" {
					if log := pf.Log.Since(pfMark); postfixLogin.MatchString(log) {
						t.Errorf("Postfix was asked to log in for a client that vanished before logging in:\n%s", log)
					}
				}
			})
		}
	}
}

// TestFaultClientVanishesMidIDLE: a client killed while in IDLE; mailgate
// closes its Dovecot session (Dovecot logs the disconnect during IDLE).
func TestFaultClientVanishesMidIDLE(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	proxytest.CheckLeaks(t)
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
	})
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
	tp := newTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		IMAPBackend:   Backend{Address: dc.IMAPAddr, TLS: TLSStartTLS, TLSConfig: dc.TLSConfig(), ClientIP: "id"},
	})
	subject := uniqueSubject("fault-append")
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

// TestFaultClientVanishesMidDATA: a client killed in the middle of a message
// body; Postfix sees the connection lost inside DATA and nothing is delivered.
func TestFaultClientVanishesMidDATA(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	dc := pf.Dovecot
	proxytest.CheckLeaks(t)
	tp := newSMTPTestProxy(t, Options{
		Authenticator: fakeAuthenticator,
		Master:        Master{User: dc.MasterUser, Password: dc.MasterPassword},
		SMTPBackend:   Backend{Address: pf.SubmissionAddr, TLS: TLSStartTLS, TLSConfig: pf.TLSConfig()},
		SMTP:          SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
	})
	subject := uniqueSubject("fault-data")
	c := tp.dialSubmissions(t)
	c.SMTPLogin()
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	mark := pf.Log.Mark()
	c.C.Write([]byte("Subject: " + subject + "\r\n\r\n"))
	io.CopyN(c.C, proxytest.NewMessageReader(1<<20), 512<<10)
	c.Reset()
	pf.Log.WaitSince(t, mark, "lost connection after DATA", 15*time.Second)
	waitConnsClosed(t, tp.srv)
	// Postfix queued nothing: a message that did get through would be in
	// the Maildir by the time a later one from the same user is.
	control := uniqueSubject("fault-data-control")
	c2 := tp.dialSubmissions(t)
	c2.SMTPLogin()
	c2.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c2.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
	c2.SMTPCmd("DATA", "354 ")
	c2.SMTPCmd("Subject: "+control+"\r\n\r\ncontrol\r\n.", "250 2.0.0")
	c2.SMTPCmd("QUIT", "221 ")
	dc.WaitMessage(t, "alice@example.test", control, 15*time.Second)
	if _, found := dc.FindMessage("alice@example.test", subject); found {
		t.Fatal("the message cut off in DATA was delivered")
	}
}
