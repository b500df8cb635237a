package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/auth/apppass"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/testenv"
)

const apAlice = "alice@example.test"

// appPassRig is mailgate in front of the real Dovecot and Postfix with app
// passwords on (a SQLite store under t.TempDir()), its log and its
// configuration file.
type appPassRig struct {
	a       *app
	dc      *testenv.Dovecot
	cfgPath string
	tls     *tls.Config
	mu      sync.Mutex
	logs    bytes.Buffer
}

func newAppPassRig(t *testing.T, passthrough bool) *appPassRig {
	t.Helper()
	dc := testenv.SharedDovecot(t)
	cfg, _ := realBackends(t, dc, testenv.SharedPostfix(t))
	cfg.AppPasswords.Enabled = true
	cfg.AppPasswords.Database = "sqlite://" + filepath.Join(t.TempDir(), "app-passwords.db")
	cfg.AppPasswords.RecheckInterval = 300 * time.Millisecond
	if passthrough {
		cfg.Auth.PasswordPassthrough, cfg.Auth.PasswordPassthroughProtocols = true, []string{config.ProtoIMAP}
	}
	r := &appPassRig{dc: dc}
	r.a = runApp(t, cfg, slog.New(slog.NewTextHandler(lockedWriter{&r.mu, &r.logs}, nil)))
	r.tls = &tls.Config{RootCAs: leafPool(t, r.a.certs.Certificate("127.0.0.1")), ServerName: "127.0.0.1"}
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	r.cfgPath = filepath.Join(t.TempDir(), "mailgate.yaml")
	if err := os.WriteFile(r.cfgPath, y, 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// create makes an app password for alice with the store mailgate runs on.
func (r *appPassRig) create(t *testing.T, name string, protos ...apppass.Protocol) (string, apppass.Record) {
	t.Helper()
	pw, rec, err := r.a.appPass.Create(context.Background(), apAlice, name, protos, 0)
	if err != nil {
		t.Fatal(err)
	}
	return pw, rec
}

func (r *appPassRig) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// imapLogin sends LOGIN over mailgate's IMAPS and returns its tagged reply.
func (r *appPassRig) imapLogin(t *testing.T, user, pass string) string {
	t.Helper()
	l := dialTLSLines(t, r.a.addr("imap.listen_tls"), r.tls)
	defer l.c.Close()
	l.expect(t, "* OK")
	l.send(t, fmt.Sprintf("a1 LOGIN %s %s", user, pass))
	for {
		if s := l.read(t); strings.HasPrefix(s, "a1 ") {
			return s
		}
	}
}

// smtpAuth runs AUTH PLAIN over mailgate's SMTPS and returns the error.
func (r *appPassRig) smtpAuth(t *testing.T, user, pass string) (*smtp.Client, error) {
	t.Helper()
	c, err := smtp.DialTLS(r.a.addr("smtp.listen_tls"), r.tls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c, c.Auth(sasl.NewPlainClient("", user, pass))
}

func (r *appPassRig) count(proto, result string) float64 {
	mfs, err := r.a.metrics.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mailgate_app_password_logins_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["proto"] == proto && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestIntegrationAppPasswords: with app passwords on and passthrough off,
// an app password opens IMAP (LOGIN, and Python's imaplib), SMTP (AUTH
// PLAIN; the message is delivered) and POP3 (USER/PASS) sessions at the
// real Dovecot and Postfix as the master user on behalf of alice; a wrong
// secret, a protocol out of scope, a revoked password and alice's own
// password are refused with the protocols' failure replies and counted;
// the log names the password by id, never by value.
func TestIntegrationAppPasswords(t *testing.T) {
	r := newAppPassRig(t, false)
	pw, rec := r.create(t, "laptop")

	// SMTP: send alice a message.
	subject := fmt.Sprintf("app-password-%d", time.Now().UnixNano())
	c, err := r.smtpAuth(t, apAlice, pw)
	if err != nil {
		t.Fatalf("SMTP AUTH PLAIN with an app password: %v\n%s", err, r.log())
	}
	if err := c.SendMail(apAlice, []string{apAlice}, strings.NewReader(
		"From: "+apAlice+"\r\nTo: "+apAlice+"\r\nSubject: "+subject+"\r\n\r\nsent with an app password\r\n")); err != nil {
		t.Fatalf("send: %v", err)
	}
	r.dc.WaitMessageIn(t, apAlice, "INBOX", subject, 30*time.Second)

	// IMAP: read it back.
	ic, err := imapclient.DialTLS(r.a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: r.tls})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login(apAlice, pw).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN with an app password: %v\n%s", err, r.log())
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	found, err := ic.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(found.AllSeqNums()) != 1 {
		t.Fatalf("IMAP search through mailgate: %v, %v; want the message sent", found, err)
	}
	ic.Logout().Wait()

	// POP3: USER/PASS.
	pop := dialTLSLines(t, r.a.addr("pop3.listen_tls"), r.tls)
	pop.expect(t, "+OK")
	pop.send(t, "USER "+apAlice)
	pop.expect(t, "+OK")
	pop.send(t, "PASS "+pw)
	pop.expect(t, "+OK Logged in.")
	pop.send(t, "STAT")
	pop.expect(t, "+OK ")
	pop.send(t, "QUIT")

	if got := r.count("imap", "ok") + r.count("smtp", "ok") + r.count("pop3", "ok"); got != 3 {
		t.Errorf("mailgate_app_password_logins_total{result=ok} = %v over imap, smtp, pop3; want 3", got)
	}

	// A wrong secret: the same id, another secret.
	wrong := pw[:len(pw)-4] + "aaaa"
	if wrong == pw {
		wrong = pw[:len(pw)-4] + "bbbb"
	}
	if got := r.imapLogin(t, apAlice, wrong); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("IMAP LOGIN with a wrong secret: %q; want NO [AUTHENTICATIONFAILED]", got)
	}
	if _, err := r.smtpAuth(t, apAlice, wrong); err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("SMTP AUTH with a wrong secret: %v; want 535 5.7.8", err)
	}
	if got := r.count("imap", "invalid") + r.count("smtp", "invalid"); got != 2 {
		t.Errorf("mailgate_app_password_logins_total{result=invalid} = %v; want 2", got)
	}

	// The scope: an IMAP-only password over SMTP.
	imapOnly, imapRec := r.create(t, "imap only", apppass.IMAP)
	if _, err := r.smtpAuth(t, apAlice, imapOnly); err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("SMTP AUTH with an IMAP-only app password: %v; want 535 5.7.8", err)
	}
	if got := r.count("smtp", "protocol"); got != 1 {
		t.Errorf("mailgate_app_password_logins_total{proto=smtp,result=protocol} = %v; want 1", got)
	}
	if got := r.imapLogin(t, apAlice, imapOnly); !strings.HasPrefix(got, "a1 OK") {
		t.Errorf("IMAP LOGIN with an IMAP-only app password: %q; want OK", got)
	}

	// Python's imaplib.
	r.imaplib(t, pw)

	// Revoked with the command: refused at once.
	out := r.command(t, 0, "revoke", "--user", apAlice, "--id", imapRec.ID)
	if !strings.Contains(out, "revoked app password "+imapRec.ID) {
		t.Errorf("revoke printed %q", out)
	}
	if got := r.imapLogin(t, apAlice, imapOnly); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("IMAP LOGIN with a revoked app password: %q; want NO [AUTHENTICATIONFAILED]", got)
	}

	// Not an app password, passthrough off: refused, not counted as an app password.
	before := r.count("imap", "not_app_password")
	if got := r.imapLogin(t, apAlice, "password"); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("IMAP LOGIN with alice's own password, passthrough off: %q; want NO [AUTHENTICATIONFAILED]", got)
	}
	if r.count("imap", "not_app_password") != before {
		t.Error("a password that is not an app password was counted as an app-password login")
	}

	logged := r.log()
	for _, want := range []string{"apppass=" + rec.ID, "apppass=" + imapRec.ID, "mech=LOGIN", "mech=PLAIN", "source=app_password"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
	if strings.Contains(logged, pw[len(apppass.Prefix)+17:]) || strings.Contains(logged, imapOnly[len(apppass.Prefix)+17:]) {
		t.Errorf("the log shows an app password's secret:\n%s", logged)
	}
}

