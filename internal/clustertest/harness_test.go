package clustertest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	// lbSource is the address HAProxy connects to the replicas from: the
	// only one their proxy_protocol.trusted_networks lists.
	lbSource = "127.0.0.250"
	// drainDelay is the replicas' cluster.drain_delay: well above what
	// HAProxy needs to take a replica out (fall 2 × inter 250 ms).
	drainDelay = 1500 * time.Millisecond
	// ioTimeout bounds one client operation (a dial, a command, a reply).
	ioTimeout = 15 * time.Second
	// readyTimeout bounds a replica's start-up and HAProxy's verdicts.
	readyTimeout = 30 * time.Second
	// logTimeout bounds waits for log lines and delivered mail.
	logTimeout = 15 * time.Second
	// Frontends of the cluster's HAProxy.
	feIMAPS    = "imaps"     // every replica's IMAP listener (implicit TLS)
	feSMTPS    = "smtps"     // every replica's submissions listener
	feIMAPSOne = "imaps_one" // the first replica's IMAP listener only
)

// mailgateBinary builds cmd/mailgate once per test binary, or takes
// $MAILGATE_CLUSTERTEST_BIN (e.g. scripts/build.sh's bin/mailgate).
var mailgateBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("MAILGATE_CLUSTERTEST_BIN"); p != "" {
		return p, nil
	}
	removeStaleBuildDirs()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mailgate-clustertest-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mailgate")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mailgate/mailgate/cmd/mailgate").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/mailgate: %v\n%s", err, out)
	}
	return bin, nil
})

// removeStaleBuildDirs removes the binaries built by test processes that
// have exited (testenv.Main exits without running deferred functions, so
// each process leaves its build behind, and the next one removes it).
func removeStaleBuildDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "mailgate-clustertest-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "mailgate-clustertest-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(d)
		}
	}
}

// clusterOptions shapes a cluster; the zero value is three replicas with
// mailgate's default limits and no shared state.
type clusterOptions struct {
	// replicas is how many mailgate processes run. Zero: 3.
	replicas int
	// redis, if not nil, is the replicas' cluster.redis (shared throttle
	// and token cache), with when_down local.
	redis *testenv.Redis
	// authFailures is limits.auth_failures_per_ip. Zero: mailgate's default.
	authFailures int
}

// cluster is the rig: replicas behind HAProxy, in front of the shared
// Dovecot, Postfix and Hydra of the test binary.
type cluster struct {
	t         *testing.T
	bin       string
	dir       string
	dc        *testenv.Dovecot
	pf        *testenv.Postfix
	idp       *testenv.Hydra
	redis     *testenv.Redis
	lb        *testenv.HAProxy
	reps      []*replica
	clientTLS *tls.Config // trusts the replicas' certificate, for ServerName 127.0.0.1
	keyPrefix string      // cluster.redis.key_prefix, unique per cluster
	opts      clusterOptions
	tokens    []string // minted for this test: none may appear in a log
}

// replica is one `mailgate serve` process (restartable on the same ports).
type replica struct {
	c                  *cluster
	name               string // r1, r2, ...: also its HAProxy server name
	imaps, smtps, http string // listen addresses (127.0.0.1:port)
	cfgFile            string
	log                testenv.Log // stdout and stderr of every run
	mu                 sync.Mutex
	cmd                *exec.Cmd
	done               chan struct{} // closed when cmd has exited
	exitErr            error         // cmd.Wait's result, once done
	runs               int
}

