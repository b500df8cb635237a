// Command mgcluster measures mailgate scaled out behind HAProxy on one
// machine: sustained cached-token logins per second and idle sessions held
// through HAProxy (TCP mode, send-proxy-v2, /readyz checks) with one and
// with three replicas sharing a Redis, and the latency one login gains from
// Redis (the shared throttle's and cache's round trips).
//
// It starts its own Hydra, Dovecot (tuned for many sessions), Redis,
// HAProxy and mailgate replicas, all on loopback addresses, and needs root
// like internal/testenv. Clients come from addresses of their own in
// 127.0.0.0/8. It exits 1 when a login or session failed.
//
//	mgcluster -mailgate /tmp/mailgate -replicas 1,3 -logins 20s -sessions 1000 -out report.md
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/report"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/bench/internal/stats"
	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	users    = 100
	openConc = 32
	// lbSource is HAProxy's address towards the replicas, the only one
	// they take PROXY headers from.
	lbSource     = "127.0.0.250"
	startTimeout = 90 * time.Second
	// Client address blocks (see clientAddr).
	loginAddrs = 1 // 127.1.0.x: the login workers
	idleAddrs  = 2 // 127.2.x.y: the idle sessions, sessionsPerAddr each
	rttAddrs   = 3 // 127.3.0.x: the Redis latency runs
	// sessionsPerAddr keeps every client network far below mailgate's and
	// Dovecot's per-address limits.
	sessionsPerAddr = 200
)

type options struct {
	mailgate    string
	replicas    []int
	loginDur    time.Duration
	conc        int
	sessions    int
	rttDur      time.Duration
	out         string
	skipRTT     bool
	skipIdle    bool
	skipLogins  bool
	keepWorkDir bool
	reps        int
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("[mgcluster] ")
	var o options
	var replicas string
	flag.StringVar(&o.mailgate, "mailgate", "", "mailgate binary (required)")
	flag.StringVar(&replicas, "replicas", "1,3", "replica counts to measure")
	flag.DurationVar(&o.loginDur, "logins", 20*time.Second, "length of each sustained login run (0: skip)")
	flag.IntVar(&o.conc, "concurrency", 16, "clients of the sustained login runs")
	flag.IntVar(&o.sessions, "sessions", 1000, "idle sessions to open through HAProxy (0: skip)")
	flag.DurationVar(&o.rttDur, "redis-logins", 10*time.Second, "length of the Redis latency comparison (0: skip)")
	flag.IntVar(&o.reps, "reps", 3, "login runs per replica count, alternating between the replica counts")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	flag.BoolVar(&o.keepWorkDir, "keep", false, "keep the work directory (configurations, logs)")
	flag.Parse()
	if o.mailgate == "" {
		log.Fatal("-mailgate is required")
	}
	for _, f := range strings.Split(replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("-replicas: %q", f)
		}
		o.replicas = append(o.replicas, n)
	}
	o.skipLogins, o.skipIdle, o.skipRTT = o.loginDur <= 0, o.sessions <= 0, o.rttDur <= 0
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		report.Print(rep.markdown(), o.out)
	}
	if err != nil {
		log.Printf("FAILED: %v", err)
		stop()
		os.Exit(1)
	}
}

// benchRig is what every measurement shares.
type benchRig struct {
	o        options
	dir      string
	hydra    *testenv.Hydra
	dc       *testenv.Dovecot
	redis    *testenv.Redis
	names    []string
	tokens   map[string]string
	certFile string
	keyFile  string
	pwFile   string
	certPEM  []byte // what clients trust
}

