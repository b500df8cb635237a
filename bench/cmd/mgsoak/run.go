package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/demo"
	"github.com/mailgate/mailgate/internal/testenv"
)

// Source addresses (indexes into 127.0.0.0/8, see load.Loopback).
const (
	sessionAddrs  = 1 << 8  // 127.0.1.0...: IDLE sessions and the warm-up
	probeAddrs    = 3 << 8  // 127.0.3.0...: login probes, one fresh address each
	floodAddrs    = 1 << 16 // 127.1.0.0...: the flood
	measureAddrs  = 2 << 16 // 127.2.0.0...: the pre-login memory measurement
	maxProbes     = 2000
	openConc      = 32
	backTimeout   = 60 * time.Second
	existsTimeout = 30 * time.Second
	sampleEvery   = 200 * time.Millisecond
	tokenTTL      = 4 * time.Hour
)

// env is what all mailgate runs share: the demo backends and the tokens.
type env struct {
	o       options
	dir     string
	backend *rig.Backend
	imap    *demo.IMAPBackend
	smtp    *demo.SMTPBackend
	issuer  *demo.Issuer
	names   []string
	tokens  map[string]string
}

func newEnv(ctx context.Context, o options) (*env, func(), error) {
	e := &env{o: o, tokens: map[string]string{}}
	var err error
	if e.dir, err = os.MkdirTemp("", "mgsoak-"); err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		if e.smtp != nil {
			e.smtp.Close()
		}
		if e.imap != nil {
			e.imap.Close()
		}
		if e.issuer != nil {
			e.issuer.Close()
		}
		if o.keep {
			log.Printf("kept %s", e.dir)
		} else {
			os.RemoveAll(e.dir)
		}
	}
	fail := func(err error) (*env, func(), error) { cleanup(); return nil, nil, err }
	certFile, keyFile, err := certs.WritePEM(e.dir, testenv.ServerName, "127.0.0.1")
	if err != nil {
		return fail(err)
	}
	caPEM, err := os.ReadFile(certFile)
	if err != nil {
		return fail(err)
	}
	for _, u := range rig.LoadUsers(o.users) {
		e.names = append(e.names, u.Name)
	}
	imapLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	master := rand.Text()
	if e.imap, err = demo.StartIMAP(ctx, imapLn, demo.DemoMasterUser, master, e.names...); err != nil {
		return fail(err)
	}
	// The SMTP backend of the pre-login measurement's SMTP listeners, wired
	// as demo.Start does: accepted mail goes into the IMAP mailboxes.
	smtpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	deliver := func(rcpt string, msg []byte) error { return e.imap.Append(rcpt, "INBOX", msg) }
	if e.smtp, err = demo.StartSMTP(ctx, smtpLn, demo.DemoMasterUser, master, deliver, e.names...); err != nil {
		return fail(err)
	}
	issLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	if e.issuer, err = demo.StartIssuer(issLn); err != nil {
		return fail(err)
	}
	for _, n := range e.names {
		if e.tokens[n], err = e.issuer.MintToken(n, tokenTTL); err != nil {
			return fail(err)
		}
	}
	e.backend = &rig.Backend{IMAPAddr: e.imap.Addr().String(), SMTPAddr: e.smtp.Addr().String(), MasterUser: demo.DemoMasterUser, MasterPassword: master,
		CertFile: certFile, KeyFile: keyFile, CAPEM: caPEM}
	return e, cleanup, nil
}

// start starts a mailgate named name with limits (plus the timeouts of
// -prelogin-timeouts): IMAPS and IMAP STARTTLS listeners, and with smtp
// also SMTPS and SMTP submission STARTTLS in front of the demo SMTP backend.
func (e *env) start(ctx context.Context, name string, limits map[string]string, smtp bool) (*rig.Mailgate, rig.Ports, error) {
	l := map[string]string{"idle_timeout": "31m"}
	if t := e.o.holdTimeouts; t > 0 {
		for _, k := range []string{"handshake_timeout", "preauth_timeout", "command_timeout"} {
			l[k] = t.String()
		}
	}
	for k, v := range limits {
		l[k] = v
	}
	be := *e.backend
	if !smtp {
		be.SMTPAddr = ""
	}
	m, err := rig.StartMailgate(ctx, rig.MailgateOptions{
		Binary: e.o.mailgate, Dir: e.dir, Name: name, Backend: &be, STARTTLS: true,
		UserinfoURL: e.issuer.URL() + "/userinfo", CacheTTL: time.Hour, Limits: l,
	})
	if err != nil {
		return nil, rig.Ports{}, err
	}
	pt := rig.Ports{Listeners: []int{rig.PortOf(m.IMAPSAddr), rig.PortOf(m.STARTTLSAddr)},
		Backends: []int{rig.PortOf(e.backend.IMAPAddr)}, Provider: rig.PortOf(e.issuer.URL())}
	if smtp {
		pt.Listeners = append(pt.Listeners, rig.PortOf(m.SMTPSAddr), rig.PortOf(m.SubmissionAddr))
		pt.Backends = append(pt.Backends, rig.PortOf(e.backend.SMTPAddr))
	}
	return m, pt, nil
}

