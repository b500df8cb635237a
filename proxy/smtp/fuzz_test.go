package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// FuzzSMTPAuth drives the real submission front (mailgate's own
// session, implicit TLS, over an in-memory connection) with a fuzzed AUTH
// exchange: the mechanism, an initial response (none, base64, raw or "="),
// continuation lines (base64 or raw) and arbitrary bytes after them, then
// QUIT. It checks that
//
//   - nothing panics (a panic in a connection goroutine crashes the run),
//   - every reply line is a well-formed SMTP reply (code 2xx-5xx, "-" or " ",
//     no CR, LF or NUL inside, at most 512 bytes, continuation lines with the
//     same code, nothing after the last CRLF) and a 334 carries valid base64,
//   - 235 comes at most once, and only if the authenticator accepted the
//     token on this connection (it accepts only the test tokens),
//   - the connection ends within fuzzConnDeadline and mailgate lets go of it,
//   - no token, base64 SASL message or master password reaches the log.
func FuzzSMTPAuth(f *testing.F) {
	fz := newFuzzSMTP(f)
	b64 := func(s string) []byte { return []byte(base64.StdEncoding.EncodeToString([]byte(s))) }
	raw := func(s string) []byte { return []byte(s) }
	xo := func(user, tok string) []byte { return auth.EncodeXOAUTH2(user, tok) }
	ob := func(user, tok string) []byte { return auth.EncodeOAUTHBEARER(user, tok) }
	for _, s := range []struct {
		mech           string
		mode           uint8
		ir, cont, tail []byte
	}{
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", proxytest.TestToken), nil, raw("MAIL FROM:<alice@example.test>\r\nRSET\r\n")},
		{"OAUTHBEARER", fuzzIRBase64, ob("alice@example.test", proxytest.TestToken), nil, nil},
		{"OAUTHBEARER", fuzzIRBase64, ob("", proxytest.TestToken), nil, raw("NOOP\r\n")},
		{"xoauth2", fuzzIRNone, nil, xo("alice@example.test", proxytest.TestToken), nil},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", proxytest.BadToken), raw("\x01"), raw("MAIL FROM:<alice@example.test>\r\n")},
		{"OAUTHBEARER", fuzzIRBase64, ob("alice@example.test", "bob-token"), nil, nil},
		{"XOAUTH2", fuzzIRBase64, xo("nobody@example.test", "nobody-token"), nil, nil},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", proxytest.DownToken), nil, nil},
		{"XOAUTH2", fuzzIREmpty, nil, nil, nil},
		{"XOAUTH2", fuzzIRRaw, raw("not base64!"), nil, nil},
		{"XOAUTH2", fuzzIRNone, nil, raw("*"), nil},
		{"XOAUTH2", fuzzIRNone | fuzzContRaw, nil, raw("*\n="), nil},
		{"PLAIN", fuzzIRBase64, raw("\x00alice@example.test\x00password"), nil, nil},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test\r\nMAIL FROM:<x@y>", proxytest.TestToken), nil, nil},
		{"XOAUTH2\rNOOP", fuzzIRNone, nil, nil, nil},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", proxytest.TestToken), nil,
			append(append(raw("AUTH XOAUTH2 "), b64(string(xo("alice@example.test", proxytest.TestToken)))...), "\r\nMAIL FROM:<bob@example.test>\r\n"...)},
		{"XOAUTH2", fuzzIRBase64, xo("a", "x"), raw("\x01"),
			raw("AUTH XOAUTH2 AQ==\r\nAQ==\r\nAUTH OAUTHBEARER AQ==\r\nAQ==\r\nAUTH XOAUTH2\r\n")},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", strings.Repeat("t", 40<<10)), raw("\x01"), nil},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", strings.Repeat("t", 50<<10)), nil, nil},
		{"OAUTHBEARER", fuzzIRNone | fuzzContRaw, nil, raw("biwsAQ==\nAQ=="), raw("STARTTLS\r\nEHLO again\r\n")},
		{"XOAUTH2", fuzzIRBase64, xo("alice@example.test", proxytest.TestToken), nil,
			raw("MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")},
	} {
		f.Add(s.mech, s.mode, s.ir, s.cont, s.tail)
	}
	f.Fuzz(func(t *testing.T, mech string, mode uint8, ir, cont, tail []byte) {
		fz.run(t, mech, mode, ir, cont, tail)
	})
}

// Bits of FuzzSMTPAuth's mode: how the initial response is sent (the low
// two bits) and whether continuation lines go raw instead of base64.
const (
	fuzzIRNone   = 0
	fuzzIRBase64 = 1
	fuzzIRRaw    = 2
	fuzzIREmpty  = 3 // "="
	fuzzContRaw  = 4
)

const (
	// fuzzConnDeadline bounds one execution's connection: the limits below
	// end any conversation within a few seconds once the client is silent.
	fuzzConnDeadline = 20 * time.Second
	// fuzzMaxScript caps what one execution sends.
	fuzzMaxScript = 256 << 10
)

