package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/pires/go-proxyproto"

	"github.com/mailgate/mailgate/auth"
)

// fakeSMTPBackend speaks just enough of Postfix's submission service for the
// unit tests: greeting, EHLO with configurable extensions, STARTTLS, master
// AUTH PLAIN (mailgate / master-secret, "nobody@example.test" refused with
// 535; or fakeUser's own login with fakeUserPassword), XCLIENT,
// MAIL/RCPT/DATA, RSET, NOOP, QUIT. It records every command line and every
// message whose final dot arrived, and counts DATA bodies cut off before the
// dot. Real Postfix is exercised by the integration tests.
type fakeSMTPBackend struct {
	addr string
	opts fakeSMTPOptions

	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	open    map[net.Conn]bool
	conns   int
	lines   []string
	msgs    []fakeSMTPMessage
	aborted int // DATA bodies whose connection ended before the final dot
	gate    chan struct{}
}

type fakeSMTPOptions struct {
	// tls enables STARTTLS (and is the certificate for implicit TLS).
	tls *tls.Config
	// implicit makes the listener TLS from the first byte.
	implicit bool
	// ext are the EHLO keywords besides STARTTLS, AUTH and XCLIENT; nil means
	// fakeSMTPDefaultExt.
	ext []string
	// xclient offers XCLIENT.
	xclient bool
	// rcptReply maps a recipient to a refusal line ("550 5.1.1 ...").
	rcptReply map[string]string
	// closeOnData closes the connection when DATA arrives.
	closeOnData bool
	// paused holds new connections without a greeting until resume.
	paused bool
	// proxyProtocol requires a PROXY v1/v2 header on every connection.
	proxyProtocol bool
}

var fakeSMTPDefaultExt = []string{"PIPELINING", "SIZE 10240000", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}

type fakeSMTPMessage struct {
	user     string // the authenticated (or XCLIENT LOGIN) user
	from     string
	mailArgs string // MAIL FROM parameters
	rcpts    []string
	size     int64
	sum      [32]byte
	tls      bool
	xclient  string // the XCLIENT attributes seen on this connection
	remote   string // the client address, from a PROXY header if one came
}

func startFakeSMTPBackend(t *testing.T, opts fakeSMTPOptions) *fakeSMTPBackend {
	t.Helper()
	if opts.ext == nil {
		opts.ext = fakeSMTPDefaultExt
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	if opts.proxyProtocol {
		ln = &proxyproto.Listener{Listener: ln, ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			return proxyproto.REQUIRE, nil
		}}
	}
	fb := &fakeSMTPBackend{addr: ln.Addr().String(), opts: opts, gate: make(chan struct{}), ln: ln, open: make(map[net.Conn]bool)}
	if !opts.paused {
		close(fb.gate)
	}
	t.Cleanup(func() { fb.stop(); fb.wg.Wait() })
	fb.wg.Add(1)
	go func() {
		defer fb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fb.mu.Lock()
			fb.conns++
			fb.open[c] = true
			fb.mu.Unlock()
			fb.wg.Add(1)
			go func() {
				defer fb.wg.Done()
				defer func() {
					c.Close()
					fb.mu.Lock()
					delete(fb.open, c)
					fb.mu.Unlock()
				}()
				<-fb.gate
				if opts.implicit {
					tc := tls.Server(c, opts.tls)
					if tc.Handshake() != nil {
						return
					}
					fb.serve(tc, true)
					return
				}
				fb.serve(c, false)
			}()
		}
	}()
	return fb
}

// stop closes the listener and every open connection: the backend is down.
func (fb *fakeSMTPBackend) stop() {
	fb.ln.Close()
	fb.resume()
	fb.mu.Lock()
	defer fb.mu.Unlock()
	for c := range fb.open {
		c.Close()
	}
}

// openConns is the number of connections not yet closed.
func (fb *fakeSMTPBackend) openConns() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return len(fb.open)
}

// resume lets paused connections go on.
func (fb *fakeSMTPBackend) resume() {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	select {
	case <-fb.gate:
	default:
		close(fb.gate)
	}
}

func (fb *fakeSMTPBackend) connCount() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.conns
}

func (fb *fakeSMTPBackend) received() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.lines...)
}

func (fb *fakeSMTPBackend) messages() []fakeSMTPMessage {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]fakeSMTPMessage(nil), fb.msgs...)
}

func (fb *fakeSMTPBackend) abortedCount() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.aborted
}

// sawCommand reports whether any received line starts with prefix.
func (fb *fakeSMTPBackend) sawCommand(prefix string) bool {
	for _, l := range fb.received() {
		if strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(prefix)) {
			return true
		}
	}
	return false
}

