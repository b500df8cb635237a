package proxytest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mailgate/mailgate/auth"
)

// FakeSMTPBackend speaks just enough of Postfix's submission service for the
// unit tests: greeting, EHLO with configurable extensions, STARTTLS, master
// AUTH PLAIN (MasterUser / MasterPassword, "nobody@example.test" refused with
// 535; or FakeUser's own login with FakeUserPassword), XCLIENT,
// MAIL/RCPT/DATA, RSET, NOOP, QUIT. It records every command line and every
// message whose final dot arrived, and counts DATA bodies cut off before the
// dot. Real Postfix is exercised by the integration tests.
type FakeSMTPBackend struct {
	Addr string
	opts FakeSMTPOptions

	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	open    map[net.Conn]bool
	conns   int
	lines   []string
	msgs    []FakeSMTPMessage
	aborted int // DATA bodies whose connection ended before the final dot
	gate    chan struct{}
}

// FakeSMTPOptions configure a FakeSMTPBackend.
type FakeSMTPOptions struct {
	// TLS enables STARTTLS (and is the certificate for implicit TLS).
	TLS *tls.Config
	// Implicit makes the listener TLS from the first byte.
	Implicit bool
	// Ext are the EHLO keywords besides STARTTLS, AUTH and XCLIENT; nil means
	// FakeSMTPDefaultExt.
	Ext []string
	// XCLIENT offers XCLIENT.
	XCLIENT bool
	// RcptReply maps a recipient to a refusal line ("550 5.1.1 ...").
	RcptReply map[string]string
	// CloseOnData closes the connection when DATA arrives.
	CloseOnData bool
	// Paused holds new connections without a greeting until resume.
	Paused bool
	// ProxyProtocol requires a PROXY v1/v2 header on every connection.
	ProxyProtocol bool
	// IdleTimeout, if set, ends a connection idle that long after login
	// with 421, as Postfix's smtpd_timeout does.
	IdleTimeout time.Duration
}

// FakeSMTPDefaultExt are the EHLO keywords of FakeSMTPOptions.Ext nil.
var FakeSMTPDefaultExt = []string{"PIPELINING", "SIZE 10240000", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}

// FakeSMTPMessage is a message the fake backend received whole.
type FakeSMTPMessage struct {
	User     string // the authenticated (or XCLIENT LOGIN) user
	From     string
	MailArgs string // MAIL FROM parameters
	Rcpts    []string
	Size     int64
	Sum      [32]byte
	TLS      bool
	XCLIENT  string // the XCLIENT attributes seen on this connection
	Remote   string // the client address, from a PROXY header if one came
}

// StartFakeSMTPBackend listens on 127.0.0.1 until the test ends.
func StartFakeSMTPBackend(t *testing.T, opts FakeSMTPOptions) *FakeSMTPBackend {
	t.Helper()
	if opts.Ext == nil {
		opts.Ext = FakeSMTPDefaultExt
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	if opts.ProxyProtocol {
		ln = &proxyproto.Listener{Listener: ln, ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			return proxyproto.REQUIRE, nil
		}}
	}
	fb := &FakeSMTPBackend{Addr: ln.Addr().String(), opts: opts, gate: make(chan struct{}), ln: ln, open: make(map[net.Conn]bool)}
	if !opts.Paused {
		close(fb.gate)
	}
	t.Cleanup(func() { fb.Stop(); fb.wg.Wait() })
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
				if opts.Implicit {
					tc := tls.Server(c, opts.TLS)
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

// Stop closes the listener and every open connection: the backend is down.
func (fb *FakeSMTPBackend) Stop() {
	fb.ln.Close()
	fb.Resume()
	fb.mu.Lock()
	defer fb.mu.Unlock()
	for c := range fb.open {
		c.Close()
	}
}

// OpenConns is the number of connections not yet closed.
func (fb *FakeSMTPBackend) OpenConns() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return len(fb.open)
}

// Resume lets paused connections go on.
func (fb *FakeSMTPBackend) Resume() {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	select {
	case <-fb.gate:
	default:
		close(fb.gate)
	}
}

// ConnCount is the number of connections accepted.
func (fb *FakeSMTPBackend) ConnCount() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.conns
}

// Received returns every command line received.
func (fb *FakeSMTPBackend) Received() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.lines...)
}

// Messages returns the messages whose final dot arrived.
func (fb *FakeSMTPBackend) Messages() []FakeSMTPMessage {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]FakeSMTPMessage(nil), fb.msgs...)
}

// AbortedCount is the number of DATA bodies cut off before the dot.
func (fb *FakeSMTPBackend) AbortedCount() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.aborted
}

// SawCommand reports whether any received line starts with prefix.
func (fb *FakeSMTPBackend) SawCommand(prefix string) bool {
	for _, l := range fb.Received() {
		if strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(prefix)) {
			return true
		}
	}
	return false
}

