package pop3

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// fakeBackend is a small Dovecot-like POP3 server: greeting, CAPA, STLS,
// XCLIENT, AUTH PLAIN with an initial response, then a transaction state
// that answers STAT and QUIT and echoes anything else.
type fakeBackend struct {
	// Greeting; "" means "+OK [XCLIENT] Dovecot ready.".
	Greeting string
	// Caps are CAPA's lines; nil means "SASL PLAIN LOGIN".
	Caps []string
	// Login answers AUTH PLAIN; nil: masterLogin.
	Login func(authz, authc, pass string) string
	// Mode is the TLS the front must use: "" (none), starttls or implicit.
	Mode proxy.TLSMode

	addr      string
	serverTLS *tls.Config
	clientTLS *tls.Config
	mu        sync.Mutex
	events    []string // "STLS", XCLIENT lines, "AUTH authz authc"
}

// masterLogin is Dovecot with the master user "mailgate": alice and bob
// exist, others are "Authorization failed".
func masterLogin(authz, authc, pass string) string {
	switch {
	case authc != "mailgate" || pass != masterPW:
		return "-ERR [AUTH] Authentication failed."
	case authz != "alice@example.test" && authz != "bob@example.test":
		return "-ERR [AUTH] Authorization failed"
	}
	return "+OK Logged in."
}

// start listens on 127.0.0.1:0 and returns the Backend to configure.
func (fb *fakeBackend) start(t *testing.T, clientIP string) proxy.Backend {
	t.Helper()
	fb.serverTLS, fb.clientTLS, _ = testTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	fb.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go fb.serve(c)
		}
	}()
	return proxy.Backend{Address: fb.addr, TLS: fb.Mode, TLSConfig: fb.clientTLS, ClientIP: clientIP}
}

func (fb *fakeBackend) record(e string) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.events = append(fb.events, e)
}

// seen returns the events so far.
func (fb *fakeBackend) seen() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.events...)
}

func (fb *fakeBackend) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if fb.Mode == proxy.TLSImplicit {
		c = tls.Server(c, fb.serverTLS)
	}
	br := bufio.NewReader(c)
	say := func(s string) { c.Write([]byte(s + "\r\n")) }
	g := fb.Greeting
	if g == "" {
		g = "+OK [XCLIENT] Dovecot ready."
	}
	say(g)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "STLS":
			fb.record("STLS")
			say("+OK Begin TLS negotiation now.")
			c = tls.Server(c, fb.serverTLS)
			br = bufio.NewReader(c)
		case "XCLIENT":
			fb.record(line)
			say("+OK Updated")
		case "CAPA":
			say("+OK")
			caps := fb.Caps
			if caps == nil {
				caps = []string{"SASL PLAIN LOGIN"}
			}
			for _, l := range caps {
				say(l)
			}
			say(".")
		case "AUTH":
			if reply := fb.auth(arg); reply != "" {
				say(reply)
				if strings.HasPrefix(reply, "+OK") {
					fb.transaction(c, br, say)
					return
				}
			}
		case "QUIT":
			say("+OK Logging out")
			return
		default:
			say("-ERR Unknown command.")
		}
	}
}

// auth decodes "PLAIN <ir>" and answers it.
func (fb *fakeBackend) auth(arg string) string {
	mech, ir, _ := strings.Cut(arg, " ")
	msg, err := base64.StdEncoding.DecodeString(ir)
	if !strings.EqualFold(mech, "PLAIN") || err != nil {
		return "-ERR Invalid AUTH."
	}
	authz, authc, pass, err := auth.DecodePLAIN(msg)
	if err != nil {
		return "-ERR [AUTH] Invalid PLAIN."
	}
	fb.record("AUTH " + authz + " " + authc)
	login := fb.Login
	if login == nil {
		login = masterLogin
	}
	return login(authz, authc, pass)
}

// transaction answers STAT and QUIT and echoes anything else.
func (fb *fakeBackend) transaction(c net.Conn, br *bufio.Reader, say func(string)) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch strings.ToUpper(line) {
		case "STAT":
			say("+OK 1 42")
		case "QUIT":
			say("+OK Logging out.")
			return
		default:
			say("+OK echo " + line)
		}
	}
}
