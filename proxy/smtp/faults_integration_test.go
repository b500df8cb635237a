package smtp

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// The fault matrix: each cell is one fault of the provider, the backend or
// the client, for IMAP and SMTP where it applies, with the exact reply the
// client gets and no goroutine or file descriptor left behind (checkLeaks).
// Backends are the real Dovecot and Postfix of internal/testenv unless the
// fault needs a stub (a backend that says nothing, or hangs up right after
// the login).

// The exact replies of the matrix.
const (
	smtpUnavailable = "454 4.7.0 Temporary authentication failure"
	smtpBackendLost = "451 4.4.2 Connection to the mail server lost, try again"
)

func TestFaultProviderSMTP(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	for name, url := range proxytest.ProviderFaults(t) {
		t.Run(name, func(t *testing.T) {
			proxytest.CheckLeaks(t)
			tp := newSMTPTestProxy(t, proxy.Options{
				Authenticator: proxytest.ProviderAuthenticator(t, url, proxytest.ProviderFaultTimeout),
				Master:        proxy.Master{User: pf.Dovecot.MasterUser, Password: pf.Dovecot.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test", EnforceSender: true})
			mark := pf.Log.Mark()
			c := tp.dialSubmissions(t)
			start := time.Now()
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", "token-for-"+strings.ReplaceAll(name, " ", "-")), smtpUnavailable)
			if d := time.Since(start); d > proxytest.ProviderFaultTimeout+3*time.Second {
				t.Errorf("answered after %v, want about the provider timeout (%v)", d, proxytest.ProviderFaultTimeout)
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

// backendFaultDialTimeout is proxy.Limits.DialTimeout in the backend cells.
const backendFaultDialTimeout = time.Second

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
			auth: "235 2.7.0 Authentication successful",
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
			tp := newSMTPTestProxy(t, proxy.Options{
				Authenticator: fakeAuthenticator,
				Limits:        proxy.Limits{DialTimeout: backendFaultDialTimeout},
			}, Options{Backend: proxy.Backend{Address: addr, TLS: proxy.TLSNone}, Hostname: "mailgate.test", EnforceSender: true})
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

// TestFaultBackendClosingMidRelaySMTP: Postfix stops in the middle of a
// message body; the client hears 451 4.4.2 after its final dot.
func TestFaultBackendClosingMidRelaySMTP(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	proxytest.CheckLeaks(t)
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
	tp := newSMTPTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test", EnforceSender: true})
	subject := proxytest.UniqueSubject("fault-mid-relay")
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
	pf := testenv.SharedPostfix(t)
	dc := pf.Dovecot
	for _, during := range []string{"sasl continuation", "token validation"} {
		t.Run("smtp "+during, func(t *testing.T) {
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
			tp := newSMTPTestProxy(t, proxy.Options{
				Authenticator: authn,
				Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
			}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test"})
			pfMark := pf.Log.Mark()
			c := tp.dialSubmissions(t)
			if during == "sasl continuation" {
				c.SMTPCmd("AUTH XOAUTH2", "334 ")
			} else {
				c.Send("AUTH XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", "vanishing-token"))
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
			if log := pf.Log.Since(pfMark); postfixLogin.MatchString(log) {
				t.Errorf("Postfix was asked to log in for a client that vanished before logging in:\n%s", log)
			}
		})
	}
}

// TestFaultClientVanishesMidDATA: a client killed in the middle of a message
// body; Postfix sees the connection lost inside DATA and nothing is delivered.
func TestFaultClientVanishesMidDATA(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	dc := pf.Dovecot
	proxytest.CheckLeaks(t)
	tp := newSMTPTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		Master:        proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
	}, Options{Backend: proxy.Backend{Address: pf.SubmissionAddr, TLS: proxy.TLSStartTLS, TLSConfig: pf.TLSConfig()}, Hostname: "mailgate.test", EnforceSender: true})
	subject := proxytest.UniqueSubject("fault-data")
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
	control := proxytest.UniqueSubject("fault-data-control")
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
