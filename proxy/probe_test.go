package proxy

import (
	"bufio"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// scriptedIMAP is a backend whose greeting and CAPABILITY come from caps,
// read at each connection; with dropAfterProxy it closes the connection
// after a PROXY header, as Dovecot does for an untrusted sender.
func scriptedIMAP(t *testing.T, caps *atomic.Value, dropAfterProxy bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if dropAfterProxy {
					c.Read(make([]byte, 512))
					return
				}
				cp := caps.Load().(string)
				c.Write([]byte("* OK [CAPABILITY " + cp + "] ready\r\n"))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
					switch cmd {
					case "CAPABILITY":
						c.Write([]byte("* CAPABILITY " + cp + "\r\n" + tag + " OK done\r\n"))
					case "LOGOUT":
						c.Write([]byte("* BYE\r\n" + tag + " OK bye\r\n"))
						return
					default:
						c.Write([]byte(tag + " BAD what\r\n"))
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestBackendProblemRecovers: a probe that finds LOGINDISABLED makes a
// standing problem (readiness says so, with the fix); once the backend is
// fixed, asking for the problem probes again and it is gone, without any
// login having succeeded in between.
func TestBackendProblemRecovers(t *testing.T) {
	var caps atomic.Value
	caps.Store("IMAP4rev1 SASL-IR LOGINDISABLED")
	addr := scriptedIMAP(t, &caps, false)
	s := newProbeServer(t, Master{User: "m", Password: "p"}, Backend{Address: addr, ClientIP: "id"}, Backend{})
	checkProblem(t, s, "imap", "", imapHintPrivacy)

	caps.Store("IMAP4rev1 SASL-IR AUTH=PLAIN")
	if p := s.BackendProblem("imap"); p == "" {
		t.Fatal("the problem is gone before any probe")
	}
	s.problems.mu.Lock()
	s.problems.probed["imap"] = time.Now().Add(-reprobeEvery) // as if reprobeEvery had passed
	s.problems.mu.Unlock()
	proxytest.WaitFor(t, "the re-probe to clear the problem", func() bool { return s.BackendProblem("imap") == "" })
}

// TestBackendProbeNoAuthPlain and the untrusted PROXY sender.
func TestBackendProbeProblems(t *testing.T) {
	var caps atomic.Value
	caps.Store("IMAP4rev1 SASL-IR AUTH=XOAUTH2")
	s := newProbeServer(t, Master{}, Backend{Address: scriptedIMAP(t, &caps, false)}, Backend{})
	checkProblem(t, s, "imap", "", imapHintPlain)

	s = newProbeServer(t, Master{}, Backend{Address: scriptedIMAP(t, &caps, true), ClientIP: "proxy"}, Backend{})
	checkProblem(t, s, "imap", "", hintHAProxyTrust)
}