// newCluster starts the replicas and HAProxy and waits until HAProxy has
// every replica UP after a passed /readyz check.
func newCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	if opts.replicas == 0 {
		opts.replicas = 3
	}
	bin, err := mailgateBinary()
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.Shared(t)
	dir, err := os.MkdirTemp("", "mailgate-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("MAILGATE_TESTENV_KEEP") == "1" {
			t.Logf("kept %s (MAILGATE_TESTENV_KEEP=1)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	c := &cluster{t: t, bin: bin, dir: dir, dc: env.Dovecot, pf: env.Postfix, idp: env.Hydra, redis: opts.redis, opts: opts,
		keyPrefix: fmt.Sprintf("mgtest%d:", time.Now().UnixNano())}
	certFile, keyFile, err := certs.WritePEM(c.dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.clientTLS = trustFile(t, certFile)
	pwFile := filepath.Join(c.dir, "master-password")
	if err := os.WriteFile(pwFile, []byte(c.dc.MasterPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range opts.replicas {
		r := &replica{c: c, name: fmt.Sprintf("r%d", i+1)}
		r.imaps, r.smtps, r.http = testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
		r.cfgFile = filepath.Join(c.dir, r.name+".yaml")
		r.log = testenv.Log{Path: filepath.Join(c.dir, r.name+".log")}
		if err := os.WriteFile(r.cfgFile, []byte(c.config(r, certFile, keyFile, pwFile)), 0o600); err != nil {
			t.Fatal(err)
		}
		c.reps = append(c.reps, r)
	}
	t.Cleanup(c.cleanup)
	for _, r := range c.reps {
		r.start()
	}
	for _, r := range c.reps {
		r.waitReady()
	}
	var all, one []testenv.HAProxyServer
	var allSMTP []testenv.HAProxyServer
	for _, r := range c.reps {
		all = append(all, testenv.HAProxyServer{Name: r.name, Addr: r.imaps, CheckAddr: r.http})
		allSMTP = append(allSMTP, testenv.HAProxyServer{Name: r.name, Addr: r.smtps, CheckAddr: r.http})
	}
	one = all[:1]
	c.lb = testenv.StartHAProxy(t, testenv.HAProxyOptions{
		Source: lbSource,
		Frontends: []testenv.HAProxyFrontend{
			{Name: feIMAPS, Servers: all, SendProxyV2: true, HealthPath: "/readyz"},
			{Name: feSMTPS, Servers: allSMTP, SendProxyV2: true, HealthPath: "/readyz"},
			{Name: feIMAPSOne, Servers: one, SendProxyV2: true, HealthPath: "/readyz"},
		},
	})
	c.lb.WaitAllUp(t, readyTimeout)
	return c
}

// config is a replica's mailgate.yaml.
func (c *cluster) config(r *replica, certFile, keyFile, pwFile string) string {
	limits := "  connection_rate_per_ip: 0\n  max_prelogin_per_ip: 0\n"
	if c.opts.authFailures > 0 {
		limits += fmt.Sprintf("  auth_failures_per_ip: %d\n", c.opts.authFailures)
	}
	redis := ""
	if c.redis != nil {
		redis = fmt.Sprintf("  redis:\n    address: %q\n    key_prefix: %q\n    timeout: 250ms\n    when_down: local\n", c.redis.Addr, c.keyPrefix)
	}
	return fmt.Sprintf(`# replica %[1]s of internal/clustertest
log: {level: info, format: text}
tls: {cert_file: %[2]q, key_file: %[3]q}
master: {user: %[4]q, password_file: %[5]q}
imap:
  listen_tls: %[6]q
  listen_starttls: ""
  backend: {address: %[7]q, tls: starttls, ca_file: %[8]q, server_name: %[9]q, client_ip: id}
smtp:
  listen_tls: %[10]q
  listen_starttls: ""
  hostname: mailgate.test
  backend: {address: %[11]q, tls: starttls, ca_file: %[12]q, server_name: %[9]q, login: xclient, client_ip: xclient}
pop3: {listen_tls: "", listen_starttls: ""}
sieve: {listen: ""}
oauth2: {mode: userinfo, userinfo_url: %[13]q, cache_ttl: 5m}
limits:
%[14]shttp: {listen: %[15]q}
proxy_protocol: {trusted_networks: [%[16]s/32]}
cluster:
  drain_delay: %[17]s
%[18]s`, r.name, certFile, keyFile, c.dc.MasterUser, pwFile,
		r.imaps, c.dc.IMAPAddr, c.dc.CAFile, testenv.ServerName,
		r.smtps, c.pf.SubmissionAddr, c.pf.CAFile,
		c.idp.UserinfoURL, limits, r.http, lbSource, drainDelay, redis)
}

// cleanup kills what is still running, prints the replicas' logs if the
// test failed, and checks that no token and no master password reached a
// log.
func (c *cluster) cleanup() {
	for _, r := range c.reps {
		r.kill()
	}
	for _, r := range c.reps {
		logs := r.log.String()
		for _, tok := range c.tokens {
			if strings.Contains(logs, tok) {
				c.t.Errorf("replica %s: a token appears in its log", r.name)
			}
		}
		if strings.Contains(logs, c.dc.MasterPassword) {
			c.t.Errorf("replica %s: the master password appears in its log", r.name)
		}
		if c.t.Failed() {
			var warn []string
			for _, l := range strings.Split(logs, "\n") {
				if (strings.Contains(l, "level=WARN") && !strings.Contains(l, "open-files limit")) || strings.Contains(l, "level=ERROR") ||
					(strings.Contains(l, "msg=login") && !strings.Contains(l, "result=ok")) || strings.HasPrefix(l, "===") ||
					strings.Contains(l, "msg=draining") || strings.Contains(l, `msg="shutting down"`) {
					warn = append(warn, l)
				}
			}
			if len(warn) > 40 {
				warn = append(warn[:20], append([]string{"..."}, warn[len(warn)-20:]...)...)
			}
			c.t.Logf("replica %s (%d runs): warnings, errors and failed logins of %s:\n%s\n%s", r.name, r.runs, r.log.Path, strings.Join(warn, "\n"), r.log.TailBlock(30))
		}
	}
}

// mint mints a token for user and remembers it for the log check.
func (c *cluster) mint(user string) string {
	c.t.Helper()
	tok := c.idp.MintToken(c.t, user, testenv.TokenOptions{})
	c.tokens = append(c.tokens, tok)
	return tok
}

// start runs the replica's process (again, after it exited).
func (r *replica) start() {
	t := r.c.t
	t.Helper()
	out, err := os.OpenFile(r.log.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs++
	fmt.Fprintf(out, "=== run %d of replica %s\n", r.runs, r.name)
	cmd := exec.Command(r.c.bin, "serve", "--config", r.cfgFile)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.c.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start replica %s: %v", r.name, err)
	}
	done := make(chan struct{})
	r.cmd, r.done = cmd, done
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.exitErr = err
		r.mu.Unlock()
		close(done)
	}()
}

// waitReady polls /readyz until it answers 200; it fails the test if the
// process exits first or after readyTimeout.
func (r *replica) waitReady() {
	t := r.c.t
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-r.done:
			t.Fatalf("replica %s exited during start-up: %v\n%s", r.name, r.exitErr, r.log.TailBlock(30))
		default:
		}
		if code, _, err := r.get("/readyz"); err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: /readyz not 200 after %v\n%s", r.name, readyTimeout, r.log.TailBlock(30))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// signal sends sig to the running process.
func (r *replica) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(sig)
	}
}