func (fb *FakeSMTPBackend) serve(c net.Conn, isTLS bool) {
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
	var chunks []byte // BDAT chunks of the open transaction
	reset := func() { from, mailArgs, rcpts, chunks = "", "", nil, nil }
	for {
		if fb.opts.IdleTimeout > 0 && user != "" {
			c.SetReadDeadline(time.Now().Add(fb.opts.IdleTimeout))
		}
		line, err := br.ReadString('\n')
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w("421 4.4.2 fake.backend Error: timeout exceeded")
			return
		}
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
			if fb.opts.TLS != nil && !isTLS {
				reply = append(reply, "250 STARTTLS")
			}
			if isTLS || fb.opts.TLS == nil {
				reply = append(reply, "250 AUTH PLAIN LOGIN")
			}
			if fb.opts.XCLIENT {
				reply = append(reply, "250 XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT")
			}
			for _, e := range fb.opts.Ext {
				reply = append(reply, "250 "+e)
			}
			w(reply...)
		case "STARTTLS":
			if fb.opts.TLS == nil || isTLS {
				w("502 5.5.1 Error: command not implemented")
				continue
			}
			w("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, fb.opts.TLS)
			if tc.Handshake() != nil {
				return
			}
			c, br, isTLS = tc, bufio.NewReader(tc), true
			user, xclient = "", ""
			reset()
		case "XCLIENT":
			if !fb.opts.XCLIENT {
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
			case err == nil && authz == "" && authc == FakeUser && pass == FakeUserPassword:
				user = authc // password passthrough: the user's own login
				w("235 2.7.0 Authentication successful")
			case err != nil || authc != MasterUser || pass != MasterPassword:
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
			if r, ok := fb.opts.RcptReply[addr]; ok {
				w(r)
				continue
			}
			rcpts = append(rcpts, addr)
			w("250 2.1.5 Ok")
		case "DATA":
			if fb.opts.CloseOnData {
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
			m := FakeSMTPMessage{User: user, From: from, MailArgs: mailArgs, Rcpts: rcpts, Size: size, TLS: isTLS, XCLIENT: xclient,
				Remote: c.RemoteAddr().String()}
			copy(m.Sum[:], h.Sum(nil))
			fb.mu.Lock()
			fb.msgs = append(fb.msgs, m)
			n := len(fb.msgs)
			fb.mu.Unlock()
			reset()
			w(fmt.Sprintf("250 2.0.0 Ok: queued as FAKE%d", n))
		case "BDAT":
			if !fb.bdat(c, br, arg, w, func(h []byte, size int64) {
				m := FakeSMTPMessage{User: user, From: from, MailArgs: mailArgs, Rcpts: rcpts, Size: size, TLS: isTLS, XCLIENT: xclient,
					Remote: c.RemoteAddr().String()}
				copy(m.Sum[:], h)
				fb.mu.Lock()
				fb.msgs = append(fb.msgs, m)
				n := len(fb.msgs)
				fb.mu.Unlock()
				reset()
				w(fmt.Sprintf("250 2.0.0 Ok: queued as FAKE%d", n))
			}, from != "" && len(rcpts) > 0, &chunks) {
				return
			}
		case "RSET":
			chunks = nil
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

// AuthLines returns the decoded PLAIN messages of the AUTH commands received.
func (fb *FakeSMTPBackend) AuthLines() []string {
	var out []string
	for _, l := range fb.Received() {
		f := strings.Fields(l)
		if len(f) == 3 && strings.EqualFold(f[0], "AUTH") {
			raw, _ := base64.StdEncoding.DecodeString(f[2])
			out = append(out, string(raw))
		}
	}
	return out
}

// bdat reads one BDAT chunk (RFC 3030) as Postfix does: a chunk outside a
// transaction with recipients is read and refused; the LAST one ends the
// message (done gets its hash and size). It reports false if the
// connection ended inside the chunk (counted as aborted).
func (fb *FakeSMTPBackend) bdat(c net.Conn, br *bufio.Reader, arg string, w func(...string), done func([]byte, int64), inTx bool, chunks *[]byte) bool {
	f := strings.Fields(arg)
	if len(f) == 0 {
		f = []string{""}
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || size < 0 {
		w("501 5.5.4 Syntax: BDAT count [LAST]")
		return false
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(br, buf); err != nil {
		fb.mu.Lock()
		fb.aborted++
		fb.mu.Unlock()
		return false
	}
	if !inTx {
		w("503 5.5.1 Error: need RCPT command")
		return true
	}
	*chunks = append(*chunks, buf...)
	if len(f) < 2 || !strings.EqualFold(f[1], "LAST") {
		w(fmt.Sprintf("250 2.0.0 Ok: %d bytes", size))
		return true
	}
	h := sha256.Sum256(*chunks)
	done(h[:], int64(len(*chunks)))
	return true
}
