package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/mailgate/auth"
)

// smtpTestProxy is a Server with a submission (STARTTLS) and a submissions
// (implicit TLS) listener on 127.0.0.1:0.
type smtpTestProxy struct {
	*testProxy
	cancel   context.CancelFunc
	serveErr chan error // what each ServeSMTP returned
	authN    *atomic.Int64
}

// newSMTPTestProxy starts ServeSMTP twice. The Authenticator is wrapped to
// count calls (authCalls).
func newSMTPTestProxy(t *testing.T, opts Options) *smtpTestProxy {
	t.Helper()
	serverTLS, clientTLS := testTLS(t)
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Master.User == "" {
		opts.Master = Master{User: "mailgate", Password: "master-secret"}
	}
	if opts.Authenticator == nil {
		opts.Authenticator = fakeAuthenticator
	}
	var calls atomic.Int64
	inner := opts.Authenticator
	opts.Authenticator = AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
		calls.Add(1)
		return inner.Authenticate(ctx, c)
	})
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	tp := &smtpTestProxy{
		testProxy: &testProxy{srv: srv, clientTLS: clientTLS, logs: logs},
		serveErr:  make(chan error, 2),
		authN:     &calls,
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp.cancel = cancel
	var wg sync.WaitGroup
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("net.Listen() = %v", err)
		}
		if implicit {
			tp.tlsAddr = ln.Addr().String()
		} else {
			tp.plainAddr = ln.Addr().String()
		}
		wg.Add(1)
		go func() { defer wg.Done(); tp.serveErr <- srv.ServeSMTP(ctx, ln, implicit) }()
	}
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
		for _, secret := range []string{"master-secret", testToken, badToken, downToken} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret (%q...) appears in the logs", secret[:4])
			}
		}
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	// ServeSMTP probes the backend before it serves: wait for both greetings.
	for _, c := range []*tconn{dialPlain(t, tp.plainAddr), dialTLS(t, tp.tlsAddr, clientTLS)} {
		c.smtpExpect("220 ")
		c.smtpCmd("QUIT", "221 ")
	}
	return tp
}

func (tp *smtpTestProxy) authCalls() int64 { return tp.authN.Load() }

// newSMTPTest starts a fake backend and a proxy in front of it (plain TCP to
// the backend, master login, sender enforcement on). mod may adjust the options.
func newSMTPTest(t *testing.T, fbOpts fakeSMTPOptions, mod func(*Options)) (*smtpTestProxy, *fakeSMTPBackend) {
	t.Helper()
	fb := startFakeSMTPBackend(t, fbOpts)
	opts := Options{
		SMTPBackend: Backend{Address: fb.addr, TLS: TLSNone},
		SMTP:        SMTPOptions{Hostname: "mailgate.test", EnforceSender: true},
		Challenge:   auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example.test/.well-known/openid-configuration", Scope: "openid email"},
	}
	if mod != nil {
		mod(&opts)
	}
	return newSMTPTestProxy(t, opts), fb
}

// smtpReply reads one (possibly multi-line) reply and returns its code and
// its lines without the code.
func (tc *tconn) smtpReply() (int, []string) {
	tc.t.Helper()
	var lines []string
	for {
		l := tc.readLine()
		if len(l) < 4 {
			tc.t.Fatalf("short SMTP reply line %q", l)
		}
		lines = append(lines, l[4:])
		if l[3] == ' ' {
			code, err := strconv.Atoi(l[:3])
			if err != nil {
				tc.t.Fatalf("bad SMTP reply line %q", l)
			}
			return code, lines
		}
	}
}

// smtpCmd sends line and checks that the reply's last line starts with want
// ("250 2.1.0" or "250"); it returns the last line.
func (tc *tconn) smtpCmd(line, want string) string {
	tc.t.Helper()
	tc.send(line)
	return tc.smtpExpect(want)
}