// kill SIGKILLs the process and waits for it.
func (r *replica) kill() {
	r.signal(syscall.SIGKILL)
	if r.done != nil {
		<-r.done
	}
}

// running reports whether the process is still alive.
func (r *replica) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// waitExit waits for the process to exit and returns its error (nil for
// exit status 0); it fails the test after timeout.
func (r *replica) waitExit(timeout time.Duration) error {
	t := r.c.t
	t.Helper()
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.exitErr
	case <-time.After(timeout):
		t.Fatalf("replica %s did not exit within %v\n%s", r.name, timeout, r.log.TailBlock(30))
		return nil
	}
}

// get fetches a path of the replica's operations endpoint.
func (r *replica) get(path string) (int, string, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + r.http + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), err
}

// metrics returns the replica's Prometheus samples, by series
// (`name{labels}` as exposed).
func (r *replica) metrics() map[string]float64 {
	t := r.c.t
	t.Helper()
	code, body, err := r.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("replica %s /metrics: %d %v", r.name, code, err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// sumMetric adds the samples of one metric (all label sets) whose labels
// contain every one of labels (`result="ok"`).
func sumMetric(m map[string]float64, name string, labels ...string) float64 {
	var s float64
	for series, v := range m {
		n, lbl, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(lbl, l)
		}
		if ok {
			s += v
		}
	}
	return s
}

// providerCalls is the number of token validations that reached the
// provider, summed over the running replicas (cache misses: the histogram
// of timed calls inside the cache).
func (c *cluster) providerCalls() float64 {
	var n float64
	for _, r := range c.reps {
		if r.running() {
			n += sumMetric(r.metrics(), "mailgate_token_validation_seconds_count")
		}
	}
	return n
}

// trustFile returns a client TLS configuration trusting only the
// certificate in file, for ServerName 127.0.0.1.
func trustFile(t *testing.T, file string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// client is a line-based mail client connection over TLS, through HAProxy,
// from a loopback address of its own. Its methods return errors (they run
// in load goroutines too); every read and write has a deadline.
type client struct {
	src string
	c   net.Conn
	br  *bufio.Reader
}

// dialClient connects from src to addr and runs the TLS handshake.
func dialClient(src, addr string, conf *tls.Config) (*client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: ioTimeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, src, err)
	}
	raw.SetDeadline(time.Now().Add(ioTimeout))
	tc := tls.Client(raw, conf)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s from %s: %w", addr, src, err)
	}
	return &client{src: src, c: tc, br: bufio.NewReader(tc)}, nil
}

