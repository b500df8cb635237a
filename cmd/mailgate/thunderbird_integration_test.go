package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	// tbHost is the mail server host name in the Thunderbird account and in
	// the add-on's oauth_provider.hostnames. Thunderbird matches an account to
	// a provider only by a host name with a dot in it ("localhost" never
	// matches), and mailgate listens on 127.0.0.1.
	tbHost = "127.0.0.1"
	// tbRedirect is the add-on's redirectionEndpoint, registered at the
	// provider. Thunderbird's login window catches the redirect by prefix
	// before loading it: http://localhost fails in the window, and
	// http://127.0.0.1 would also match the provider's own pages there.
	tbRedirect = "https://localhost"
	// tbStepTimeout bounds each wait for a step of a Thunderbird run (the
	// driver's report, its quitting). Thunderbird takes seconds; CI machines
	// under load take longer.
	tbStepTimeout = 90 * time.Second
)

// TestIntegrationThunderbird: a real Thunderbird under Xvfb, with the add-on
// that "mailgate thunderbird-addon" generated installed in a fresh profile
// and an account preconfigured through prefs, signs in at the real provider
// (the harness plays the login and consent page, auto-accepting) and fetches
// and sends mail through mailgate: mailgate's log shows the XOAUTH2 logins,
// the message arrives; a second start uses the refresh token.
//
// A test-only add-on (testdata/thunderbird/driver) drives Thunderbird
// through the MailExtension APIs and reports each step to the test.
func TestIntegrationThunderbird(t *testing.T) {
	testenv.RequireThunderbird(t)
	start := time.Now()
	dc, pf := testenv.SharedDovecot(t), testenv.SharedPostfix(t)
	const user, rcpt = "alice@example.test", "bob@example.test"

	// A Hydra of its own: the login app takes its login URL, and at log
	// level info it logs every request, which the test counts.
	idp := testenv.StartHydra(t, testenv.HydraOptions{LogLevel: "info"})
	app := idp.StartLoginApp(t, testenv.LoginAppOptions{Email: user})
	clientID := idp.PublicClient(t, testenv.PublicClientOptions{ID: "thunderbird", RedirectURIs: []string{tbRedirect}})

	mg := startMailgateForThunderbird(t, dc, pf, idp, clientID)
	oauthAddon := mg.thunderbirdAddon(t, idp, clientID)
	ctl := newDriverControl(t)
	tb := testenv.NewThunderbird(t, testenv.ThunderbirdOptions{
		Account: testenv.ThunderbirdAccount{
			Email: user, FullName: "Alice", IMAPHost: tbHost, IMAPPort: mg.port("imaps"), SMTPPort: mg.port("smtps"), SaveSent: true,
		},
		CACertPEM: mg.ca.CertPEM,
		Addons:    []testenv.Addon{oauthAddon, ctl.addon(t)},
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver reports:\n%s", ctl.summary())
			t.Logf("mailgate %s", mg.log.TailBlock(40))
		}
	})

	// First start: Thunderbird has no token and opens its login window.
	mark := idp.Log.Mark()
	first := ctl.runOnce(t, tb, mg, dc, user, rcpt, "first")
	if n := app.Logins(); n != 1 {
		t.Fatalf("login page requests after the first start = %d, want 1\n%s", n, app.Summary())
	}
	if n := app.Consents(); n != 1 {
		t.Fatalf("consent page requests after the first start = %d, want 1\n%s", n, app.Summary())
	}
	if n := hydraRequests(idp.Log.Since(mark), "POST", "/oauth2/token"); n < 1 {
		t.Fatalf("Hydra answered no token request during the first start\n%s", idp.Log.TailBlock(20))
	}

	// Second start on the same profile: no window, no authorization
	// request; the refresh token saved by the first start gets a new access
	// token (the client's only other grant, authorization_code, starts at
	// the authorization endpoint).
	mark = idp.Log.Mark()
	second := ctl.runOnce(t, tb, mg, dc, user, rcpt, "second")
	if n := app.Logins(); n != 1 {
		t.Fatalf("the second start showed the login page (%d requests in all); want the refresh token used\n%s", n, app.Summary())
	}
	since := idp.Log.Since(mark)
	if n := hydraRequests(since, "GET", "/oauth2/auth"); n != 0 {
		t.Fatalf("the second start went to the authorization endpoint %d times; want the refresh token used", n)
	}
	if n := hydraRequests(since, "POST", "/oauth2/token"); n < 1 {
		t.Fatalf("Hydra answered no token request during the second start\n%s", idp.Log.TailBlock(20))
	}
	t.Logf("first start: %v, second start: %v, whole test: %v", first.Round(time.Millisecond), second.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// runOnce delivers a message for Thunderbird to fetch, starts it, waits for
// the driver to report it fetched and a message sent, and checks mailgate's
// log and the recipient's Maildir. It returns the time from start to the
// sent message's arrival.
func (c *driverControl) runOnce(t *testing.T, tb *testenv.Thunderbird, mg *mailgateProc, dc *testenv.Dovecot, user, rcpt, name string) time.Duration {
	t.Helper()
	id := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	fetchSubject, fetchBody := "tb-fetch-"+id, "body line of "+id
	task := driverTask{
		FetchSubject: fetchSubject,
		To:           rcpt,
		SendSubject:  "tb-send-" + id,
		SendBody:     "sent by Thunderbird through mailgate, " + id,
		TimeoutMs:    (tbStepTimeout - 10*time.Second).Milliseconds(), // its error report comes first
		Quit:         true,
	}
	dc.DeliverLMTP(t, user, []byte("From: Carol <carol@example.test>\r\nTo: "+user+"\r\nSubject: "+fetchSubject+
		"\r\nMessage-ID: <"+id+"@example.test>\r\nDate: "+time.Now().Format(time.RFC1123Z)+"\r\n\r\n"+fetchBody+"\r\n"))
	c.setTask(task)
	mark := mg.log.Mark()

	start := time.Now()
	tb.Start(t)
	c.wait(t, tb, "started")
	got := c.wait(t, tb, "fetched")
	if got.Subject != fetchSubject || !strings.Contains(got.Body, fetchBody) {
		t.Fatalf("%s start: the driver fetched subject %q body %q; want %q with %q", name, got.Subject, got.Body, fetchSubject, fetchBody)
	}
	c.wait(t, tb, "sent")
	msg := dc.WaitMessageIn(t, rcpt, "INBOX", task.SendSubject, 30*time.Second)
	took := time.Since(start)
	if !bytes.Contains(msg, []byte(task.SendBody)) || !bytes.Contains(msg, []byte("From: Alice <"+user+">")) {
		t.Fatalf("%s start: the message that arrived lacks the body or the sender:\n%s", name, msg)
	}
	// Thunderbird saved a copy in the Sent folder over IMAP (APPEND).
	dc.WaitMessageIn(t, user, "Sent", task.SendSubject, 30*time.Second)
	c.wait(t, tb, "quitting")
	tb.WaitQuit(t, tbStepTimeout)

	// Every login is a successful XOAUTH2 login of the user, and there is
	// one on each protocol at least (Thunderbird opens more than one IMAP
	// connection).
	seen := map[string]bool{}
	for _, l := range strings.Split(mg.log.Since(mark), "\n") {
		if !strings.Contains(l, " msg=login ") {
			continue
		}
		if !strings.Contains(l, " result=ok ") || !strings.Contains(l, " mech=XOAUTH2 ") || !strings.Contains(l, " user="+user+" ") {
			t.Fatalf("%s start: a login other than a successful XOAUTH2 login of %s:\n%s", name, user, l)
		}
		for _, proto := range []string{"imap", "smtp"} {
			if strings.Contains(l, " proto="+proto+" ") {
				seen[proto] = true
			}
		}
	}
	if !seen["imap"] || !seen["smtp"] {
		t.Fatalf("%s start: XOAUTH2 logins in mailgate's log: imap %v, smtp %v; want both\n%s", name, seen["imap"], seen["smtp"], mg.log.Since(mark))
	}
	return took
}

// hydraRequests counts the requests of method to path that Hydra (log level
// info) answered with 200 or a redirect.
func hydraRequests(log, method, path string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "msg=completed handling request") && strings.Contains(l, "method:"+method+" path:"+path+" ") &&
			(strings.Contains(l, " status:200 ") || strings.Contains(l, " status:302 ") || strings.Contains(l, " status:303 ")) {
			n++
		}
	}
	return n
}