func (e *env) user(i int) string { return e.names[i%len(e.names)] }

// dialLogin opens a TLS connection from source address index src and logs
// in as user i (a cached token once warmed up). greeted is when the
// greeting arrived (after TCP and TLS).
func (e *env) dialLogin(m *rig.Mailgate, src, i int, timeout time.Duration) (c *imapc.Conn, greeted time.Time, err error) {
	c, err = imapc.Dial(m.IMAPSAddr, imapc.Options{TLS: rig.ClientTLS(e.backend.CAPEM), Timeout: timeout,
		LocalAddr: &net.TCPAddr{IP: load.Loopback(src)}})
	if err != nil {
		return nil, time.Time{}, err
	}
	greeted = time.Now()
	if err := c.AuthXOAUTH2(e.user(i), e.tokens[e.user(i)]); err != nil {
		c.Close()
		return nil, greeted, err
	}
	return c, greeted, nil
}

// snapshot is mailgate's state at one moment of the soak.
type snapshot struct {
	Label string
	C     rig.Counts
	Open  float64 // mailgate_connections_open, all listeners (-1: n/a)
}

func snap(m *rig.Mailgate, pt rig.Ports, label string) snapshot {
	s := snapshot{Label: label, C: m.Sample(pt), Open: -1}
	if fam, err := m.MetricFamily("mailgate_connections_open"); err == nil {
		s.Open = rig.Sum(fam)
	}
	return s
}

// peaks tracks the largest values seen by a background sampler.
type peaks struct {
	mu                   sync.Mutex
	fds, goroutines      int
	rss, pss, hwm        int64
	samples              int
	stop                 chan struct{}
	done                 chan struct{}
	exitedDuringSampling atomic.Bool
}