const imaplibScript = `
import imaplib, os, ssl, sys
host, port, cafile, user = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=10)
typ, data = m.login(user, os.environ["APP_PASSWORD"])
print(typ)
typ, data = m.select("INBOX")
print(typ)
print(m.logout()[0])
`

// imaplib logs in over mailgate's IMAPS with Python's imaplib.
func (r *appPassRig) imaplib(t *testing.T, pw string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("python3 not installed")
		}
		t.Skip("python3 not installed")
	}
	host, port, _ := strings.Cut(r.a.addr("imap.listen_tls"), ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", imaplibScript, host, port, r.a.cfg.TLS.CertFile, apAlice)
	cmd.Env = append(os.Environ(), "APP_PASSWORD="+pw)
	out, err := cmd.CombinedOutput()
	if got := strings.Fields(string(out)); err != nil || strings.Join(got, " ") != "OK OK BYE" {
		t.Fatalf("imaplib: %v\n%s\nwant OK OK BYE", err, out)
	}
}

// command runs "mailgate app-passwords args..." on the rig's configuration
// and wants exit code want.
func (r *appPassRig) command(t *testing.T, want int, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := runAppPasswords(append(args, "--config", r.cfgPath), &stdout, &stderr); code != want {
		t.Fatalf("mailgate app-passwords %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String()
}

// TestIntegrationAppPasswordsPassthrough: with passthrough on, a value
// that is not an app password is alice's own password, which the real
// Dovecot accepts; an app password still works.
func TestIntegrationAppPasswordsPassthrough(t *testing.T) {
	r := newAppPassRig(t, true)
	if got := r.imapLogin(t, apAlice, "password"); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("IMAP LOGIN with alice's own password, passthrough on: %q; want OK\n%s", got, r.log())
	}
	if !strings.Contains(r.log(), "source=password") {
		t.Errorf("the login was not a passthrough:\n%s", r.log())
	}
	pw, _ := r.create(t, "phone")
	if got := r.imapLogin(t, apAlice, pw); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("IMAP LOGIN with an app password, passthrough on: %q; want OK", got)
	}
	if r.count("imap", "ok") != 1 {
		t.Errorf("mailgate_app_password_logins_total{proto=imap,result=ok} = %v; want 1", r.count("imap", "ok"))
	}
}

