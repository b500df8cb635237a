package sieve

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// fakeBackend is a Dovecot-like ManageSieve server: a capability greeting,
// STARTTLS (if tls is set), XCLIENT, AUTHENTICATE "PLAIN" with a master
// user or the users' own passwords, then a few commands of the
// authenticated state.
type fakeBackend struct {
	addr string
	tls  *tls.Config // nil: no STARTTLS

	mu       sync.Mutex
	sasl     string // the SASL capability's value
	sieve    string // the SIEVE capability's value
	xclient  bool   // offer XCLIENT
	reply    string // if set, the reply to every AUTHENTICATE
	master   [2]string
	users    map[string]string
	xclients []string // XCLIENT lines received
	logins   []string // authzid/authcid of accepted logins
}

func newFakeBackend(t *testing.T, serverTLS *tls.Config) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{addr: ln.Addr().String(), tls: serverTLS, sasl: "PLAIN LOGIN", sieve: "fileinto vacation fake-ext",
		xclient: true, master: [2]string{"master", "master-secret"},
		users: map[string]string{"alice@example.test": "alice-password"}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go fb.serve(c)
		}
	}()
	return fb
}

func (fb *fakeBackend) set(f func(fb *fakeBackend)) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	f(fb)
}

func (fb *fakeBackend) snapshot() (xclients, logins []string) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.xclients...), append([]string(nil), fb.logins...)
}

func (fb *fakeBackend) caps(isTLS bool) string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	s := `"IMPLEMENTATION" "Fake Pigeonhole"` + "\r\n" + `"SIEVE" "` + fb.sieve + `"` + "\r\n" +
		`"NOTIFY" "mailto"` + "\r\n" + `"SASL" "` + fb.sasl + `"` + "\r\n"
	if fb.tls != nil && !isTLS {
		s += `"STARTTLS"` + "\r\n"
	}
	s += `"VERSION" "1.0"` + "\r\n"
	if fb.xclient {
		s += `"XCLIENT"` + "\r\n"
	}
	return s
}

func (fb *fakeBackend) serve(c net.Conn) {
	defer c.Close()
	fmt.Fprintf(c, "%sOK \"Fake ready.\"\r\n", fb.caps(false))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "STARTTLS":
			fmt.Fprintf(c, "OK \"Begin TLS negotiation now.\"\r\n")
			tc := tls.Server(c, fb.tls)
			if tc.Handshake() != nil {
				return
			}
			c, br = tc, bufio.NewReader(tc)
			fmt.Fprintf(c, "%sOK \"TLS negotiation successful.\"\r\n", fb.caps(true))
		case "XCLIENT":
			fb.set(func(fb *fakeBackend) { fb.xclients = append(fb.xclients, line) })
			fmt.Fprintf(c, "OK \"Updated\"\r\n")
		case "AUTHENTICATE":
			reply := fb.authenticate(rest)
			fmt.Fprintf(c, "%s\r\n", reply)
			if strings.HasPrefix(reply, "OK") {
				fb.session(c, br)
				return
			}
		case "LOGOUT":
			fmt.Fprintf(c, "OK \"Logout completed.\"\r\n")
			return
		default:
			fmt.Fprintf(c, "NO \"Error in MANAGESIEVE command received by server.\"\r\n")
		}
	}
}

// authenticate checks `"PLAIN" "<base64>"`.
func (fb *fakeBackend) authenticate(args string) string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if fb.reply != "" {
		return fb.reply
	}
	b64, ok := strings.CutPrefix(args, `"PLAIN" "`)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(b64, `"`))
	parts := bytes.Split(raw, []byte{0})
	if !ok || err != nil || len(parts) != 3 {
		return `NO "Invalid base64 data in initial response"`
	}
	authz, authc, pass := string(parts[0]), string(parts[1]), string(parts[2])
	switch {
	case authc == fb.master[0] && pass == fb.master[1] && authz == "nobody@example.test":
		return `NO "Authorization failed"`
	case authc == fb.master[0] && pass == fb.master[1], authz == "" && fb.users[authc] == pass && pass != "":
		fb.logins = append(fb.logins, authz+"/"+authc)
		return `OK "Logged in."`
	}
	return `NO "Authentication failed."`
}

// session answers a few commands of the authenticated state.
func (fb *fakeBackend) session(c net.Conn, br *bufio.Reader) {
	const script = "require \"fileinto\";\r\nfileinto \"Filed\";\r\n"
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch verb, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.ToUpper(verb) {
		case "LISTSCRIPTS":
			fmt.Fprintf(c, "\"mailgate\" ACTIVE\r\nOK \"Listscripts completed.\"\r\n")
		case "GETSCRIPT":
			fmt.Fprintf(c, "{%d}\r\n%s\r\nOK \"Getscript completed.\"\r\n", len(script), script)
		case "NOOP":
			fmt.Fprintf(c, "OK \"NOOP completed.\"\r\n")
		case "LOGOUT":
			fmt.Fprintf(c, "OK \"Logout completed.\"\r\n")
			return
		default:
			fmt.Fprintf(c, "NO \"Unknown command.\"\r\n")
		}
	}
}