func samplePeaks(m *rig.Mailgate) *peaks {
	p := &peaks{stop: make(chan struct{}), done: make(chan struct{}), goroutines: -1}
	go func() {
		defer close(p.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			fds, _ := proc.FDs(m.PID())
			mem, _ := proc.Memory(m.PID())
			g, gerr := m.Goroutines()
			p.mu.Lock()
			p.samples++
			p.fds = max(p.fds, fds)
			p.rss, p.pss, p.hwm = max(p.rss, mem.RSS), max(p.pss, mem.PSS), max(p.hwm, mem.HWM)
			if gerr == nil {
				p.goroutines = max(p.goroutines, g)
			}
			p.mu.Unlock()
			if m.Exited() {
				p.exitedDuringSampling.Store(true)
				return
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *peaks) finish(label string) snapshot {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return snapshot{Label: label, Open: -1, C: rig.Counts{FDs: p.fds, Goroutines: p.goroutines,
		Mem: proc.Mem{RSS: p.rss, PSS: p.pss, HWM: p.hwm}}}
}

// probeResult is one login probe during the flood.
type probeResult struct {
	Took     time.Duration // to the tagged OK of AUTHENTICATE
	Greeting time.Duration // to the greeting (TCP connect, TLS handshake)
	Err      error
	Opening  bool // the flood was still being opened
}

// prober logs in from a fresh address every period until stopped.
type prober struct {
	mu      sync.Mutex
	results []probeResult
	opening atomic.Bool
	stop    chan struct{}
	done    chan struct{}
}

func (e *env) startProber(m *rig.Mailgate) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	p.opening.Store(true)
	go func() {
		defer close(p.done)
		t := time.NewTicker(e.o.probeEvery)
		defer t.Stop()
		for i := 0; i < maxProbes; i++ {
			opening := p.opening.Load()
			t0 := time.Now()
			c, greeted, err := e.dialLogin(m, probeAddrs+i, i, 5*time.Second)
			r := probeResult{Took: time.Since(t0), Err: err, Opening: opening}
			if !greeted.IsZero() {
				r.Greeting = greeted.Sub(t0)
			}
			if err == nil {
				c.Logout()
			}
			p.mu.Lock()
			p.results = append(p.results, r)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// held is how many probes ran while the flood was held.
func (p *prober) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.results {
		if !r.Opening {
			n++
		}
	}
	return n
}

func (p *prober) finish() []probeResult {
	close(p.stop)
	<-p.done
	return p.results
}

// run is the whole soak; the report is returned also when it failed.
func run(ctx context.Context, o options) (*soakReport, error) {
	rep := &soakReport{o: o, Started: time.Now()}
	lim, err := proc.RaiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("raise open-files limit: %w", err)
	}
	rep.ClientNoFile = int(lim)
	e, cleanup, err := newEnv(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep.Version = rig.FirstLine(o.mailgate, "version")

	if err := e.soak(ctx, rep); err != nil {
		rep.fail("%v", err)
	}
	if o.preloginK > 0 && ctx.Err() == nil {
		if err := e.measurePrelogin(ctx, rep); err != nil {
			rep.fail("pre-login measurement: %v", err)
		}
	}
	if len(rep.Failures) > 0 {
		return rep, errors.New(strings.Join(rep.Failures, "; "))
	}
	return rep, nil
}

// soak runs steps 1-4 against one mailgate.
func (e *env) soak(ctx context.Context, rep *soakReport) error {
	o := e.o
	log.Printf("starting mailgate (soak run)")
	m, pt, err := e.start(ctx, "soak", o.limits, false)
	if err != nil {
		return err
	}
	defer m.Stop()
	rep.SoakConfig, rep.Dropped, rep.CapsLowered = m.ConfigPath, m.Dropped, capsWarning(m)
	rep.MailgateNoFile, _ = proc.NoFileLimit(m.PID())
	alive := func(phase string) error {
		if m.Exited() {
			rep.MailgateExited = phase
			return fmt.Errorf("mailgate exited during %s:\n%s", phase, m.LogTail(15))
		}
		return nil
	}

	// Warm the token cache: one login per user.
	for i := range e.names {
		c, _, err := e.dialLogin(m, sessionAddrs+i%max(o.sessions/o.sessPerAddr, 1), i, 10*time.Second)
		if err != nil {
			return fmt.Errorf("warm-up login: %w", err)
		}
		c.Logout()
	}
	self := []load.Target{{Name: "mailgate", PIDs: func() []int { return []int{m.PID()} }}}
	t0 := time.Now()
	first := m.Sample(pt)
	base, quiet := m.WaitBack(ctx, pt, first, rig.Tolerance{}, backTimeout)
	if !quiet {
		log.Printf("warm-up: counts still moving after %s: %s (first %s)", time.Since(t0).Round(time.Millisecond), base, first)
	}
	load.Settle(ctx, self)
	baseline := snap(m, pt, "baseline (after warm-up)")
	baseline.C.Provider = base.Provider
	rep.Snaps = append(rep.Snaps, baseline)

	// 1. The logged-in sessions.
	log.Printf("opening %d IDLE sessions", o.sessions)
	tc := rig.ClientTLS(e.backend.CAPEM)
	sess := load.OpenIdle(ctx, o.sessions, openConc, func(i int) (*imapc.Conn, error) {
		opts := imapc.Options{TLS: tc, Timeout: time.Minute, LocalAddr: &net.TCPAddr{IP: load.Loopback(sessionAddrs + i/o.sessPerAddr)}}
		return imapc.OpenIdle(m.IMAPSAddr, opts, func(c *imapc.Conn) error { return c.AuthXOAUTH2(e.user(i), e.tokens[e.user(i)]) })
	})
	defer func() {
		if sess.Conns != nil {
			sess.Close(openConc)
		}
	}()
	rep.SessionsOpened, rep.SessionsTook = len(sess.Conns), sess.Took
	if sess.Failed > 0 {
		rep.fail("%d of %d IDLE sessions could not be opened (first: %v)", sess.Failed, o.sessions, sess.Err)
	}
	if err := alive("the IDLE sessions"); err != nil {
		return err
	}
	load.Settle(ctx, self)
	rep.Snaps = append(rep.Snaps, snap(m, pt, fmt.Sprintf("%d sessions in IDLE", len(sess.Conns))))

	// 2. The flood, with 3. the probes running from its start.
	if err := e.flood(ctx, rep, m, pt, sess); err != nil {
		return err
	}
	if err := alive("the flood"); err != nil {
		return err
	}

	// 4. Close everything; back to the baseline?
	log.Printf("closing the IDLE sessions")
	rep.BadClose = sess.Close(openConc)
	if rep.BadClose > 0 {
		rep.fail("%d of %d IDLE sessions did not end cleanly (DONE, LOGOUT) after the flood", rep.BadClose, rep.SessionsOpened)
	}
	after, back := m.WaitBack(ctx, pt, base, rig.Tolerance{FDs: o.tolFDs, Goroutines: o.tolG}, backTimeout)
	load.Settle(ctx, self)
	last := snap(m, pt, "after everything closed")
	last.C.FDs, last.C.Goroutines, last.C.Sessions, last.C.Provider = after.FDs, after.Goroutines, after.Sessions, after.Provider
	rep.Snaps = append(rep.Snaps, last)
	rep.Back = back
	if !back {
		rep.fail("not back to baseline: %s (baseline %s, tolerance +%d fds, +%d goroutines)", after, base, o.tolFDs, o.tolG)
	}
	hwm := last.C.Mem.HWM
	rep.PeakRSS = hwm
	if hwm > int64(o.maxRSS)<<10 {
		rep.fail("mailgate's peak RSS %.1f MiB is over the bound -max-rss %d MiB", float64(hwm)/1024, o.maxRSS)
	}
	return alive("the close")
}

// flood opens the flood, probes logins during it, checks the IDLE
// sessions, and releases it.
func (e *env) flood(ctx context.Context, rep *soakReport, m *rig.Mailgate, pt rig.Ports, sess *load.Sessions) error {
	o := e.o
	nw := o.floodWorkers
	if nw <= 0 {
		per := max(rep.ClientNoFile-200, 1000)
		nw = max(2, (o.flood+per-1)/per)
	}
	rep.FloodWorkers = nw
	refused0, _ := m.MetricFamily("mailgate_connections_refused_total")
	peak := samplePeaks(m)
	probes := e.startProber(m)
	log.Printf("flood: %d idle connections from %d processes", o.flood, nw)
	t0 := time.Now()
	var workers []*worker
	per := (o.flood + nw - 1) / nw
	for w := range nw {
		first := w * per
		n := min(per, o.flood-first)
		if n <= 0 {
			break
		}
		wk, err := startWorker(workerSpec{MaxLife: o.timeout, Hold: load.HoldSpec{
			Targets: []string{m.IMAPSAddr, m.STARTTLSAddr}, First: first, N: n,
			AddrBase: floodAddrs, PerAddr: o.floodPerAddr, DialTimeout: 10 * time.Second,
		}}, os.Stderr)
		if err != nil {
			return err
		}
		workers = append(workers, wk)
	}
	defer func() {
		for _, w := range workers {
			w.stop()
		}
	}()
	for _, w := range workers {
		if _, err := w.next(o.floodOpenWait); err != nil {
			rep.fail("flood: %v", err)
		}
	}
	rep.FloodOpenTook = time.Since(t0)
	probes.opening.Store(false)
	log.Printf("flood opened in %s; checking the IDLE sessions", rep.FloodOpenTook.Round(time.Millisecond))
	time.Sleep(time.Second)
	rep.Snaps = append(rep.Snaps, snap(m, pt, "flood held"))

	// The IDLE sessions must see a new message.
	rep.IdleAlive, rep.IdleErr, rep.IdleTook = e.checkIdle(sess)
	if rep.IdleAlive < len(sess.Conns) {
		rep.fail("during the flood only %d of %d IDLE sessions received EXISTS within %s (first error: %v)", rep.IdleAlive, len(sess.Conns), existsTimeout, rep.IdleErr)
	}
	// At least 5 probes while the flood is held.
	for deadline := time.Now().Add(10 * o.probeEvery); probes.held() < 5 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	rep.Probes = probes.finish()
	bad, slowest, n := 0, time.Duration(0), 0
	var firstErr error
	for _, r := range rep.Probes {
		if r.Opening && !o.strictOpening {
			continue
		}
		n++
		slowest = max(slowest, r.Took)
		if r.Err != nil || r.Took > o.loginWithin {
			bad++
			if firstErr == nil {
				firstErr = r.Err
			}
		}
	}
	if bad > 0 {
		rep.fail("%d of %d login probes during the flood failed or took longer than %s (slowest %s, first error: %v)",
			bad, n, o.loginWithin, slowest.Round(time.Millisecond), firstErr)
	}
	if refused1, err := m.MetricFamily("mailgate_connections_refused_total"); err == nil {
		rep.Refused = map[string]float64{}
		for k, v := range refused1 {
			if d := v - refused0[k]; d > 0 {
				rep.Refused[k] = d
			}
		}
	}
	for _, w := range workers {
		s, err := w.stats()
		if err != nil {
			rep.fail("flood worker: %v", err)
			continue
		}
		rep.Flood = append(rep.Flood, s)
	}
	rep.Snaps = append(rep.Snaps, peak.finish("flood peak (max of samples every 200 ms)"))
	if peak.exitedDuringSampling.Load() {
		rep.MailgateExited = "the flood"
	}
	log.Printf("releasing the flood")
	for _, w := range workers {
		w.stop()
	}
	workers = nil
	return nil
}

// checkIdle appends a message to every mailbox and waits for the EXISTS on
// every session.
func (e *env) checkIdle(sess *load.Sessions) (int, error, time.Duration) {
	var (
		ok    atomic.Int64
		first atomic.Value
		wg    sync.WaitGroup
	)
	t0 := time.Now()
	for _, c := range sess.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Await(" EXISTS", existsTimeout); err != nil {
				first.CompareAndSwap(nil, err)
				return
			}
			ok.Add(1)
		}()
	}
	msg := []byte("From: soak@example.test\r\nSubject: soak\r\n\r\nstill there?\r\n")
	for _, n := range e.names {
		if err := e.imap.Append(n, "INBOX", msg); err != nil {
			first.CompareAndSwap(nil, err)
		}
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return int(ok.Load()), err, time.Since(t0)
}

// preloginKind is one listener and state of the pre-login measurement.
type preloginKind struct {
	name string
	addr func(*rig.Mailgate) string
	// tls: the client completes the TLS handshake (implicit TLS) and then
	// idles; greets: mailgate sends a greeting the client waits for.
	tls, greets bool
}

// preloginKinds are the states measured: waiting in the handshake, after a
// plaintext greeting, and after TLS and its greeting, per listener.
var preloginKinds = []preloginKind{
	{"IMAPS (993), waiting in the TLS handshake", func(m *rig.Mailgate) string { return m.IMAPSAddr }, false, false},
	{"IMAPS (993), after TLS and the greeting", func(m *rig.Mailgate) string { return m.IMAPSAddr }, true, true},
	{"IMAP STARTTLS (143), after the greeting, before STARTTLS", func(m *rig.Mailgate) string { return m.STARTTLSAddr }, false, true},
	{"SMTPS (465), waiting in the TLS handshake", func(m *rig.Mailgate) string { return m.SMTPSAddr }, false, false},
	{"SMTPS (465), after TLS and the 220 greeting", func(m *rig.Mailgate) string { return m.SMTPSAddr }, true, true},
	{"SMTP submission (587), after the 220 greeting, before STARTTLS", func(m *rig.Mailgate) string { return m.SubmissionAddr }, false, true},
}

// measurePrelogin is step 5: memory per idle pre-login connection, per
// listener and state, each in a fresh mailgate (so that one kind does not
// reuse the heap another left) whose pre-login pool holds them all.
func (e *env) measurePrelogin(ctx context.Context, rep *soakReport) error {
	for ki, k := range preloginKinds {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := e.measureKind(ctx, rep, fmt.Sprintf("prelogin-%d", ki+1), k, ki*e.o.preloginK); err != nil {
			return err
		}
	}
	return nil
}

// measureKind measures one kind in a mailgate named name (its own log and
// configuration), from the source addresses measureAddrs+first on.
func (e *env) measureKind(ctx context.Context, rep *soakReport, name string, k preloginKind, first int) error {
	o := e.o
	log.Printf("starting mailgate (pre-login memory run: %s)", k.name)
	// Caps that fit in the open-files limit as they are: mailgate lowers
	// caps that do not (2 descriptors per connection in either pool).
	pool := o.preloginPool
	if pool <= 0 {
		pool = o.preloginK + 100
	}
	m, pt, err := e.start(ctx, name, map[string]string{
		"max_prelogin_connections": fmt.Sprint(pool), "max_connections": "100"}, true)
	if err != nil {
		return err
	}
	defer m.Stop()
	rep.PreloginDropped, rep.PreloginPool = m.Dropped, pool
	if w := capsWarning(m); w != "" {
		rep.fail("pre-login measurement: %s", w)
	}
	self := []load.Target{{Name: "mailgate", PIDs: func() []int { return []int{m.PID()} }}}
	spec := load.HoldSpec{Targets: []string{k.addr(m)}, First: first, N: o.preloginK, AddrBase: measureAddrs, PerAddr: 1}
	if k.tls {
		spec.TLS = rig.ClientTLS(e.backend.CAPEM)
	}
	base, _ := m.WaitBack(ctx, pt, m.Sample(pt), rig.Tolerance{}, backTimeout)
	load.Settle(ctx, self)
	before := m.Sample(pt)
	goBefore := goMem(m)
	t0 := time.Now()
	h := load.Hold(ctx, spec)
	opened := time.Since(t0)
	// Wait until mailgate holds them (and greeted them, where it greets).
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fds, _ := proc.FDs(m.PID())
		st := h.Stats().Total()
		if fds >= before.FDs+st.Open && (!k.greets || st.Greeted >= st.Connected) {
			break
		}
	}
	ready := time.Since(t0)
	load.Settle(ctx, self)
	after := m.Sample(pt)
	goAfter := goMem(m)
	settled := time.Since(t0)
	st := h.Stats().Total()
	r := preloginResult{Kind: k.name, K: o.preloginK, Held: st.Open, Stats: st, Before: before, After: after}
	h.Close()
	if st.Open > 0 {
		n := float64(st.Open)
		r.PSS = float64(after.Mem.PSS-before.Mem.PSS) / n
		r.RSS = float64(after.Mem.RSS-before.Mem.RSS) / n
		r.FDs = float64(after.FDs-before.FDs) / n
		if after.Goroutines >= 0 && before.Goroutines >= 0 {
			r.Goroutines = float64(after.Goroutines-before.Goroutines) / n
		}
		if goBefore.ok && goAfter.ok {
			r.Heap, r.Stacks = (goAfter.heap-goBefore.heap)/1024/n, (goAfter.stacks-goBefore.stacks)/1024/n
		}
	}
	if st.Open < o.preloginK {
		rep.fail("pre-login measurement (%s): only %d of %d connections held (dial errors: %v)", k.name, st.Open, o.preloginK, st.DialErrs)
	}
	if k.greets && st.Greeted < st.Connected {
		rep.fail("pre-login measurement (%s): only %d of %d connections greeted", k.name, st.Greeted, st.Connected)
	}
	var now rig.Counts
	t1 := time.Now()
	now, r.Back = m.WaitBack(ctx, pt, base, rig.Tolerance{FDs: o.tolFDs, Goroutines: o.tolG}, backTimeout)
	backTook := time.Since(t1)
	if !r.Back {
		rep.fail("pre-login measurement (%s): not back to baseline: %s (baseline %s)", k.name, now, base)
	}
	log.Printf("%s: %.1f KiB PSS per connection (heap %.1f, stacks %.1f KiB; %d held; opened in %s, held in %s, settled in %s; back in %s after closing)",
		k.name, r.PSS, r.Heap, r.Stacks, st.Open, opened.Round(time.Millisecond), ready.Round(time.Millisecond), settled.Round(time.Millisecond), backTook.Round(time.Millisecond))
	rep.Prelogin = append(rep.Prelogin, r)
	if m.Exited() {
		return fmt.Errorf("mailgate exited:\n%s", m.LogTail(15))
	}
	return nil
}

// goStats are the Go runtime's heap and stack bytes in use (from /metrics).
type goStats struct {
	heap, stacks float64
	ok           bool
}

func goMem(m *rig.Mailgate) goStats {
	h, err1 := m.Metric("go_memstats_heap_inuse_bytes")
	st, err2 := m.Metric("go_memstats_stack_inuse_bytes")
	return goStats{heap: h, stacks: st, ok: err1 == nil && err2 == nil}
}

// capsWarning is mailgate's log line saying it lowered its connection caps
// to fit its open-files limit, or "".
func capsWarning(m *rig.Mailgate) string {
	b, _ := os.ReadFile(m.LogPath)
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "caps lowered") || strings.Contains(line, "open-files limit too low") {
			if _, rest, ok := strings.Cut(line, "msg="); ok {
				line = rest
			}
			if i := strings.Index(line, " hint="); i >= 0 {
				line = line[:i]
			}
			return strings.TrimSpace(line)
		}
	}
	return ""
}