// fuzzSMTP is one proxy and backend stub shared by all executions of a
// fuzzing process; executions run one at a time.
type fuzzSMTP struct {
	srv       *proxy.Server
	conns     chan net.Conn
	clientTLS *tls.Config
	logs      fuzzLog // reset by each execution
	port      atomic.Int32

	mu       sync.Mutex
	accepted map[string]int // client address -> tokens accepted on that connection
}

func newFuzzSMTP(tb testing.TB) *fuzzSMTP {
	serverTLS, clientTLS := proxytest.TLSPair(tb)
	clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	fz := &fuzzSMTP{conns: make(chan net.Conn), clientTLS: clientTLS, accepted: make(map[string]int)}
	be := proxytest.StartStubBackend(tb, fuzzBackendServe)
	srv, err := proxy.New(proxy.Options{
		Authenticator: proxy.AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
			id, err := fakeAuthenticator(ctx, c)
			if err == nil {
				fz.mu.Lock()
				fz.accepted[c.RemoteAddr]++
				fz.mu.Unlock()
			}
			return id, err
		}),
		TLSConfig: serverTLS,
		Master:    proxy.Master{User: "mailgate", Password: "master-secret"},
		Limits: proxy.Limits{
			CommandTimeout:      2 * time.Second,
			PreauthTimeout:      4 * time.Second,
			HandshakeTimeout:    5 * time.Second,
			WriteTimeout:        5 * time.Second,
			MaxConnectionsPerIP: -1,
			// Fuzzing workers open connections from 127.0.0.1 far faster
			// than the per-network rate and pre-login cap allow.
			MaxPreloginPerIP: -1,
			ConnRate:         -1,
		},
		// The level is Debug so that every line that could leak is written.
		Logger: slog.New(slog.NewTextHandler(&fz.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		tb.Fatalf("proxy.New() = %v", err)
	}
	front, err := New(srv, Options{Backend: proxy.Backend{Address: be.Addr, TLS: proxy.TLSNone},
		Hostname: "mailgate.test", EnforceSender: true, DataTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	fz.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, newChanListener(fz.conns), true, front) }()
	tb.Cleanup(func() { cancel(); srv.Close(); <-done })
	return fz
}

// script is what the client sends in one execution.
func fuzzScript(mech string, mode uint8, ir, cont, tail []byte) []byte {
	var b bytes.Buffer
	b.WriteString("EHLO fuzz.test\r\nAUTH ")
	b.WriteString(mech)
	switch mode & 3 {
	case fuzzIRBase64:
		b.WriteString(" " + base64.StdEncoding.EncodeToString(ir))
	case fuzzIRRaw:
		b.WriteByte(' ')
		b.Write(ir)
	case fuzzIREmpty:
		b.WriteString(" =")
	}
	b.WriteString("\r\n")
	if len(cont) > 0 {
		for _, m := range bytes.Split(cont, []byte("\n")) {
			if mode&fuzzContRaw != 0 {
				b.Write(m)
			} else {
				b.WriteString(base64.StdEncoding.EncodeToString(m))
			}
			b.WriteString("\r\n")
		}
	}
	b.Write(tail)
	if len(tail) > 0 && tail[len(tail)-1] != '\n' {
		b.WriteString("\r\n")
	}
	// Enough QUITs for one to be read as a command even if the exchange
	// takes every line it can (an initial and a dummy response).
	b.WriteString("QUIT\r\nQUIT\r\nQUIT\r\nQUIT\r\n")
	return b.Bytes()
}

// secrets are strings of an execution that must not be logged.
func fuzzSecrets(mode uint8, ir, cont []byte) []string {
	s := []string{proxytest.TestToken, "bob-token", "master-secret"}
	add := func(m []byte) {
		if enc := base64.StdEncoding.EncodeToString(m); len(enc) >= 16 {
			s = append(s, enc)
		}
	}
	if mode&3 == fuzzIRBase64 {
		add(ir)
	}
	if mode&fuzzContRaw == 0 {
		for _, m := range bytes.Split(cont, []byte("\n")) {
			add(m)
		}
	}
	return s
}

func (fz *fuzzSMTP) run(t *testing.T, mech string, mode uint8, ir, cont, tail []byte) {
	script := fuzzScript(mech, mode, ir, cont, tail)
	if len(script) > fuzzMaxScript {
		return
	}
	fz.logs.reset()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1024 + int(fz.port.Add(1)%60000)}
	defer func() {
		fz.mu.Lock()
		delete(fz.accepted, remote.String())
		fz.mu.Unlock()
	}()

	cli, srvEnd := net.Pipe()
	defer cli.Close()
	select {
	case fz.conns <- &addrConn{Conn: srvEnd, remote: remote}:
	case <-time.After(fuzzConnDeadline):
		t.Fatal("the server did not accept a connection")
	}
	tc := tls.Client(cli, fz.clientTLS)
	tc.SetDeadline(time.Now().Add(fuzzConnDeadline))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	wrote := make(chan struct{})
	go func() { defer close(wrote); tc.Write(script) }()
	out, err := io.ReadAll(tc)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("reading replies: %v (the connection did not end within %v?)\nreplies so far: %q", err, fuzzConnDeadline, out)
	}
	cli.Close()
	<-wrote

	// mailgate lets go of the connection.
	deadline := time.Now().Add(5 * time.Second)
	for fz.srv.Conns() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("mailgate still holds the connection after the client saw it close")
		}
		time.Sleep(time.Millisecond)
	}

	fz.mu.Lock()
	accepted := fz.accepted[remote.String()]
	fz.mu.Unlock()
	if testing.Verbose() {
		t.Logf("sent %q\nreceived (%d tokens accepted):\n%s", script, accepted, out)
	}
	checkSMTPReplies(t, out, accepted)

	logs := fz.logs.String()
	for _, s := range fuzzSecrets(mode, ir, cont) {
		if strings.Contains(logs, s) {
			t.Fatalf("a secret (%.4q...) is in the log:\n%s", s, logs)
		}
	}
	if shape := proxytest.SecretShape(logs); shape != "" {
		t.Fatalf("%s is in the log:\n%s", shape, logs)
	}
}