// TestIntegrationAppPasswordsCommand: create, list and revoke round trip;
// the password is printed once by create, and no output shows a hash.
func TestIntegrationAppPasswordsCommand(t *testing.T) {
	r := newAppPassRig(t, false)
	out := r.command(t, 0, "create", "--user", apAlice, "--name", "tablet", "--protocols", "imap,smtp", "--expires", "720h")
	pw := regexp.MustCompile(`mgp_[a-z2-7]+_[a-z2-7]+`).FindString(out)
	if pw == "" {
		t.Fatalf("create printed no password:\n%s", out)
	}
	if got := r.imapLogin(t, apAlice, pw); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("IMAP LOGIN with the created app password: %q", got)
	}
	list := r.command(t, 0, "list", "--user", apAlice)
	id := strings.Split(pw, "_")[1]
	if !strings.Contains(list, id) || !strings.Contains(list, "tablet") || !strings.Contains(list, "imap,smtp") || !strings.Contains(list, "127.0.0.1") {
		t.Errorf("list lacks the password's id, name, protocols or last address:\n%s", list)
	}
	for _, s := range []string{out, list} {
		if strings.Contains(s, "$argon2id") {
			t.Errorf("output shows a hash:\n%s", s)
		}
	}
	if strings.Contains(list, pw) {
		t.Errorf("list shows the password:\n%s", list)
	}
	r.command(t, 2, "revoke", "--user", apAlice)
	r.command(t, 1, "revoke", "--user", apAlice, "--id", "nosuchid")
	if out := r.command(t, 0, "revoke", "--user", apAlice, "--all"); !strings.Contains(out, "revoked 1 app password") {
		t.Errorf("revoke --all printed %q", out)
	}
	if out := r.command(t, 0, "list", "--user", apAlice); !strings.Contains(out, "no app passwords") {
		t.Errorf("list after revoke --all: %q", out)
	}
	if got := r.imapLogin(t, apAlice, pw); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("IMAP LOGIN after revoke --all: %q", got)
	}
	var help bytes.Buffer
	if code := run([]string{"help", "app-passwords"}, &help, io.Discard); code != 0 || !strings.Contains(help.String(), "app-passwords list") {
		t.Errorf("mailgate help app-passwords: exit %d\n%s", code, help.String())
	}
}