func run(ctx context.Context, o options) (*reportData, error) {
	if _, err := testenv.Check(testenv.PartDovecot, testenv.PartHydra); err != nil {
		return nil, err
	}
	if _, err := testenv.HAProxyBinary(); err != nil {
		return nil, err
	}
	if _, err := proc.RaiseNoFile(); err != nil {
		log.Printf("cannot raise the open-files limit: %v", err)
	}
	dir, err := os.MkdirTemp("", "mgcluster-")
	if err != nil {
		return nil, err
	}
	if o.keepWorkDir {
		log.Printf("work directory: %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	r := &benchRig{o: o, dir: dir}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	log.Printf("starting Hydra, Dovecot and Redis")
	if r.hydra, err = testenv.NewHydra(sctx, testenv.HydraOptions{AccessTokenLifespan: 4 * time.Hour}); err != nil {
		return nil, err
	}
	defer r.hydra.Stop()
	accounts := rig.LoadUsers(users)
	if r.dc, err = testenv.NewDovecot(sctx, testenv.DovecotOptions{Users: accounts, ExtraConfig: rig.IdleDovecotExtra}); err != nil {
		return nil, err
	}
	defer r.dc.Stop()
	if r.redis, err = testenv.NewRedis(sctx, testenv.RedisOptions{}); err != nil {
		return nil, err
	}
	defer r.redis.Close()
	for _, a := range accounts {
		r.names = append(r.names, a.Name)
	}
	log.Printf("minting %d tokens", len(r.names))
	if r.tokens, err = rig.MintTokens(ctx, r.hydra, r.names, 1); err != nil {
		return nil, err
	}
	if r.certFile, r.keyFile, err = certs.WritePEM(dir, "127.0.0.1"); err != nil {
		return nil, err
	}
	r.pwFile = filepath.Join(dir, "master-password")
	if err := os.WriteFile(r.pwFile, []byte(r.dc.MasterPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(r.certFile)
	if err != nil {
		return nil, err
	}
	r.certPEM = pem

	rep := &reportData{StartedAt: time.Now(), Version: strings.TrimSpace(rig.FirstLine(o.mailgate, "version")),
		CPUs: runtime.NumCPU(), FDLimit: rig.NoFileHardLimit(), Concurrency: o.conc, Reps: o.reps, LoginDur: o.loginDur}
	rep.HAProxyVersion = strings.TrimSpace(rig.FirstLine("haproxy", "-v"))
	var failed []string
	// Every cluster runs at once (the idle ones cost nothing), so that the
	// login runs can alternate between them: a change in the machine's load
	// then falls on all of them alike.
	var clusters []*cluster
	defer func() {
		for _, c := range clusters {
			c.stop()
		}
	}()
	for _, n := range o.replicas {
		if o.skipLogins && o.skipIdle {
			break
		}
		c, err := r.startCluster(ctx, n)
		if err != nil {
			return rep, err
		}
		clusters = append(clusters, c)
		rep.Clusters = append(rep.Clusters, clusterResult{Replicas: n})
	}
	for k := 0; !o.skipLogins && k < o.reps; k++ {
		for i, c := range clusters {
			log.Printf("%d replica(s): cached-token logins for %s with %d clients (run %d of %d)", c.n, o.loginDur, o.conc, k+1, o.reps)
			rep.Clusters[i].Logins = append(rep.Clusters[i].Logins, r.loginRun(ctx, c))
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	for i, c := range clusters {
		if !o.skipIdle {
			rep.Clusters[i].Idle = r.idleRun(ctx, c)
		}
		c.stop()
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	for _, c := range rep.Clusters {
		failed = append(failed, c.failures()...)
	}
	if !o.skipRTT {
		res, err := r.measureRedisLatency(ctx)
		if err != nil {
			return rep, err
		}
		rep.Redis = res
		failed = append(failed, res.failures()...)
	}
	if len(failed) > 0 {
		return rep, errors.New(strings.Join(failed, "; "))
	}
	return rep, nil
}

// clientAddr is the i-th client address of block (see the *Addrs constants).
func clientAddr(block, i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, byte(block), byte(i>>8), byte(10+i%200))}
}

func (r *benchRig) tls() *imapc.Options {
	tc := rig.ClientTLS(r.certPEM)
	tc.ServerName = "127.0.0.1" // the replicas' certificate
	return &imapc.Options{TLS: tc, Timeout: time.Minute}
}

// replica is one `mailgate serve` process.
type replica struct {
	name, imaps, http, log string
	cmd                    *exec.Cmd
	done                   chan struct{}
}

func (p *replica) pid() int { return p.cmd.Process.Pid }

func (p *replica) stop() {
	syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// startReplica writes a configuration and starts mailgate; withRedis sets
// cluster.redis, trustLB proxy_protocol.trusted_networks (HAProxy).
func (r *benchRig) startReplica(ctx context.Context, name string, withRedis, trustLB bool) (*replica, error) {
	p := &replica{name: name, log: filepath.Join(r.dir, name+".log"), done: make(chan struct{})}
	var err error
	if p.imaps, err = rig.FreePort(); err != nil {
		return nil, err
	}
	if p.http, err = rig.FreePort(); err != nil {
		return nil, err
	}
	extra := ""
	if trustLB {
		extra += fmt.Sprintf("proxy_protocol: {trusted_networks: [%s/32]}\n", lbSource)
	}
	extra += "cluster:\n  drain_delay: 0s\n"
	if withRedis {
		extra += fmt.Sprintf("  redis: {address: %q, key_prefix: \"mgcluster:\", timeout: 250ms, when_down: local}\n", r.redis.Addr)
	}
	conf := fmt.Sprintf(`log: {level: warn, format: text}
tls: {cert_file: %q, key_file: %q}
master: {user: %q, password_file: %q}
imap:
  listen_tls: %q
  listen_starttls: ""
  backend: {address: %q, tls: none, client_ip: id}
smtp: {listen_tls: "", listen_starttls: ""}
pop3: {listen_tls: "", listen_starttls: ""}
sieve: {listen: ""}
oauth2: {mode: userinfo, userinfo_url: %q, cache_ttl: 30m}
limits:
  max_connections_per_ip: 30000
  connection_rate_per_ip: 0
  max_prelogin_per_ip: 0
  auth_failures_per_ip: 100000
  idle_timeout: 31m
http: {listen: %q}
%s`, r.certFile, r.keyFile, r.dc.MasterUser, r.pwFile, p.imaps, r.dc.IMAPAddr, r.hydra.UserinfoURL, p.http, extra)
	cfg := filepath.Join(r.dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p.cmd = exec.Command(r.o.mailgate, "serve", "--config", cfg)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := imapc.Dial(p.imaps, *r.tls())
		if err == nil {
			c.Close()
			return p, nil
		}
		if cv := (*tls.CertificateVerificationError)(nil); errors.As(err, &cv) {
			p.stop()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited during start-up; its log:\n%s", name, tail(p.log, 15))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready: %v", name, err)
		}
	}
}

// clusterResult is the measurements of one replica count.
type clusterResult struct {
	Replicas int
	Logins   []loginResult // one per repetition
	Idle     *idleResult
}

type loginResult struct {
	Dur            time.Duration
	Logins, Errors int
	PerSecond      float64
	P50, P99       float64
	FirstErr       string
	// CPU seconds per 1,000 logins, by component, and the machine's busy
	// cores over the run.
	CPUMailgate, CPUHAProxy, CPUDovecot, CPUClient float64
	BusyCores                                      float64
	// OtherCores is the machine's busy cores that none of the measured
	// components used (the provider, Redis, and anything else running on
	// the machine: a foreign load shows here).
	OtherCores float64
	// RedisPerLogin is the replicas' Redis requests (round trips) per login.
	RedisPerLogin float64
}

type idleResult struct {
	Wanted, Opened, Failed int
	FirstErr               string
	OpenTook               time.Duration
	// KiB per session (RSS; PSS for mailgate) and descriptors per session.
	MailgateRSS, MailgatePSS, HAProxyRSS float64
	MailgateFDs, HAProxyFDs              float64
	BadClose                             int
}

func (c clusterResult) failures() []string {
	var out []string
	for _, l := range c.Logins {
		if l.Errors > 0 {
			out = append(out, fmt.Sprintf("%d replicas: %d of %d logins failed (first: %s)", c.Replicas, l.Errors, l.Logins, l.FirstErr))
		}
	}
	if i := c.Idle; i != nil && i.Failed > 0 {
		out = append(out, fmt.Sprintf("%d replicas: %d of %d sessions failed (first: %s)", c.Replicas, i.Failed, i.Wanted, i.FirstErr))
	}
	return out
}

// cluster is n replicas behind an HAProxy of their own.
type cluster struct {
	n    int
	reps []*replica
	lb   *testenv.HAProxy
	addr string // HAProxy's IMAPS frontend
}

func (c *cluster) stop() {
	if c.lb != nil {
		c.lb.Stop()
	}
	for _, p := range c.reps {
		p.stop()
	}
}

func (c *cluster) pids() []int {
	var pids []int
	for _, p := range c.reps {
		pids = append(pids, p.pid())
	}
	return pids
}

// login logs in as the i-th user on c.
func (r *benchRig) login(cl *imapc.Conn, i int) error {
	u := r.names[i%len(r.names)]
	return cl.AuthXOAUTH2(u, r.tokens[u])
}

// startCluster starts n replicas (cluster.redis set, PROXY protocol from
// HAProxy) and HAProxy in front of them, and warms every replica's token
// cache with every token.
func (r *benchRig) startCluster(ctx context.Context, n int) (*cluster, error) {
	log.Printf("starting %d replica(s) behind HAProxy", n)
	c := &cluster{n: n}
	var servers []testenv.HAProxyServer
	for i := range n {
		p, err := r.startReplica(ctx, fmt.Sprintf("r%d-of-%d", i+1, n), true, true)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.reps = append(c.reps, p)
		servers = append(servers, testenv.HAProxyServer{Name: fmt.Sprintf("r%d", i+1), Addr: p.imaps, CheckAddr: p.http})
	}
	var err error
	c.lb, err = testenv.NewHAProxy(ctx, testenv.HAProxyOptions{
		Source: lbSource, MaxConn: r.o.sessions + 2*r.o.conc + 100, CheckInterval: time.Second,
		Frontends: []testenv.HAProxyFrontend{{Name: "imaps", Servers: servers, SendProxyV2: true, HealthPath: "/readyz"}},
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	if err := waitUp(ctx, c.lb, "imaps", n); err != nil {
		c.stop()
		return nil, err
	}
	c.addr = c.lb.Addr("imaps")
	for i := range len(r.names) * n { // round robin: every replica sees every token
		o := *r.tls()
		o.LocalAddr = clientAddr(loginAddrs, i%r.o.conc)
		cl, err := imapc.Dial(c.addr, o)
		if err == nil {
			err = r.login(cl, i/n)
			cl.Logout()
			cl.Close()
		}
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	return c, nil
}

// loginRun runs the sustained cached-token logins through c.
func (r *benchRig) loginRun(ctx context.Context, c *cluster) loginResult {
	req0 := redisRequests(ctx, r.redis)
	master, dcPIDs, _ := rig.DovecotPIDs(r.dc)
	cpu := func() [4]float64 {
		return [4]float64{proc.SumCPU(c.pids(), 0), proc.SumCPU([]int{c.lb.PID()}, 0), proc.SumCPU(dcPIDs, master), selfCPU()}
	}
	before, busy0 := cpu(), machineBusy()
	lr := load.RunLogins(ctx, r.o.conc, r.o.loginDur, 0, func(w, i int) error {
		o := *r.tls()
		o.LocalAddr = clientAddr(loginAddrs, w)
		cl, err := imapc.Dial(c.addr, o)
		if err != nil {
			return err
		}
		defer cl.Close()
		if err := r.login(cl, w*1000+i); err != nil {
			return err
		}
		return cl.Logout()
	})
	master, dcPIDs, _ = rig.DovecotPIDs(r.dc) // reaped children count in the master's
	after, busy1 := cpu(), machineBusy()
	res := loginResult{Dur: lr.Elapsed, Logins: lr.Logins, Errors: lr.Errors, PerSecond: lr.PerSecond(), P50: lr.P(50), P99: lr.P(99),
		BusyCores: (busy1 - busy0) / lr.Elapsed.Seconds()}
	var own float64
	for i := range after {
		own += after[i] - before[i]
	}
	res.OtherCores = res.BusyCores - own/lr.Elapsed.Seconds()
	if ok := float64(lr.Logins-lr.Errors) / 1000; ok > 0 {
		res.CPUMailgate = (after[0] - before[0]) / ok
		res.CPUHAProxy = (after[1] - before[1]) / ok
		res.CPUDovecot = (after[2] - before[2]) / ok
		res.CPUClient = (after[3] - before[3]) / ok
	}
	if lr.FirstErr != nil {
		res.FirstErr = lr.FirstErr.Error()
	}
	res.RedisPerLogin, _ = requestsSince(ctx, r.redis, req0, lr.Logins)
	log.Printf("%d replica(s): %.0f logins/s, p50 %.1f ms, p99 %.1f ms, %d errors, %.2f cores busy (%.2f by other processes), %.1f Redis requests per login",
		c.n, res.PerSecond, res.P50, res.P99, res.Errors, res.BusyCores, res.OtherCores, res.RedisPerLogin)
	return res
}

// idleRun opens r.o.sessions idle sessions through c and measures what
// they cost mailgate and HAProxy.
func (r *benchRig) idleRun(ctx context.Context, c *cluster) *idleResult {
	log.Printf("%d replica(s): opening %d idle sessions through HAProxy", c.n, r.o.sessions)
	ir := &idleResult{Wanted: r.o.sessions}
	fds := func() (mg, lb int) {
		for _, pid := range c.pids() {
			f, _ := proc.FDs(pid)
			mg += f
		}
		lb, _ = proc.FDs(c.lb.PID())
		return
	}
	mg0, lb0 := fds()
	open := func(i int) (*imapc.Conn, error) {
		o := *r.tls()
		o.LocalAddr = clientAddr(idleAddrs, i/sessionsPerAddr)
		return imapc.OpenIdle(c.addr, o, func(cl *imapc.Conn) error { return r.login(cl, i) })
	}
	targets := []load.Target{{Name: "mailgate", PIDs: c.pids}, {Name: "haproxy", PIDs: func() []int { return []int{c.lb.PID()} }}}
	rep := load.MeasureIdle(ctx, r.o.sessions, openConc, open, targets, func(opened int) {
		if opened == 0 {
			return
		}
		mg1, lb1 := fds()
		ir.MailgateFDs = float64(mg1-mg0) / float64(opened)
		ir.HAProxyFDs = float64(lb1-lb0) / float64(opened)
	})
	ir.Opened, ir.Failed, ir.OpenTook, ir.BadClose = rep.Opened, rep.Failed, rep.OpenTook, rep.BadClose
	if rep.FirstErr != nil {
		ir.FirstErr = rep.FirstErr.Error()
	}
	ir.MailgatePSS, ir.MailgateRSS = rep.PerSession("mailgate")
	_, ir.HAProxyRSS = rep.PerSession("haproxy")
	log.Printf("%d replica(s): %d sessions in %v; mailgate %.1f KiB RSS and %.2f fds per session, HAProxy %.1f KiB and %.2f fds",
		c.n, ir.Opened, ir.OpenTook.Round(100*time.Millisecond), ir.MailgateRSS, ir.MailgateFDs, ir.HAProxyRSS, ir.HAProxyFDs)
	return ir
}

// waitUp waits until HAProxy has n servers of frontend UP after a check.
func waitUp(ctx context.Context, lb *testenv.HAProxy, frontend string, n int) error {
	deadline := time.Now().Add(startTimeout)
	for {
		st, err := lb.Servers(ctx, frontend)
		up := 0
		for _, s := range st {
			if s.Status == "UP" && strings.HasSuffix(s.CheckStatus, "OK") {
				up++
			}
		}
		if err == nil && up == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HAProxy: %d of %d servers up (%v, %v)\n%s", up, n, st, err, lb.Log.TailBlock(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// latencyResult compares one replica's login latency without and with
// cluster.redis (one client, cached tokens, no HAProxy in the way).
type latencyResult struct {
	Dur                       time.Duration
	WithoutP50, WithP50       float64 // ms
	WithoutMean, WithMean     float64
	WithoutLogins, WithLogins int
	Errors                    int
	FirstErr                  string
	RequestsPerLogin          float64 // Redis requests per login with cluster.redis
	RequestsByCommand         string  // the same by command ("EVALSHA 2.0, GET 1.0")
	PingP50                   float64 // ms, a PING round trip from this driver
	// ReadP50 and ForgetP50 are the median latencies (ms) of the throttle's
	// two calls per successful token login (auth/redisstore Penalties: a
	// read before, a forget after), made from this driver.
	ReadP50, ForgetP50 float64
	Unused             bool // no Redis request during the run with cluster.redis
}

func (l *latencyResult) failures() []string {
	if l.Errors > 0 {
		return []string{fmt.Sprintf("Redis latency runs: %d logins failed (first: %s)", l.Errors, l.FirstErr)}
	}
	return nil
}

func (r *benchRig) measureRedisLatency(ctx context.Context) (*latencyResult, error) {
	res := &latencyResult{Dur: r.o.rttDur}
	// Two replicas at once, one without and one with cluster.redis; one
	// client alternates between them, so that a change in the machine's
	// load falls on both alike.
	local, err := r.startReplica(ctx, "latency-local", false, false)
	if err != nil {
		return nil, err
	}
	defer local.stop()
	shared, err := r.startReplica(ctx, "latency-redis", true, false)
	if err != nil {
		return nil, err
	}
	defer shared.stop()
	login := func(p *replica, i int) (time.Duration, error) {
		start := time.Now()
		o := *r.tls()
		o.LocalAddr = clientAddr(rttAddrs, 0)
		c, err := imapc.Dial(p.imaps, o)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		u := r.names[i%len(r.names)]
		if err := c.AuthXOAUTH2(u, r.tokens[u]); err != nil {
			return 0, err
		}
		if err := c.Logout(); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	for i := range r.names { // warm both caches
		for _, p := range []*replica{local, shared} {
			if _, err := login(p, i); err != nil {
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	log.Printf("login latency of one replica without and one with Redis, alternating, %s", r.o.rttDur)
	var without, with []time.Duration
	req0 := redisRequests(ctx, r.redis)
	deadline := time.Now().Add(r.o.rttDur)
	for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		p, into := local, &without
		if i%2 == 1 {
			p, into = shared, &with
		}
		d, err := login(p, i/2)
		if err != nil {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = fmt.Sprintf("%s: %v", p.name, err)
			}
			continue
		}
		*into = append(*into, d)
	}
	res.WithoutLogins, res.WithLogins = len(without), len(with)
	res.RequestsPerLogin, res.RequestsByCommand = requestsSince(ctx, r.redis, req0, len(with))
	res.WithoutP50, res.WithP50 = ms(stats.Percentile(without, 50)), ms(stats.Percentile(with, 50))
	res.WithoutMean, res.WithMean = ms(mean(without)), ms(mean(with))
	res.Unused = res.RequestsPerLogin < 0.5
	res.PingP50 = redisPing(ctx, r.redis)
	if res.ReadP50, res.ForgetP50, err = penaltyLatency(ctx, r.redis); err != nil {
		return nil, err
	}
	log.Printf("login p50 %.2f ms without Redis, %.2f ms with (%.1f Redis requests per login; PING p50 %.3f ms)",
		res.WithoutP50, res.WithP50, res.RequestsPerLogin, res.PingP50)
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}

// redisRequests is how many requests clients sent Redis so far, by
// command: the calls of EVALSHA and EVAL (the throttle's script) and GET
// and SET (the token cache) in INFO commandstats. The commands the script
// runs inside Redis (HMGET, HSET, PEXPIRE, DEL, TIME) are no round trips;
// the cache's DEL (a revoked token) cannot be told from the script's and is
// left out. Nil when Redis does not answer.
func redisRequests(ctx context.Context, rd *testenv.Redis) map[string]int64 {
	c := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, l := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":calls=")
		name = strings.TrimPrefix(name, "cmdstat_")
		if !ok || !slices.Contains(redisRoundTrips, name) {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		out[name], _ = strconv.ParseInt(calls, 10, 64)
	}
	return out
}

// redisRoundTrips are the commands redisRequests counts.
var redisRoundTrips = []string{"evalsha", "eval", "get", "set"}

// requestsSince returns the requests after before, in all and as
// "EVALSHA 2.0, GET 1.0" per n logins.
func requestsSince(ctx context.Context, rd *testenv.Redis, before map[string]int64, n int) (float64, string) {
	after := redisRequests(ctx, rd)
	if n == 0 || after == nil {
		return 0, ""
	}
	var total int64
	var parts []string
	for _, cmd := range redisRoundTrips {
		d := after[cmd] - before[cmd]
		total += d
		if d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f", strings.ToUpper(cmd), float64(d)/float64(n)))
		}
	}
	return float64(total) / float64(n), strings.Join(parts, ", ")
}

// penaltyLatency times auth/redisstore's Penalties as a token login uses
// it (one read op before, one forget op after), 2,000 of each: the medians
// in ms.
func penaltyLatency(ctx context.Context, rd *testenv.Redis) (read, forget float64, err error) {
	st, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{rd.Addr}, KeyPrefix: "mgcluster-latency:"})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	timeOp := func(kind auth.PenaltyKind) (float64, error) {
		var ds []time.Duration
		for i := range 2000 {
			op := auth.PenaltyOp{Key: fmt.Sprintf("ip:127.3.%d.%d", i>>8&255, i&255), Kind: kind, Now: time.Now(),
				Rate: 10.0 / 60, BlockAt: 30, BlockFor: 5 * time.Minute}
			t0 := time.Now()
			if _, err := st.Penalties(ctx, op); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(t0))
		}
		return ms(stats.Percentile(ds, 50)), nil
	}
	if read, err = timeOp(auth.PenaltyRead); err != nil {
		return 0, 0, err
	}
	forget, err = timeOp(auth.PenaltyForget)
	return read, forget, err
}

// redisPing is the median of 1,000 PING round trips on one connection, in ms.
func redisPing(ctx context.Context, rd *testenv.Redis) float64 {
	c := redis.NewClient(&redis.Options{Addr: rd.Addr, PoolSize: 1})
	defer c.Close()
	var ds []time.Duration
	for range 1000 {
		t0 := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			return -1
		}
		ds = append(ds, time.Since(t0))
	}
	return ms(stats.Percentile(ds, 50))
}

// selfCPU is this process's CPU time in seconds (the clients' TLS).
func selfCPU() float64 {
	st, err := proc.ReadStat(os.Getpid())
	if err != nil {
		return 0
	}
	return st.CPU
}

// machineBusy is the machine's non-idle CPU time in seconds (/proc/stat).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return busy / 100 // USER_HZ
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

type reportData struct {
	Version, HAProxyVersion string
	StartedAt               time.Time
	CPUs                    int
	FDLimit                 uint64
	Concurrency, Reps       int
	LoginDur                time.Duration
	Clusters                []clusterResult
	Redis                   *latencyResult
}

func (r *reportData) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## mgcluster: mailgate replicas behind HAProxy (%s, %s)\n\n", r.Version, r.StartedAt.Format("2006-01-02 15:04 MST"))
	hv, _, _ := strings.Cut(r.HAProxyVersion, " - ")
	fmt.Fprintf(&b, "One machine, %d CPUs, open-files limit %d: the clients (this driver, Go crypto/tls, TLS 1.3, no resumption), %s (TCP mode, send-proxy-v2, `/readyz` checks every second), the replicas (`mailgate serve`, IMAPS only, backend leg plain IMAP with ID, `cache_ttl: 30m`, `cluster.redis` set), Redis %s, Dovecot (`internal/testenv`, tuned for many sessions: bench/internal/rig.IdleDovecotExtra) and Hydra all share the same cores. Clients come from their own 127.x addresses (HAProxy passes them on in the PROXY header).\n\n",
		r.CPUs, r.FDLimit, hv, "7")
	if slices.ContainsFunc(r.Clusters, func(c clusterResult) bool { return len(c.Logins) > 0 }) {
		fmt.Fprintf(&b, "### Sustained cached-token logins through HAProxy (%d clients, closed loop: TCP + TLS + XOAUTH2 + LOGOUT, a new connection each)\n\n", r.Concurrency)
		fmt.Fprintf(&b, "%d runs of %s per replica count, alternating between the counts; each cell is the median [min–max] of the runs.\n\n", r.Reps, r.LoginDur)
		b.WriteString("| replicas | logins/s | p50 | p99 | errors | CPU per 1,000 logins: mailgate (all replicas) / HAProxy / Dovecot / clients | cores busy (of " + strconv.Itoa(r.CPUs) + "): all / by other processes | Redis requests per login |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Clusters {
			if len(c.Logins) == 0 {
				continue
			}
			col := func(f func(loginResult) float64, format string) string {
				var v []float64
				for _, l := range c.Logins {
					v = append(v, f(l))
				}
				slices.Sort(v)
				return fmt.Sprintf(format+" ["+format+"–"+format+"]", v[len(v)/2], v[0], v[len(v)-1])
			}
			med := func(f func(loginResult) float64) float64 {
				var v []float64
				for _, l := range c.Logins {
					v = append(v, f(l))
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			var errs, logins int
			for _, l := range c.Logins {
				errs, logins = errs+l.Errors, logins+l.Logins
			}
			fmt.Fprintf(&b, "| %d | **%s** | %s ms | %s ms | %d of %d | %.2f / %.2f / %.2f / %.2f s | %.2f / %.2f | %.1f |\n",
				c.Replicas, col(func(l loginResult) float64 { return l.PerSecond }, "%.0f"),
				col(func(l loginResult) float64 { return l.P50 }, "%.0f"), col(func(l loginResult) float64 { return l.P99 }, "%.0f"),
				errs, logins,
				med(func(l loginResult) float64 { return l.CPUMailgate }), med(func(l loginResult) float64 { return l.CPUHAProxy }),
				med(func(l loginResult) float64 { return l.CPUDovecot }), med(func(l loginResult) float64 { return l.CPUClient }),
				med(func(l loginResult) float64 { return l.BusyCores }), med(func(l loginResult) float64 { return l.OtherCores }),
				med(func(l loginResult) float64 { return l.RedisPerLogin }))
		}
		b.WriteString("\n")
	}
	if slices.ContainsFunc(r.Clusters, func(c clusterResult) bool { return c.Idle != nil }) {
		b.WriteString("### Idle sessions in IDLE through HAProxy\n\n")
		b.WriteString("| replicas | sessions | opened in | mailgate RSS per session (all replicas) | mailgate PSS per session | HAProxy RSS per session | fds per session: mailgate / HAProxy | failed |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Clusters {
			if i := c.Idle; i != nil {
				fmt.Fprintf(&b, "| %d | %d | %s | %.1f KiB | %.1f KiB | %.1f KiB | %.2f / %.2f | %d |\n",
					c.Replicas, i.Opened, i.OpenTook.Round(100*time.Millisecond), i.MailgateRSS, i.MailgatePSS, i.HAProxyRSS, i.MailgateFDs, i.HAProxyFDs, i.Failed)
			}
		}
		b.WriteString("\n")
	}
	if l := r.Redis; l != nil {
		fmt.Fprintf(&b, "### What Redis adds to a login\n\nTwo replicas side by side, one without and one with `cluster.redis`; one client logs in to each in turn (a new connection each, no HAProxy, cached tokens) for %s: login p50 **%.2f ms without `cluster.redis`, %.2f ms with it (%+.2f ms)**; means %.2f and %.2f ms (%+.2f ms); %d and %d logins. Redis requests (round trips) per login with it: %.1f (%s). The throttle's two calls per login (auth/redisstore Penalties, timed from the driver on loopback, 2,000 each): read p50 %.3f ms, forget p50 %.3f ms, together **%.2f ms per login**; a bare Redis PING: p50 %.3f ms.\n\n",
			l.Dur, l.WithoutP50, l.WithP50, l.WithP50-l.WithoutP50, l.WithoutMean, l.WithMean, l.WithMean-l.WithoutMean, l.WithoutLogins, l.WithLogins,
			l.RequestsPerLogin, l.RequestsByCommand, l.ReadP50, l.ForgetP50, l.ReadP50+l.ForgetP50, l.PingP50)
		if l.Unused {
			b.WriteString("**Redis was not used by the replicas** (no requests during the run): this mailgate does not wire `cluster.redis` yet, so the difference above is noise, and the cluster rows above ran without shared state.\n\n")
		}
	}
	return b.String()
}