// checkSMTPReplies checks a whole reply stream (see FuzzSMTPAuth).
func checkSMTPReplies(t *testing.T, out []byte, accepted int) {
	t.Helper()
	lines := strings.Split(string(out), "\r\n")
	if last := lines[len(lines)-1]; last != "" {
		t.Fatalf("reply stream ends inside a line: %q", last)
	}
	lines = lines[:len(lines)-1]
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "220 mailgate.test ESMTP") {
		t.Fatalf("no greeting: %q", out)
	}
	cont, successes := "", 0
	for _, l := range lines {
		if len(l) < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
			len(l) > 3 && l[3] != ' ' && l[3] != '-' {
			t.Fatalf("malformed reply line %q in %q", l, out)
		}
		if len(l) > 510 {
			t.Fatalf("reply line of %d bytes: %.80q...", len(l), l)
		}
		if strings.ContainsAny(l, "\r\n\x00") {
			t.Fatalf("control character in reply line %q", l)
		}
		if cont != "" && l[:3] != cont {
			t.Fatalf("reply line %q continues a %s reply", l, cont)
		}
		cont = ""
		if len(l) > 3 && l[3] == '-' {
			cont = l[:3]
			continue
		}
		switch l[:3] {
		case "235":
			successes++
		case "334":
			if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(l[3:], " ")); err != nil {
				t.Fatalf("334 with invalid base64: %q", l)
			}
		}
	}
	if cont != "" {
		t.Fatalf("multi-line %s reply not finished", cont)
	}
	if successes > 1 || successes > accepted {
		t.Fatalf("%d AUTH successes (235) for %d tokens accepted:\n%s", successes, accepted, out)
	}
}

// fuzzBackendServe is a submission backend that takes the master login for
// anyone but nobody@example.test and every message.
func fuzzBackendServe(c net.Conn) {
	tp := textproto.NewConn(c)
	tp.PrintfLine("220 fuzz.backend ESMTP")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			tp.PrintfLine("250-fuzz.backend\r\n250-AUTH PLAIN\r\n250-SIZE 10240000\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME")
		case "AUTH":
			_, ir, _ := strings.Cut(arg, " ")
			msg, _ := base64.StdEncoding.DecodeString(ir)
			if authz, _, _, err := auth.DecodePLAIN(msg); err != nil || authz == "nobody@example.test" {
				tp.PrintfLine("535 5.7.8 Error: authentication failed")
				continue
			}
			tp.PrintfLine("235 2.7.0 Authentication successful")
		case "DATA":
			tp.PrintfLine("354 End data with <CR><LF>.<CR><LF>")
			if _, err := io.Copy(io.Discard, tp.DotReader()); err != nil {
				return
			}
			tp.PrintfLine("250 2.0.0 Ok: queued as FUZZ")
		case "QUIT":
			tp.PrintfLine("221 2.0.0 Bye")
			return
		case "MAIL", "RCPT", "RSET", "NOOP":
			tp.PrintfLine("250 2.0.0 Ok")
		default:
			tp.PrintfLine("502 5.5.2 Error: command not recognized")
		}
	}
}

// chanListener is a net.Listener whose connections come from a channel.
type chanListener struct {
	conns <-chan net.Conn
	stop  chan struct{}
	once  sync.Once
}

func newChanListener(conns <-chan net.Conn) *chanListener {
	return &chanListener{conns: conns, stop: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.stop:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.stop) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 465} }

// fuzzLog is the fuzzing proxy's log, kept for one execution at a time.
type fuzzLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *fuzzLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *fuzzLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

func (l *fuzzLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// addrConn gives an in-memory connection loopback addresses, so that
// mailgate sees a client address (and the authenticator a distinct one per
// connection).
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
func (c *addrConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 465} }