// TestIntegrationAppPasswordSessionsEnd: sessions opened with an app
// password end once it is revoked, within app_passwords.recheck_interval:
// IMAP in IDLE gets "* BYE [AUTHENTICATIONFAILED]" and is closed, SMTP
// gets 421 at its next command, POP3 is closed; a session of another app
// password goes on.
func TestIntegrationAppPasswordSessionsEnd(t *testing.T) {
	r := newAppPassRig(t, false)
	pw, rec := r.create(t, "lost phone")
	keep, _ := r.create(t, "laptop")

	imapIdle := func(pass string) *lines {
		l := dialTLSLines(t, r.a.addr("imap.listen_tls"), r.tls)
		l.expect(t, "* OK")
		l.send(t, "a1 LOGIN "+apAlice+" "+pass)
		l.until(t, "a1 OK")
		l.send(t, "a2 SELECT INBOX")
		l.until(t, "a2 OK")
		l.send(t, "a3 IDLE")
		l.expect(t, "+ ")
		return l
	}
	lost, kept := imapIdle(pw), imapIdle(keep)
	sc, err := r.smtpAuth(t, apAlice, pw)
	if err != nil {
		t.Fatal(err)
	}
	pop := dialTLSLines(t, r.a.addr("pop3.listen_tls"), r.tls)
	pop.expect(t, "+OK")
	pop.send(t, "USER "+apAlice)
	pop.expect(t, "+OK")
	pop.send(t, "PASS "+pw)
	pop.expect(t, "+OK")

	if err := r.a.appPass.Revoke(context.Background(), apAlice, rec.ID); err != nil {
		t.Fatal(err)
	}
	lost.expect(t, "* BYE [AUTHENTICATIONFAILED] App password no longer valid.")
	lost.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := lost.br.ReadString('\n'); err == nil {
		t.Error("the IMAP session goes on after its BYE")
	}
	pop.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := pop.br.ReadString('\n'); err == nil {
		t.Errorf("the POP3 session goes on: %q", line)
	}
	// SMTP: the next command after the recheck (the third session ended).
	waitLog(t, r, "session ends: app password no longer valid", 3)
	if err := sc.Noop(); err == nil || !strings.Contains(err.Error(), "421") || !strings.Contains(err.Error(), "App password no longer valid") {
		t.Errorf("SMTP after revocation: %v; want 421 4.7.0 App password no longer valid", err)
	}
	// The other app password's session is still there.
	kept.send(t, "DONE")
	kept.until(t, "a3 OK")
	if !strings.Contains(r.log(), "apppass: invalid app password (id "+rec.ID+"): revoked") {
		t.Errorf("the log does not say why the sessions ended:\n%s", r.log())
	}
}

// waitLog waits until the rig's log has n lines containing s.
func waitLog(t *testing.T, r *appPassRig, s string, n int) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(r.log(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the log has fewer than %d lines with %q:\n%s", n, s, r.log())
		}
		<-tick.C
	}
}

// TestIntegrationAppPasswordConcurrentLogins: logins arriving together
// with one app password all succeed at the real Dovecot (no "database is
// locked", no lost last-use write failing a login), each counted once.
func TestIntegrationAppPasswordConcurrentLogins(t *testing.T) {
	r := newAppPassRig(t, false)
	pw, _ := r.create(t, "shared by many workers")
	const n = 8 // under Dovecot's mail_max_userip_connections (10)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ic, err := imapclient.DialTLS(r.a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: r.tls})
			if err != nil {
				errs <- err
				return
			}
			defer ic.Close()
			if err := ic.Login(apAlice, pw).Wait(); err != nil {
				errs <- fmt.Errorf("login: %w", err)
				return
			}
			errs <- ic.Logout().Wait()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent login: %v", err)
		}
	}
	if got := r.count("imap", "ok"); got != n {
		t.Errorf("mailgate_app_password_logins_total{proto=imap,result=ok} = %v, want %d", got, n)
	}
	if l := r.log(); strings.Contains(l, "locked") || strings.Contains(l, "cannot record the last use") {
		t.Errorf("the store struggled:\n%s", l)
	}
}