// smtpExpect reads a reply and checks the prefix of its last line.
func (tc *tconn) smtpExpect(want string) string {
	tc.t.Helper()
	code, lines := tc.smtpReply()
	last := strconv.Itoa(code) + " " + lines[len(lines)-1]
	if !strings.HasPrefix(last, want) {
		tc.t.Fatalf("reply %q, want prefix %q", last, want)
	}
	return last
}

// smtpEHLO sends EHLO and returns the extension keywords (with parameters).
func (tc *tconn) smtpEHLO() []string {
	tc.t.Helper()
	tc.send("EHLO client.test")
	code, lines := tc.smtpReply()
	if code != 250 {
		tc.t.Fatalf("EHLO = %d %q", code, lines)
	}
	return lines[1:]
}

func (tc *tconn) smtpStartTLS(cfg *tls.Config) {
	tc.t.Helper()
	tc.smtpCmd("STARTTLS", "220 ")
	c := tls.Client(tc.c, cfg)
	if err := c.Handshake(); err != nil {
		tc.t.Fatalf("handshake: %v", err)
	}
	tc.c, tc.br = c, newBufReader(c)
}

// dialSubmission connects to the STARTTLS listener, upgrades, and sends
// EHLO. dialSubmissions does the same on the implicit-TLS listener.
func (tp *smtpTestProxy) dialSubmission(t *testing.T) *tconn {
	t.Helper()
	c := dialPlain(t, tp.plainAddr)
	c.smtpExpect("220 mailgate.test ESMTP")
	c.smtpEHLO()
	c.smtpStartTLS(tp.clientTLS)
	c.smtpEHLO()
	return c
}

func (tp *smtpTestProxy) dialSubmissions(t *testing.T) *tconn {
	t.Helper()
	c := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	c.smtpExpect("220 mailgate.test ESMTP")
	c.smtpEHLO()
	return c
}

// login authenticates as alice with XOAUTH2.
func (tc *tconn) smtpLogin() {
	tc.t.Helper()
	tc.smtpCmd("AUTH XOAUTH2 "+xoauth2("alice@example.test", testToken), "235 2.0.0")
}

func hasExt(exts []string, kw string) bool {
	for _, e := range exts {
		if e == kw || strings.HasPrefix(e, kw+" ") {
			return true
		}
	}
	return false
}

func extParam(exts []string, kw string) string {
	for _, e := range exts {
		if v, ok := strings.CutPrefix(e, kw+" "); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond until it holds or 10 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// smtpOAuthClient is a go-sasl client for XOAUTH2 or OAUTHBEARER with a
// bearer token (go-sasl has no XOAUTH2 client).
type smtpOAuthClient struct{ mech, user, token string }

func (c smtpOAuthClient) Start() (string, []byte, error) {
	if c.mech == auth.MechOAUTHBEARER {
		return c.mech, auth.EncodeOAUTHBEARER(c.user, c.token), nil
	}
	return auth.MechXOAUTH2, auth.EncodeXOAUTH2(c.user, c.token), nil
}

// Next answers an error challenge with the empty dummy response.
func (c smtpOAuthClient) Next([]byte) ([]byte, error) { return []byte{}, nil }

var _ sasl.Client = smtpOAuthClient{}

// messageReader generates whole CRLF lines, some starting with a dot, until
// at least size bytes have been produced, without holding them in memory.
type messageReader struct {
	left int64
	line int
	pend []byte
}

func newMessageReader(size int64) *messageReader { return &messageReader{left: size} }

func (m *messageReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && (m.left > 0 || len(m.pend) > 0) {
		if len(m.pend) == 0 {
			m.line++
			switch {
			case m.line == 1:
				m.pend = []byte("Subject: generated\r\n\r\n")
			case m.line%7 == 0:
				m.pend = []byte(".leading dot line " + strconv.Itoa(m.line) + "\r\n")
			default:
				m.pend = []byte("line " + strconv.Itoa(m.line) + " abcdefghijklmnopqrstuvwxyz 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n")
			}
			m.left -= int64(len(m.pend))
		}
		c := copy(p[n:], m.pend)
		m.pend = m.pend[c:]
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
