package certs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Deadlines for the tests' network I/O and for conditions polled.
const (
	ioTimeout   = 5 * time.Second
	pollTimeout = 5 * time.Second
)

// logBuffer collects log output; Watch logs from its own goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func mustWritePEM(t *testing.T, dir string, hosts ...string) Pair {
	t.Helper()
	c, k, err := WritePEM(dir, hosts...)
	if err != nil {
		t.Fatalf("WritePEM(%q) = %v", hosts, err)
	}
	return Pair{CertFile: c, KeyFile: k}
}

func mustNew(t *testing.T, pairs ...Pair) *Store {
	t.Helper()
	l, _ := testLogger(t)
	s, err := New(pairs, l)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return s
}

// serve runs a TLS echo server with s's config on 127.0.0.1:0 and returns
// its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	tl := tls.NewListener(ln, cfg)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial completes a handshake without verification and returns the conn.
func dial(t *testing.T, addr, serverName string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: ioTimeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("tls.Dial(%q) = %v", serverName, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

func peerSerial(c *tls.Conn) *big.Int {
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func serialOf(t *testing.T, p Pair) *big.Int {
	t.Helper()
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber
}

func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("echo = %q, %v; want %q", line, err, msg)
	}
}

// writeCN writes a self-signed pair whose only name is its subject CN.
func writeCN(t *testing.T, dir, cn string) Pair {
	t.Helper()
	tmpl := template([]string{cn}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	tmpl.DNSNames = nil
	c, err := sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := writePair(dir, cn, c)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{cf, kf}
}

func TestSNI(t *testing.T) {
	dir := t.TempDir()
	def := mustWritePEM(t, dir, "default.test")
	mail := mustWritePEM(t, dir, "mail.example.test", "imap.example.test")
	wild := mustWritePEM(t, dir, "*.wild.test")
	cn := writeCN(t, dir, "cn.test")
	dup := mustWritePEM(t, dir, "dup.test", "mail.example.test") // later pair: loses mail.example.test
	s := mustNew(t, def, mail, wild, cn, dup)
	addr := serve(t, s.TLSConfig(tls.VersionTLS12))

	for _, tt := range []struct {
		sni  string
		want Pair
	}{
		{"", def},
		{"default.test", def},
		{"mail.example.test", mail},
		{"imap.example.test", mail},
		{"MAIL.Example.TEST.", mail},
		{"a.wild.test", wild},
		{"wild.test", def},
		{"a.b.wild.test", def},
		{"cn.test", cn},
		{"dup.test", dup},
		{"unknown.test", def},
	} {
		t.Run("sni="+tt.sni, func(t *testing.T) {
			want := serialOf(t, tt.want)
			if got := peerSerial(dial(t, addr, tt.sni)); got.Cmp(want) != 0 {
				t.Errorf("handshake with SNI %q got serial %x, want %x (%s)", tt.sni, got, want, tt.want.CertFile)
			}
			if got := s.Certificate(tt.sni).Leaf.SerialNumber; got.Cmp(want) != 0 {
				t.Errorf("Certificate(%q) serial %x, want %x", tt.sni, got, want)
			}
		})
	}
}

// TestVerifiedHandshake checks the self-signed certificate passes real
// verification, ALPN is negotiated, and versions below the minimum fail.
func TestVerifiedHandshake(t *testing.T) {
	p := mustWritePEM(t, t.TempDir(), "localhost", "127.0.0.1")
	s := mustNew(t, p)
	leaf := s.Certificate("").Leaf
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	addr12 := serve(t, s.TLSConfig(tls.VersionTLS10, "imap")) // raised to 1.2
	addr13 := serve(t, s.TLSConfig(tls.VersionTLS13))
	for _, tt := range []struct {
		name    string
		addr    string
		cfg     *tls.Config
		wantErr bool
		proto   string
	}{
		{"verified by name", addr12, &tls.Config{RootCAs: roots, ServerName: "localhost"}, false, ""},
		{"verified by IP", addr12, &tls.Config{RootCAs: roots}, false, ""},
		{"alpn", addr12, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"imap"}}, false, "imap"},
		{"alpn mismatch", addr12, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}}, true, ""},
		{"wrong name", addr12, &tls.Config{RootCAs: roots, ServerName: "other.test"}, true, ""},
		{"tls 1.1 refused", addr12, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS11}, true, ""},
		{"tls 1.2 refused by 1.3 minimum", addr13, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12}, true, ""},
		{"tls 1.3", addr13, &tls.Config{RootCAs: roots, ServerName: "localhost"}, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &net.Dialer{Timeout: ioTimeout}
			c, err := tls.DialWithDialer(d, "tcp", tt.addr, tt.cfg)
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded, want failure")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake = %v", err)
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tt.proto {
				t.Errorf("ALPN = %q, want %q", got, tt.proto)
			}
		})
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	p := mustWritePEM(t, dir, "localhost")
	s := mustNew(t, p)
	addr := serve(t, s.TLSConfig(tls.VersionTLS12))

	old := dial(t, addr, "localhost")
	oldSerial := peerSerial(old)
	echo(t, old, "before")

	if p2 := mustWritePEM(t, dir, "localhost"); p2 != p {
		t.Fatalf("WritePEM wrote %v, want the same files %v", p2, p)
	}
	newSerial := serialOf(t, p)
	if got := peerSerial(dial(t, addr, "localhost")); got.Cmp(oldSerial) != 0 {
		t.Fatalf("certificate changed before Reload: %x", got)
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if got := peerSerial(dial(t, addr, "localhost")); got.Cmp(newSerial) != 0 {
		t.Errorf("after Reload, serial %x, want the new %x", got, newSerial)
	}
	echo(t, old, "after") // the established session is untouched
	if got := peerSerial(old); got.Cmp(oldSerial) != 0 {
		t.Errorf("open conn's peer certificate changed to %x", got)
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	for _, tt := range []struct {
		name    string
		breakIt func(t *testing.T, p Pair)
		want    string
	}{
		{"corrupt cert", func(t *testing.T, p Pair) { writeFile(t, p.CertFile, "-----BEGIN CERTIFICATE-----\nnot base64\n") }, "certificate input"},
		{"corrupt key", func(t *testing.T, p Pair) { writeFile(t, p.KeyFile, "garbage") }, "key input"},
		{"key of another cert", func(t *testing.T, p Pair) {
			other := mustWritePEM(t, t.TempDir(), "localhost")
			key, err := os.ReadFile(other.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, p.KeyFile, string(key))
		}, "does not match"},
		{"cert removed", func(t *testing.T, p Pair) {
			if err := os.Remove(p.CertFile); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustWritePEM(t, t.TempDir(), "localhost")
			l, logs := testLogger(t)
			s, err := New([]Pair{p}, l)
			if err != nil {
				t.Fatal(err)
			}
			addr := serve(t, s.TLSConfig(tls.VersionTLS12))
			oldSerial := peerSerial(dial(t, addr, "localhost"))

			tt.breakIt(t, p)
			err = s.Reload()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reload() = %v, want an error about %q", err, tt.want)
			}
			if !strings.Contains(logs.String(), "reload failed") {
				t.Errorf("failure not logged:\n%s", logs)
			}
			if got := peerSerial(dial(t, addr, "localhost")); got.Cmp(oldSerial) != 0 {
				t.Errorf("after a failed Reload, serial %x, want the old %x", got, oldSerial)
			}

			fixed := mustWritePEM(t, filepath.Dir(p.CertFile), "localhost")
			if err := s.Reload(); err != nil {
				t.Fatalf("Reload() after repair = %v", err)
			}
			if got, want := peerSerial(dial(t, addr, "localhost")), serialOf(t, fixed); got.Cmp(want) != 0 {
				t.Errorf("after repair, serial %x, want %x", got, want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or pollTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startWatch(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 20*time.Millisecond)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(pollTimeout):
			t.Error("Watch did not return after cancel")
		}
	})
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	p := mustWritePEM(t, dir, "localhost")
	l, logs := testLogger(t)
	s, err := New([]Pair{p}, l)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s.TLSConfig(tls.VersionTLS12))
	startWatch(t, s)

	// A corrupt file is reported and the old certificate stays.
	oldSerial := peerSerial(dial(t, addr, "localhost"))
	writeFile(t, p.CertFile, "garbage")
	waitFor(t, "the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if got := peerSerial(dial(t, addr, "localhost")); got.Cmp(oldSerial) != 0 {
		t.Errorf("serial %x after a corrupt file, want the old %x", got, oldSerial)
	}

	mustWritePEM(t, dir, "localhost")
	want := serialOf(t, p)
	waitFor(t, "the new certificate", func() bool {
		c := dial(t, addr, "localhost")
		defer c.Close()
		return peerSerial(c).Cmp(want) == 0
	})
}

// TestWatchSymlinkSwap mimics a Kubernetes secret volume: the files are
// links through "..data", which is atomically re-pointed to a new directory.
func TestWatchSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name string) {
		t.Helper()
		vdir := filepath.Join(dir, name)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := mustWritePEM(t, vdir, "localhost")
		for src, dst := range map[string]string{p.CertFile: "tls.crt", p.KeyFile: "tls.key"} {
			if err := os.Rename(src, filepath.Join(vdir, dst)); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1")
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	p := Pair{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	s := mustNew(t, p)
	startWatch(t, s)
	first := s.Certificate("").Leaf.SerialNumber

	version("..v2")
	want := serialOf(t, p)
	if want.Cmp(first) == 0 {
		t.Fatal("test setup: same serial")
	}
	waitFor(t, "the swapped certificate", func() bool { return s.Certificate("").Leaf.SerialNumber.Cmp(want) == 0 })
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	good := mustWritePEM(t, dir, "a.test")
	other := mustWritePEM(t, dir, "b.test")
	for _, tt := range []struct {
		name  string
		pairs []Pair
		want  string
	}{
		{"none", nil, "no certificate"},
		{"missing file", []Pair{good, {CertFile: filepath.Join(dir, "nope.pem"), KeyFile: good.KeyFile}}, "nope.pem"},
		{"key mismatch", []Pair{{CertFile: good.CertFile, KeyFile: other.KeyFile}}, "does not match"},
		{"empty name", []Pair{{CertFile: good.CertFile}}, "key file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.pairs, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() = %v, %v; want an error about %q", s, err, tt.want)
			}
		})
	}
	if _, err := New(nil, nil); !errors.Is(err, ErrNoCertificates) {
		t.Errorf("New(nil) = %v, want ErrNoCertificates", err)
	}
}

