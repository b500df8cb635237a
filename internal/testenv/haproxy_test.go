package testenv_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mailgate/mailgate/internal/testenv"
)

// echoServer is a TCP server behind HAProxy: it reads the PROXY v2 header
// HAProxy sends and answers "<name> <client address> <peer address>\n",
// where the peer is HAProxy's end of the connection. Its health endpoint
// answers what healthy says.
type echoServer struct {
	name    string
	addr    string // the TCP server
	check   string // the HTTP health endpoint
	healthy atomic.Bool
}

func startEchoServer(t *testing.T, name string) *echoServer {
	t.Helper()
	s := &echoServer{name: name}
	s.healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				br := bufio.NewReader(c)
				hdr, err := proxyproto.Read(br)
				if err != nil {
					fmt.Fprintf(c, "%s no-proxy-header %v\n", name, err)
					return
				}
				fmt.Fprintf(c, "%s v%d %s %s\n", name, hdr.Version, hdr.SourceAddr, c.RemoteAddr())
			}()
		}
	}()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.check = hl.Addr().String()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !s.healthy.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	return s
}

// askFrom connects to addr from the loopback address src and returns the
// echo server's answer, split in fields.
func askFrom(t *testing.T, src, addr string) []string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.Fields(line)
}

// TestHAProxyProxyV2RoundRobinAndHealth: HAProxy balances connections
// round-robin, hands each server a PROXY v2 header with the client's own
// (loopback) address while connecting from Source, takes a server out when
// its HTTP health check answers 503 and puts it back when it answers 200.
func TestHAProxyProxyV2RoundRobinAndHealth(t *testing.T) {
	a, b := startEchoServer(t, "a"), startEchoServer(t, "b")
	h := testenv.StartHAProxy(t, testenv.HAProxyOptions{
		Source: "127.0.0.210",
		Frontends: []testenv.HAProxyFrontend{{
			Name: "echo", SendProxyV2: true, HealthPath: "/readyz",
			Servers: []testenv.HAProxyServer{{Name: "a", Addr: a.addr, CheckAddr: a.check}, {Name: "b", Addr: b.addr, CheckAddr: b.check}},
		}},
	})
	h.WaitAllUp(t, 10*time.Second)

	seen := map[string]int{}
	for i := range 6 {
		src := fmt.Sprintf("127.0.0.%d", 71+i)
		f := askFrom(t, src, h.Addr("echo"))
		if len(f) != 4 || f[1] != "v2" {
			t.Fatalf("server answered %q, want a PROXY v2 header", f)
		}
		if host, _, _ := net.SplitHostPort(f[2]); host != src {
			t.Fatalf("PROXY header source %s, want the client's %s", f[2], src)
		}
		if host, _, _ := net.SplitHostPort(f[3]); host != "127.0.0.210" {
			t.Fatalf("HAProxy connected from %s, want Source 127.0.0.210", f[3])
		}
		seen[f[0]]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Fatalf("connections per server %v, want 3 and 3 (round robin)", seen)
	}

	// The log has one tcplog line per connection, naming the server; it is
	// written when the connection has ended.
	h.Log.WaitSince(t, 0, "127.0.0.71:", 10*time.Second)
	lines := h.ConnectionLines(0, "127.0.0.71")
	if len(lines) != 1 || !strings.Contains(lines[0], "echo echo/") {
		t.Fatalf("tcplog lines for 127.0.0.71: %q", lines)
	}

	a.healthy.Store(false)
	h.WaitServer(t, "echo", "a", "DOWN", 10*time.Second)
	for range 4 {
		if f := askFrom(t, "127.0.0.80", h.Addr("echo")); f[0] != "b" {
			t.Fatalf("server %s answered while a is down", f[0])
		}
	}
	a.healthy.Store(true)
	h.WaitServer(t, "echo", "a", "UP", 10*time.Second)
	seen = map[string]int{}
	for range 4 {
		seen[askFrom(t, "127.0.0.81", h.Addr("echo"))[0]]++
	}
	if seen["a"] == 0 {
		t.Fatalf("a is UP again but got no connection: %v", seen)
	}
}

// TestHAProxyRedispatchesRefusedConnection: a server that refuses
// connections (its process died) before the health check noticed costs
// the client nothing: HAProxy retries on another server.
func TestHAProxyRedispatchesRefusedConnection(t *testing.T) {
	a := startEchoServer(t, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there any more: connection refused
	h := testenv.StartHAProxy(t, testenv.HAProxyOptions{
		CheckInterval: time.Hour, // the check never runs during the test
		Frontends: []testenv.HAProxyFrontend{{
			Name: "echo", SendProxyV2: true,
			Servers: []testenv.HAProxyServer{{Name: "dead", Addr: dead}, {Name: "a", Addr: a.addr}},
		}},
	})
	for range 4 {
		if f := askFrom(t, "127.0.0.82", h.Addr("echo")); f[0] != "a" {
			t.Fatalf("answer %q", f)
		}
	}
}

// TestCheckHAProxyConfig: a configuration HAProxy rejects is reported with
// its output.
func TestCheckHAProxyConfig(t *testing.T) {
	if _, err := testenv.HAProxyBinary(); err != nil {
		if testenv.Integration() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.cfg")
	os.WriteFile(bad, []byte("frontend x\n    bind 127.0.0.1:1\n    no-such-keyword 1\n"), 0o644)
	_, err := testenv.CheckHAProxyConfig(bad)
	if err == nil || !strings.Contains(err.Error(), "no-such-keyword") {
		t.Fatalf("CheckHAProxyConfig(bad) = %v, want haproxy's complaint about no-such-keyword", err)
	}
	warn := filepath.Join(t.TempDir(), "warn.cfg")
	os.WriteFile(warn, []byte("defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"+
		"frontend f\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s no-such-host.invalid:1 init-addr libc,none\n"), 0o644)
	w, err := testenv.CheckHAProxyConfig(warn)
	if err != nil || len(w) == 0 {
		t.Fatalf("CheckHAProxyConfig(warn) = %q, %v; want warnings", w, err)
	}
	if !strings.Contains(w[0], "could not resolve address 'no-such-host.invalid'") {
		t.Fatalf("warning %q, want the unresolved server", w[0])
	}
}
