package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// Benchmarks of what a login and a relayed byte cost (issue 14). The client,
// mailgate and the backend share the process, so ns/op and cpu-ns/op
// (process CPU time, both cores) include the client's side; compare runs,
// and read a CPU profile (-cpuprofile) for mailgate's share. Run:
//
//	go test ./proxy/imap/ -run '^$' -bench . -benchmem

// benchBackend speaks just enough IMAP for the benchmarks: any
// AUTHENTICATE succeeds, "FETCH <n>" returns an n-byte literal, IDLE idles
// until DONE, LOGOUT ends.
func benchBackend(c net.Conn) {
	br := bufio.NewReader(c)
	bw := bufio.NewWriterSize(c, 64<<10)
	bw.WriteString("* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN] ready.\r\n")
	for bw.Flush() == nil {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		f := bytes.Fields(line)
		if len(f) < 2 {
			return
		}
		tag := string(f[0])
		switch string(bytes.ToUpper(f[1])) {
		case "AUTHENTICATE":
			bw.WriteString(tag + " OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
		case "FETCH":
			n, _ := strconv.Atoi(string(f[2]))
			writeLiteral(bw, n)
			bw.WriteString(")\r\n" + tag + " OK Fetch completed.\r\n")
		case "IDLE":
			bw.WriteString("+ idling\r\n")
			bw.Flush()
			if _, err := br.ReadSlice('\n'); err != nil {
				return
			}
			bw.WriteString(tag + " OK Idle completed.\r\n")
		case "LOGOUT":
			bw.WriteString("* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n")
			bw.Flush()
			return
		default:
			bw.WriteString(tag + " OK done\r\n")
		}
	}
}

// fetchChunk is what the backend sends a FETCH literal from.
var fetchChunk = bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ ++ 0123456789\r\n"), 840)

func writeLiteral(bw *bufio.Writer, n int) {
	bw.WriteString("* 1 FETCH (BODY[] {" + strconv.Itoa(n) + "}\r\n")
	for n > 0 {
		k := min(n, len(fetchChunk))
		bw.Write(fetchChunk[:k])
		n -= k
	}
}

// benchProxy is mailgate's IMAP front on an implicit-TLS and a STARTTLS
// port in front of benchBackend, with a certs.Store's self-signed
// certificate and the TLS configuration cmd/mailgate builds, an info-level
// logger that discards (as costly as production's), and no per-network
// limits (every client comes from 127.0.0.1).
func benchProxy(tb testing.TB) (tlsAddr, plainAddr string, client *tls.Config) {
	return benchProxyTo(tb, proxytest.StartStubBackend(tb, benchBackend).Addr)
}

// benchProxyTo is benchProxy in front of the backend at backendAddr.
func benchProxyTo(tb testing.TB, backendAddr string) (tlsAddr, plainAddr string, client *tls.Config) {
	tb.Helper()
	certFile, keyFile, err := certs.WritePEM(tb.TempDir(), "127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	store, err := certs.New([]certs.Pair{{CertFile: certFile, KeyFile: keyFile}}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := proxy.New(proxy.Options{
		Authenticator: fakeAuthenticator,
		TLSConfig:     store.TLSConfig(tls.VersionTLS12, "imap", "smtp", "pop3", "managesieve"),
		Master:        proxy.Master{User: proxytest.MasterUser, Password: proxytest.MasterPassword},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: proxy.Limits{ExemptNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			MaxPrelogin: -1, MaxConnections: -1},
	})
	if err != nil {
		tb.Fatal(err)
	}
	front := New(srv, Options{Backend: proxy.Backend{Address: backendAddr, TLS: proxy.TLSNone}})
	plainAddr, tlsAddr = proxytest.ServeFront(tb, func(ctx context.Context, ln net.Listener, implicit bool) {
		srv.Serve(ctx, ln, implicit, front)
	}, func() { srv.Close() })
	// The client's certificate checks are not mailgate's CPU.
	return tlsAddr, plainAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}}
}

// benchConn is a benchmark's IMAP client connection.
type benchConn struct {
	tb testing.TB
	c  *tls.Conn
	br *bufio.Reader
}

func dialBench(tb testing.TB, addr string, cfg *tls.Config) *benchConn {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	bc := &benchConn{tb: tb, c: c, br: bufio.NewReaderSize(c, 64<<10)}
	bc.expect("* OK")
	return bc
}

func (bc *benchConn) send(s string) {
	if _, err := io.WriteString(bc.c, s+"\r\n"); err != nil {
		bc.tb.Fatal(err)
	}
}

// expect reads lines up to the one that starts with prefix.
func (bc *benchConn) expect(prefix string) []byte {
	for {
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			bc.tb.Fatalf("waiting for %q: %v", prefix, err)
		}
		if bytes.HasPrefix(line, []byte(prefix)) {
			return line
		}
	}
}

func (bc *benchConn) login() {
	bc.send("a1 AUTHENTICATE XOAUTH2 " + benchIR)
	bc.expect("a1 OK")
}

func (bc *benchConn) logout() {
	bc.send("a9 LOGOUT")
	bc.expect("a9 OK")
	bc.c.Close()
}

var benchIR = proxytest.XOAUTH2("alice@example.test", proxytest.TestToken)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time per op since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkLogin: one complete login per op (TCP, TLS handshake, greeting,
// AUTHENTICATE XOAUTH2 with a cached-token check, the backend's master
// login, LOGOUT): with a full handshake, with a resumed TLS session, and
// with a full handshake whose client offers X25519 only, which shows what
// the default hybrid post-quantum key exchange (X25519MLKEM768) costs.
func BenchmarkLogin(b *testing.B) {
	for _, tc := range []struct {
		name   string
		resume bool
		curves []tls.CurveID
	}{
		{"full", false, nil},
		{"resumed", true, nil},
		{"full-x25519", false, []tls.CurveID{tls.X25519}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr, _, cfg := benchProxy(b)
			cfg.CurvePreferences = tc.curves
			if tc.resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				dialBench(b, addr, cfg).logout() // takes the first ticket
			}
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				bc := dialBench(b, addr, cfg)
				bc.login()
				if tc.resume != bc.c.ConnectionState().DidResume {
					b.Fatalf("DidResume = %v", !tc.resume)
				}
				bc.logout()
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkRelayFetch: 100 MiB relayed from the backend to a TLS client
// per op (one FETCH literal on a logged-in session).
func BenchmarkRelayFetch(b *testing.B) {
	const size = 100 << 20
	addr, _, cfg := benchProxy(b)
	bc := dialBench(b, addr, cfg)
	bc.login()
	defer bc.logout()
	b.SetBytes(size)
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		bc.send("f1 FETCH " + strconv.Itoa(size))
		bc.expect("* 1 FETCH")
		if _, err := io.CopyN(io.Discard, bc.br, size); err != nil {
			b.Fatal(err)
		}
		bc.expect("f1 OK")
	}
	reportCPU(b, start)
}