func TestExpiredAccepted(t *testing.T) {
	tmpl := template([]string{"old.test"}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	c, err := sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := writePair(t.TempDir(), "old.test", c)
	if err != nil {
		t.Fatal(err)
	}
	l, logs := testLogger(t)
	s, err := New([]Pair{{cf, kf}}, l)
	if err != nil {
		t.Fatalf("New(expired) = %v, want it accepted", err)
	}
	if s.Certificate("old.test").Leaf.SerialNumber.Cmp(c.Leaf.SerialNumber) != 0 {
		t.Error("expired certificate not served")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "expired") {
		t.Errorf("no expiry warning logged:\n%s", logs)
	}
}

func TestParseMinVersion(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"", tls.VersionTLS12, false},
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"1.1", 0, true},
		{"1.0", 0, true},
		{"TLS1.3", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMinVersion(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseMinVersion(%q) = %#x, %v; want %#x, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	c, err := SelfSigned("mail.test", "*.mail.test", "127.0.0.1", "::1")
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if got := strings.Join(leaf.DNSNames, ","); got != "mail.test,*.mail.test" {
		t.Errorf("DNSNames = %s", got)
	}
	if len(leaf.IPAddresses) != 2 || leaf.Subject.CommonName != "mail.test" {
		t.Errorf("IPs = %v, CN = %q", leaf.IPAddresses, leaf.Subject.CommonName)
	}
	if d := time.Until(leaf.NotAfter); d < SelfSignedValidity-time.Hour || d > SelfSignedValidity {
		t.Errorf("valid for %v more, want about %v", d, SelfSignedValidity)
	}
	if err := leaf.VerifyHostname("x.mail.test"); err != nil {
		t.Errorf("VerifyHostname = %v", err)
	}
	c2, err := SelfSigned()
	if err != nil || c2.Leaf.DNSNames[0] != "localhost" || c2.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Errorf("SelfSigned() = %v, %v; want localhost with a fresh serial", c2.Leaf.DNSNames, err)
	}
	// The written files load as a matching pair.
	p := mustWritePEM(t, t.TempDir(), "*.mail.test")
	if !strings.HasSuffix(p.CertFile, "_wildcard.mail.test-cert.pem") {
		t.Errorf("cert file %s", p.CertFile)
	}
	if fi, err := os.Stat(p.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile); err != nil {
		t.Errorf("LoadX509KeyPair = %v", err)
	}
}

// TestTLSConfigNoCBC: a TLS 1.2 client that offers only CBC-SHA1 suites
// fails the handshake; one with an AEAD suite succeeds.
func TestTLSConfigNoCBC(t *testing.T) {
	s := mustNew(t, mustWritePEM(t, t.TempDir(), "localhost")) // an ECDSA certificate
	cfg := s.TLSConfig(tls.VersionTLS12)
	for _, tc := range []struct {
		suite uint16
		ok    bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
	} {
		cli, srv := net.Pipe()
		go func() {
			tls.Server(srv, cfg).Handshake()
			srv.Close()
		}()
		c := tls.Client(cli, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite}})
		err := c.Handshake()
		cli.Close()
		if (err == nil) != tc.ok {
			t.Errorf("suite %s: handshake err = %v, want ok=%v", tls.CipherSuiteName(tc.suite), err, tc.ok)
		}
	}
}