func (c *client) Close() error { return c.c.Close() }

// send writes s (CRLF added) within ioTimeout.
func (c *client) send(s string) error {
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(c.c, s+"\r\n")
	return err
}

// line reads one line (without CRLF) within ioTimeout.
func (c *client) line() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(s) > 64<<10 {
		return "", errors.New("reply line too long")
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// imapTagged reads until the tagged reply of tag; a continuation request
// ("+ ...", the RFC 7628 error challenge) is answered with an empty line.
func (c *client) imapTagged(tag string) (string, error) {
	for {
		l, err := c.line()
		if err != nil {
			return "", err
		}
		switch {
		case strings.HasPrefix(l, tag+" "):
			return l, nil
		case strings.HasPrefix(l, "+"):
			if err := c.send(""); err != nil {
				return "", err
			}
		}
	}
}

// imapCmd sends "tag cmd" and returns the tagged reply, or an error if it
// is not OK.
func (c *client) imapCmd(tag, cmd string) (string, error) {
	if err := c.send(tag + " " + cmd); err != nil {
		return "", err
	}
	r, err := c.imapTagged(tag)
	if err != nil {
		return "", fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	if !strings.HasPrefix(r, tag+" OK") {
		return r, fmt.Errorf("%s: %s", strings.Fields(cmd)[0], r)
	}
	return r, nil
}

// imapLogin connects from src to addr and authenticates with XOAUTH2;
// it returns the tagged reply whatever it is (err only for I/O).
func imapLogin(src, addr string, conf *tls.Config, user, token string) (*client, string, error) {
	c, err := dialClient(src, addr, conf)
	if err != nil {
		return nil, "", err
	}
	if g, err := c.line(); err != nil || !strings.HasPrefix(g, "* OK") {
		c.Close()
		return nil, "", fmt.Errorf("IMAP greeting from %s: %q %v", addr, g, err)
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodeXOAUTH2(user, token))
	if err := c.send("a1 AUTHENTICATE XOAUTH2 " + ir); err != nil {
		c.Close()
		return nil, "", err
	}
	r, err := c.imapTagged("a1")
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("AUTHENTICATE: %w", err)
	}
	return c, r, nil
}

// smtpReply reads a (multi-line) SMTP reply and returns its last line.
func (c *client) smtpReply() (string, error) {
	for {
		l, err := c.line()
		if err != nil {
			return "", err
		}
		if len(l) < 4 || l[3] != '-' {
			return l, nil
		}
	}
}

// smtpCmd sends cmd and expects a reply with code.
func (c *client) smtpCmd(cmd, code string) (string, error) {
	if err := c.send(cmd); err != nil {
		return "", err
	}
	r, err := c.smtpReply()
	if err != nil {
		return "", fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	if !strings.HasPrefix(r, code) {
		return r, fmt.Errorf("%s: %s", strings.Fields(cmd)[0], r)
	}
	return r, nil
}

// smtpLogin connects from src to addr (submissions), says EHLO and
// authenticates with XOAUTH2.
func smtpLogin(src, addr string, conf *tls.Config, user, token string) (*client, error) {
	c, err := dialClient(src, addr, conf)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*client, error) { c.Close(); return nil, err }
	if g, err := c.smtpReply(); err != nil || !strings.HasPrefix(g, "220") {
		return fail(fmt.Errorf("SMTP greeting from %s: %q %v", addr, g, err))
	}
	if _, err := c.smtpCmd("EHLO client.test", "250"); err != nil {
		return fail(err)
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodeXOAUTH2(user, token))
	if _, err := c.smtpCmd("AUTH XOAUTH2 "+ir, "235"); err != nil {
		return fail(err)
	}
	return c, nil
}

// errBeforeDot marks an SMTP transaction that failed before the end of
// its data was sent: the server cannot have accepted the message.
var errBeforeDot = errors.New("failed before the end of data")

// smtpSend runs one transaction and returns the final reply ("250 2.0.0
// Ok: queued as ..."). An error wrapping errBeforeDot means the final dot
// was never sent.
func (c *client) smtpSend(from, to string, msg []byte) (string, error) {
	for _, s := range [][2]string{{"MAIL FROM:<" + from + ">", "250"}, {"RCPT TO:<" + to + ">", "250"}, {"DATA", "354"}} {
		if _, err := c.smtpCmd(s[0], s[1]); err != nil {
			return "", fmt.Errorf("%w: %w", errBeforeDot, err)
		}
	}
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(msg), "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return "", fmt.Errorf("%w: %w", errBeforeDot, err)
	}
	// From here on the server may have the whole message.
	if _, err := io.WriteString(c.c, ".\r\n"); err != nil {
		return "", fmt.Errorf("end of data: %w", err)
	}
	r, err := c.smtpReply()
	if err != nil {
		return "", fmt.Errorf("reply to the end of data: %w", err)
	}
	if !strings.HasPrefix(r, "250") {
		return r, fmt.Errorf("end of data: %s", r)
	}
	return r, nil
}