func (fb *fakeSMTPBackend) serve(c net.Conn, isTLS bool) {
	br := bufio.NewReader(c)
	w := func(lines ...string) {
		var b bytes.Buffer
		for i, l := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			b.WriteString(l[:3] + sep + l[min(4, len(l)):] + "\r\n")
		}
		c.Write(b.Bytes())
	}
	w("220 fake.backend ESMTP Postfix")
	var user, from, mailArgs, xclient string
	var rcpts []string
	reset := func() { from, mailArgs, rcpts = "", "", nil }
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		fb.mu.Lock()
		fb.lines = append(fb.lines, line)
		fb.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reset()
			reply := []string{"250 fake.backend"}
			if fb.opts.tls != nil && !isTLS {
				reply = append(reply, "250 STARTTLS")
			}
			if isTLS || fb.opts.tls == nil {
				reply = append(reply, "250 AUTH PLAIN LOGIN")
			}
			if fb.opts.xclient {
				reply = append(reply, "250 XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT")
			}
			for _, e := range fb.opts.ext {
				reply = append(reply, "250 "+e)
			}
			w(reply...)
		case "STARTTLS":
			if fb.opts.tls == nil || isTLS {
				w("502 5.5.1 Error: command not implemented")
				continue
			}
			w("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, fb.opts.tls)
			if tc.Handshake() != nil {
				return
			}
			c, br, isTLS = tc, bufio.NewReader(tc), true
			user, xclient = "", ""
			reset()
		case "XCLIENT":
			if !fb.opts.xclient {
				w("550 5.7.0 Error: insufficient authorization")
				continue
			}
			xclient = arg
			user = ""
			for _, a := range strings.Fields(arg) {
				if v, ok := strings.CutPrefix(a, "LOGIN="); ok {
					user = v
				}
			}
			reset()
			w("220 fake.backend ESMTP Postfix")
		case "AUTH":
			mech, ir, _ := strings.Cut(arg, " ")
			raw, err := base64.StdEncoding.DecodeString(ir)
			if !strings.EqualFold(mech, "PLAIN") || err != nil {
				w("535 5.7.8 Error: authentication failed: bad request")
				continue
			}
			authz, authc, pass, err := auth.DecodePLAIN(raw)
			switch {
			case err == nil && authz == "" && authc == fakeUser && pass == fakeUserPassword:
				user = authc // password passthrough: the user's own login
				w("235 2.7.0 Authentication successful")
			case err != nil || authc != "mailgate" || pass != "master-secret":
				w("535 5.7.8 Error: authentication failed: (reason unavailable)")
			case authz == "nobody@example.test":
				w("535 5.7.8 Error: authentication failed: (reason unavailable)")
			default:
				user = authz
				w("235 2.7.0 Authentication successful")
			}
		case "MAIL":
			if user == "" {
				w("530 5.7.0 Authentication required")
				continue
			}
			addr := arg[len("FROM:"):]
			end := strings.IndexByte(addr, '>')
			from, mailArgs = strings.TrimPrefix(addr[:end], "<"), strings.TrimSpace(addr[end+1:])
			w("250 2.1.0 Ok")
		case "RCPT":
			addr := strings.TrimSuffix(strings.TrimPrefix(arg[3:], "<"), ">")
			if r, ok := fb.opts.rcptReply[addr]; ok {
				w(r)
				continue
			}
			rcpts = append(rcpts, addr)
			w("250 2.1.5 Ok")
		case "DATA":
			if fb.opts.closeOnData {
				return
			}
			if len(rcpts) == 0 {
				w("554 5.5.1 Error: no valid recipients")
				continue
			}
			w("354 End data with <CR><LF>.<CR><LF>")
			h := sha256.New()
			var size int64
			complete, midLine := false, false
			for {
				l, err := br.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					break
				}
				if !midLine && string(l) == ".\r\n" {
					complete = true
					break
				}
				if !midLine && l[0] == '.' {
					l = l[1:]
				}
				midLine = err == bufio.ErrBufferFull
				h.Write(l)
				size += int64(len(l))
			}
			if !complete {
				fb.mu.Lock()
				fb.aborted++
				fb.mu.Unlock()
				return
			}
			m := fakeSMTPMessage{user: user, from: from, mailArgs: mailArgs, rcpts: rcpts, size: size, tls: isTLS, xclient: xclient,
				remote: c.RemoteAddr().String()}
			copy(m.sum[:], h.Sum(nil))
			fb.mu.Lock()
			fb.msgs = append(fb.msgs, m)
			n := len(fb.msgs)
			fb.mu.Unlock()
			reset()
			w(fmt.Sprintf("250 2.0.0 Ok: queued as FAKE%d", n))
		case "RSET":
			reset()
			w("250 2.0.0 Ok")
		case "NOOP":
			w("250 2.0.0 Ok")
		case "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			w("502 5.5.2 Error: command not recognized")
		}
	}
}