// mailgateProc is "mailgate serve" run from the built binary.
type mailgateProc struct {
	bin, cfgFile string
	ca           *testenv.TestCA
	addrs        map[string]string // listener name -> 127.0.0.1:port
	log          testenv.Log
}

func (m *mailgateProc) port(name string) int {
	_, p, _ := net.SplitHostPort(m.addrs[name])
	n, _ := strconv.Atoi(p)
	return n
}

// startMailgateForThunderbird writes a configuration in front of the real
// Dovecot and Postfix, validating Hydra's JWTs issued to clientID, and runs
// "mailgate serve" until the test ends.
func startMailgateForThunderbird(t *testing.T, dc *testenv.Dovecot, pf *testenv.Postfix, idp *testenv.Hydra, clientID string) *mailgateProc {
	t.Helper()
	dir := t.TempDir()
	ca, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteLeaf(dir, tbHost)
	if err != nil {
		t.Fatal(err)
	}
	m := &mailgateProc{
		bin: buildMailgate(t), cfgFile: filepath.Join(dir, "mailgate.yaml"), ca: ca,
		addrs: map[string]string{"imaps": testenv.FreeAddr(t), "smtps": testenv.FreeAddr(t), "http": testenv.FreeAddr(t)},
		log:   testenv.Log{Path: filepath.Join(dir, "mailgate.log")},
	}
	pw := filepath.Join(dir, "master-password")
	if err := os.WriteFile(pw, []byte(dc.MasterPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := dc.TLSConfig().ServerName
	cfg := fmt.Sprintf(`# TestIntegrationThunderbird
log: {level: info, format: text}
tls: {cert_file: %q, key_file: %q}
master: {user: %q, password_file: %q}
imap:
  listen_tls: %q
  listen_starttls: ""
  backend: {address: %q, tls: starttls, ca_file: %q, server_name: %q, client_ip: id}
smtp:
  listen_tls: %q
  listen_starttls: ""
  hostname: mailgate.test
  backend: {address: %q, tls: starttls, ca_file: %q, server_name: %q, login: master, client_ip: xclient}
oauth2: {mode: jwt, issuer: %q}
# Thunderbird's public client: its tokens are accepted by client id (they
# carry no audience), and "mailgate thunderbird-addon" publishes it.
clients:
  - {name: thunderbird, client_id: %q, public: true}
discovery: {domains: [example.test], hostname: %q}
http: {listen: %q}
`, certFile, keyFile, dc.MasterUser, pw,
		m.addrs["imaps"], dc.IMAPAddr, dc.CAFile, name,
		m.addrs["smtps"], pf.SubmissionAddr, pf.CAFile, name,
		idp.Issuer, clientID, tbHost, m.addrs["http"])
	if err := os.WriteFile(m.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(m.log.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(m.bin, "serve", "--config", m.cfgFile)
	cmd.Env = configFileOnly()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	waitHTTP(t, "http://"+m.addrs["http"]+"/readyz", http.StatusOK)
	return m
}

// configFileOnly is the test's environment without MAILGATE_* variables
// (the test harness's own), so that mailgate reads only its file.
func configFileOnly() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// thunderbirdAddon returns the OAuth add-on made by "mailgate
// thunderbird-addon" from the configuration, checked for what Thunderbird
// needs to pick the provider for the account.
func (m *mailgateProc) thunderbirdAddon(t *testing.T, idp *testenv.Hydra, clientID string) testenv.Addon {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mailgate-oauth.xpi")
	cmd := exec.Command(m.bin, "thunderbird-addon", "--config", m.cfgFile, "--out", out)
	cmd.Env = configFileOnly()
	if res, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mailgate thunderbird-addon: %v\n%s", err, res)
	}
	xpi, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	man, err := testenv.AddonManifest(xpi)
	if err != nil {
		t.Fatal(err)
	}
	id := testenv.AddonID(man)
	p, _ := man["oauth_provider"].(map[string]any)
	hosts, _ := p["hostnames"].([]any)
	if id == "" || p == nil || p["clientId"] != clientID || p["authorizationEndpoint"] != idp.AuthURL ||
		p["tokenEndpoint"] != idp.TokenURL || p["redirectionEndpoint"] != tbRedirect || p["usePKCE"] != true ||
		len(hosts) != 1 || hosts[0] != tbHost {
		t.Fatalf("the add-on's manifest does not name the provider for Thunderbird's account on %s (id %q):\n%v", tbHost, id, man)
	}
	return testenv.Addon{ID: id, XPI: xpi}
}

// driverTask is what the driver add-on does at one start.
type driverTask struct {
	FetchSubject string `json:"fetchSubject"` // wait for this message in the Inbox and read it
	To           string `json:"to"`           // then send a message there
	SendSubject  string `json:"sendSubject"`
	SendBody     string `json:"sendBody"`
	TimeoutMs    int64  `json:"timeoutMs"` // the driver's own deadline for the fetch
	Quit         bool   `json:"quit"`      // then close every window: Thunderbird quits
}

// driverReport is one step the driver reports.
type driverReport struct {
	Step    string `json:"step"` // started, progress, fetched, sent, quitting, error
	Detail  string `json:"detail"`
	Subject string `json:"subject"` // fetched
	Body    string `json:"body"`    // fetched: the text/plain part
}

// driverControl is the test's HTTP server the driver add-on talks to: it
// hands out the task of the current start and collects reports.
type driverControl struct {
	srv     *httptest.Server
	reports chan driverReport

	mu   sync.Mutex
	task driverTask
	all  []string
}

func newDriverControl(t *testing.T) *driverControl {
	// Room for every report of a run: the test reads them while it waits.
	c := &driverControl{reports: make(chan driverReport, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /task", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		task := c.task
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(task)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep driverReport
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.all = append(c.all, fmt.Sprintf("%s %s %q %q %s", time.Now().Format("15:04:05.000"), rep.Step, rep.Subject, rep.Body, rep.Detail))
		c.mu.Unlock()
		if rep.Step != "progress" { // only for the summary
			c.reports <- rep
		}
	})
	c.srv = httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(c.srv.Close)
	return c
}

// addon is the driver add-on from testdata, with config.json naming the
// control server.
func (c *driverControl) addon(t *testing.T) testenv.Addon {
	t.Helper()
	files := map[string][]byte{}
	root := filepath.Join("testdata", "thunderbird", "driver")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files["config.json"], _ = json.Marshal(map[string]string{"control": c.srv.URL})
	xpi, err := testenv.XPI(files)
	if err != nil {
		t.Fatal(err)
	}
	man, err := testenv.AddonManifest(xpi)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Addon{ID: testenv.AddonID(man), XPI: xpi}
}

func (c *driverControl) setTask(task driverTask) {
	c.mu.Lock()
	c.task = task
	c.mu.Unlock()
}

// wait returns the next report of step; it fails t on an error report, when
// Thunderbird exits, or after tbStepTimeout.
func (c *driverControl) wait(t *testing.T, tb *testenv.Thunderbird, step string) driverReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tbStepTimeout)
	defer cancel()
	for {
		select {
		case r := <-c.reports:
			switch r.Step {
			case step:
				return r
			case "error":
				t.Fatalf("waiting for %q, the driver reported an error: %s", step, r.Detail)
			}
		case <-tb.Exited():
			if step == "quitting" {
				return driverReport{Step: step} // it may quit before the report arrives
			}
			t.Fatalf("waiting for %q: Thunderbird exited", step)
		case <-ctx.Done():
			t.Fatalf("no %q report from the driver within %v", step, tbStepTimeout)
		}
	}
}

func (c *driverControl) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.all) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(c.all, "\n  ")
}