// message returns a small message with the given Message-ID (without <>).
func message(from, to, id, subject string) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\nbody of %s\r\n",
		from, to, subject, id, time.Now().Format(time.RFC1123Z), id))
}

// maildirMessageIDs counts the Message-IDs starting with prefix in user's
// INBOX (new/ and cur/). Dovecot moves files from new/ to cur/ while
// sessions run, so call it when no session is open; it scans until two
// scans in a row agree.
func maildirMessageIDs(t *testing.T, dc *testenv.Dovecot, user, prefix string) map[string]int {
	t.Helper()
	scan := func() map[string]int {
		counts := map[string]int{}
		for _, sub := range []string{"new", "cur"} {
			files, _ := filepath.Glob(filepath.Join(dc.MaildirFor(user), sub, "*"))
			for _, f := range files {
				if id := messageID(f); strings.HasPrefix(id, prefix) {
					counts[id]++
				}
			}
		}
		return counts
	}
	prev := scan()
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		cur := scan()
		if equalCounts(prev, cur) {
			return cur
		}
		prev = cur
	}
	t.Fatalf("the Maildir of %s keeps changing", user)
	return nil
}

// messageID returns the Message-ID (without <>) in a message file's header.
func messageID(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l == "\r" {
			return ""
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Message-ID") {
			return strings.Trim(strings.TrimSpace(v), "<>")
		}
	}
	return ""
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// postfixQueued returns the queue files Postfix holds (maildrop,
// incoming, active, deferred, hold), as paths under its spool.
func postfixQueued(pf *testenv.Postfix) []string {
	var files []string
	spool := filepath.Join(pf.Dir, "spool")
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(spool, q), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(spool, p)
				files = append(files, rel)
			}
			return nil
		})
	}
	return files
}

// waitFor polls cond every 50 ms until it is true; it fails the test with
// what() after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %s", timeout, what())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
