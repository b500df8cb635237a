package imap

import (
	"bufio"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/proxy"
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

// TestBackendProbeProblems: LOGINDISABLED (a standing problem, until a
// probe finds the backend fixed), no AUTH=PLAIN, and the untrusted PROXY
// sender. (The re-probe of a standing problem is proxy's
// TestBackendProblemRecovers.)
func TestBackendProbeProblems(t *testing.T) {
	var caps atomic.Value
	caps.Store("IMAP4rev1 SASL-IR LOGINDISABLED")
	addr := scriptedIMAP(t, &caps, false)
	s := newProbeServer(t, proxy.Master{User: "m", Password: "p"}, proxy.Backend{Address: addr, ClientIP: "id"})
	checkProblem(t, s, "imap", "", hintPrivacy)
	caps.Store("IMAP4rev1 SASL-IR AUTH=PLAIN")
	if p := s.BackendProblem("imap"); p == "" {
		t.Fatal("the problem is gone before any probe")
	}
	checkProblem(t, s, "imap", "", "")

	caps.Store("IMAP4rev1 SASL-IR AUTH=XOAUTH2")
	s = newProbeServer(t, proxy.Master{}, proxy.Backend{Address: scriptedIMAP(t, &caps, false)})
	checkProblem(t, s, "imap", "", hintPlain)

	s = newProbeServer(t, proxy.Master{}, proxy.Backend{Address: scriptedIMAP(t, &caps, true), ClientIP: "proxy"})
	checkProblem(t, s, "imap", "", proxy.HintHAProxyTrust)
}
