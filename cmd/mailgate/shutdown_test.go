package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/demo"
	"github.com/mailgate/mailgate/internal/testenv"
)

// serveRig is "mailgate serve" run as a process in front of the demo's
// in-process backends, configured by a file.
type serveRig struct {
	t                          *testing.T
	ctx                        context.Context
	bin                        string
	d                          *demo.Demo
	certFile, keyFile, cfgFile string
	imaps, smtps, httpAddr     string
	cmd                        *exec.Cmd
	logs                       *syncBuf
	// extraYAML is appended to the configuration file (more sections).
	extraYAML string
	// drainDelay is cluster.drain_delay (zero: none, no balancer).
	drainDelay time.Duration
	// wrapper runs mailgate through a command (e.g. prlimit ... --).
	wrapper []string
}

func newServeRig(t *testing.T) *serveRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	r := &serveRig{t: t, ctx: ctx, bin: buildMailgate(t), logs: &syncBuf{}}
	d, err := demo.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r.d = d
	dir := t.TempDir()
	if r.certFile, r.keyFile, err = certs.WritePEM(dir, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	r.cfgFile = filepath.Join(dir, "mailgate.yaml")
	r.imaps, r.smtps, r.httpAddr = testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	r.writeConfig("")
	return r
}

// writeConfig writes the configuration; oauth2 holds extra keys of the
// oauth2 section ("key: value, ...").
func (r *serveRig) writeConfig(oauth2 string) {
	if oauth2 != "" {
		oauth2 = ", " + oauth2
	}
	pw := filepath.Join(filepath.Dir(r.cfgFile), "master")
	os.WriteFile(pw, []byte(r.d.MasterPassword+"\n"), 0o600)
	err := os.WriteFile(r.cfgFile, []byte(fmt.Sprintf(`
tls: {cert_file: %s, key_file: %s}
master: {user: %s, password_file: %s}
imap: {listen_tls: %q, listen_starttls: "", backend: {address: %s, tls: none}}
smtp:
  listen_tls: %q
  listen_starttls: ""
  hostname: mailgate.test
  backend: {address: %s, tls: none, login: master}
oauth2: {mode: userinfo, userinfo_url: %s/userinfo%s}
http: {listen: %q}
cluster: {drain_delay: %s}
%s`, r.certFile, r.keyFile, r.d.MasterUser, pw, r.imaps, r.d.IMAPAddr, r.smtps, r.d.SMTPAddr, r.d.Issuer.URL(), oauth2, r.httpAddr, r.drainDelay, r.extraYAML)), 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
}

// start runs mailgate and waits until /readyz answers.
func (r *serveRig) start() {
	r.t.Helper()
	argv := append(append([]string(nil), r.wrapper...), r.bin, "serve", "--config", r.cfgFile)
	r.cmd = exec.CommandContext(r.ctx, argv[0], argv[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { r.cmd.Process.Kill() })
	waitHTTP(r.t, "http://"+r.httpAddr+"/readyz", http.StatusOK)
}

// clientTLS trusts the rig's certificate.
func (r *serveRig) clientTLS() *tls.Config {
	pemBytes, _ := os.ReadFile(r.certFile)
	block, _ := pem.Decode(pemBytes)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		r.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// TestServeGracefulShutdownSMTPInFlight runs "mailgate serve" as a process,
// sends SIGTERM while an SMTP DATA is half uploaded, and checks that the
// message is still delivered, the client hears 250, and mailgate exits 0.
func TestServeGracefulShutdownSMTPInFlight(t *testing.T) {
	r := newServeRig(t)
	r.start()
	d, cmd, logs, smtps := r.d, r.cmd, r.logs, r.smtps
	c, err := smtp.DialTLS(smtps, r.clientTLS())
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, logs.String())
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: d.User, Token: d.Token})); err != nil {
		t.Fatalf("auth: %v\n%s", err, logs.String())
	}
	if err := c.Mail(d.User, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(d.User, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	subject := fmt.Sprintf("in flight at SIGTERM %d", time.Now().UnixNano())
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nfirst half\r\n", d.User, d.User, subject)

	// SIGTERM with the message half sent: mailgate stops accepting...
	cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", smtps, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...but lets the transaction finish.
	fmt.Fprintf(w, "second half\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("DATA after SIGTERM: %v\n%s", err, logs.String())
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("mailgate exit: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("mailgate did not exit after the transaction\n%s", logs.String())
	}

	// The whole message is in the mailbox.
	ic, err := imapclient.DialInsecure(d.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Authenticate(sasl.NewPlainClient(d.User, d.MasterUser, d.MasterPassword)); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := ic.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		body := m.FindBodySection(&imap.FetchItemBodySection{})
		if bytes.Contains(body, []byte(subject)) {
			if !bytes.Contains(body, []byte("first half\r\nsecond half")) {
				t.Fatalf("message truncated:\n%s", body)
			}
			if strings.Contains(logs.String(), d.Token) {
				t.Fatal("token in the logs")
			}
			return
		}
	}
	t.Fatalf("message not delivered\n%s", logs.String())
}

// TestServeSIGHUPReloadsCertificate: replacing the certificate files and
// sending SIGHUP makes new handshakes show the new certificate, while a
// session opened before goes on.
func TestServeSIGHUPReloadsCertificate(t *testing.T) {
	r := newServeRig(t)
	r.start()
	imaps, cmd, logs, certFile, keyFile := r.imaps, r.cmd, r.logs, r.certFile, r.keyFile

	serial := func() string {
		c, err := tls.Dial("tcp", imaps, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	old, err := tls.Dial("tcp", imaps, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// New files in place (written elsewhere, then renamed over the old ones).
	nd := t.TempDir()
	nc, nk, err := certs.WritePEM(nd, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	os.Rename(nc, certFile)
	os.Rename(nk, keyFile)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for serial() == before {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded after SIGHUP\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The session opened before the reload still works.
	old.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	if n, err := old.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("* OK")) {
		t.Fatalf("old session: %q, %v", buf[:n], err)
	}
	old.Write([]byte("a NOOP\r\n"))
	if n, err := old.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("a OK")) {
		t.Fatalf("old session after reload: %q, %v", buf[:n], err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
}

// TestServeSIGHUPReloadsConfig: oauth2 settings change on SIGHUP; a broken
// configuration is refused and the running one stays.
func TestServeSIGHUPReloadsConfig(t *testing.T) {
	r := newServeRig(t)
	write := func(domain string) { r.writeConfig("allowed_domains: [" + domain + "], cache_ttl: 0s") }
	write("example.test")
	r.start()
	d, cmd, logs, imaps := r.d, r.cmd, r.logs, r.imaps

	login := func() error {
		c, err := imapclient.DialTLS(imaps, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Authenticate(xoauth2{d.User, d.Token})
	}
	if err := login(); err != nil {
		t.Fatalf("login with the first config: %v", err)
	}
	reloadAndWait := func(marker string) {
		n := strings.Count(logs.String(), marker)
		cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(logs.String(), marker) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP\n%s", marker, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	write("other.test")
	reloadAndWait("configuration reloaded")
	if err := login(); err == nil {
		t.Fatal("login still accepted after allowed_domains changed")
	}
	os.WriteFile(r.cfgFile, []byte("oauth2: {mode: [broken\n"), 0o644)
	reloadAndWait("configuration reload refused")
	if err := login(); err == nil {
		t.Fatal("a broken reload changed the running configuration")
	}
	write("example.test")
	reloadAndWait("configuration reloaded")
	if err := login(); err != nil {
		t.Fatalf("login after restoring the config: %v", err)
	}
}

// syncBuf is a bytes.Buffer safe for a subprocess's writers and a reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
