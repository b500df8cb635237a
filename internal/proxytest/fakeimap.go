package proxytest

import (
	"bufio"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mailgate/mailgate/auth"
)

// FakeIMAPBackend speaks just enough of Dovecot's pre-login IMAP for unit
// tests: greeting with SASL-IR, ID, master-user AUTHENTICATE PLAIN
// (MasterUser / MasterPassword; nobody@example.test refused with
// AUTHORIZATIONFAILED), or FakeUser's own PLAIN login with
// FakeUserPassword, then it echoes every command as "* ECHO <line>" +
// "<tag> OK". Real Dovecot is exercised by the integration tests.
type FakeIMAPBackend struct {
	Addr  string
	mu    sync.Mutex
	lines []string // every line received, AUTHENTICATE included
	conns int
}

// FakePostLoginCaps is the CAPABILITY code of the fake backend's login OK.
const FakePostLoginCaps = "IMAP4rev1 SASL-IR ID IDLE FAKE-POSTLOGIN"

// StartFakeIMAPBackend listens on 127.0.0.1 until the test ends.
func StartFakeIMAPBackend(t *testing.T) *FakeIMAPBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	fb := &FakeIMAPBackend{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fb.mu.Lock()
			fb.conns++
			fb.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); fb.serve(c) }()
		}
	}()
	return fb
}

// Received returns every line received so far.
func (fb *FakeIMAPBackend) Received() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.lines...)
}

// ConnCount is the number of connections accepted.
func (fb *FakeIMAPBackend) ConnCount() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.conns
}

// BackendLogins returns the PLAIN messages of the AUTHENTICATE commands
// received, decoded.
func (fb *FakeIMAPBackend) BackendLogins() []string {
	var out []string
	for _, l := range fb.Received() {
		f := strings.Fields(l)
		if len(f) == 4 && strings.EqualFold(f[1], "AUTHENTICATE") {
			raw, _ := base64.StdEncoding.DecodeString(f[3])
			out = append(out, string(raw))
		}
	}
	return out
}

func (fb *FakeIMAPBackend) serve(c net.Conn) {
	br := bufio.NewReader(c)
	w := func(s string) { c.Write([]byte(s + "\r\n")) }
	w("* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN] fake ready.")
	loggedIn := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		fb.mu.Lock()
		fb.lines = append(fb.lines, line)
		fb.mu.Unlock()
		tag, rest, _ := strings.Cut(line, " ")
		verb, args, _ := strings.Cut(rest, " ")
		switch strings.ToUpper(verb) {
		case "ID":
			w(`* ID ("name" "fake")`)
			w(tag + " OK ID completed.")
		case "AUTHENTICATE":
			mech, ir, _ := strings.Cut(args, " ")
			raw, err := base64.StdEncoding.DecodeString(ir)
			if strings.ToUpper(mech) != "PLAIN" || err != nil {
				w(tag + " BAD bad authenticate")
				continue
			}
			authz, authc, pass, err := auth.DecodePLAIN(raw)
			switch {
			case err == nil && authz == "" && authc == FakeUser && pass == FakeUserPassword:
				loggedIn = true // password passthrough: the user's own login
				w(tag + " OK [CAPABILITY " + FakePostLoginCaps + "] Logged in")
			case err != nil || authc != MasterUser || pass != MasterPassword:
				w(tag + " NO [AUTHENTICATIONFAILED] Authentication failed.")
			case authz == "nobody@example.test":
				w(tag + " NO [AUTHORIZATIONFAILED] Authorization failed")
			default:
				loggedIn = true
				w(tag + " OK [CAPABILITY " + FakePostLoginCaps + "] Logged in")
			}
		case "LOGOUT":
			w("* BYE Logging out")
			w(tag + " OK Logout completed.")
			return
		default:
			if !loggedIn {
				w(tag + " BAD not logged in")
				continue
			}
			w("* ECHO " + rest)
			w(tag + " OK done")
		}
	}
}
