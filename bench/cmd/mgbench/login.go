package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/report"
)

// loginSetup is one way to log in, with the processes whose CPU it costs.
type loginSetup struct {
	col   string
	login load.LoginFunc
	proxy func() []int // the proxy's processes; nil for a direct login
}

func (e *env) loginSetups() []loginSetup {
	user := func(w int) string { return e.names[w%len(e.names)] }
	all := []loginSetup{
		{colDirect, func(w, _ int) error { return e.loginDirect(e.dc.IMAPSAddr, e.tlsConf, user(w)) }, nil},
		{colMailgate, func(w, _ int) error { u := user(w); return e.loginMailgate(e.mg, u, e.tokens[u]) },
			func() []int { return []int{e.mg.PID()} }},
		{colCold, func(w, _ int) error { u := user(w); return e.loginMailgate(e.mgCold, u, e.tokens[u]) },
			func() []int { return []int{e.mgCold.PID()} }},
		{colAppPass, func(w, _ int) error { return e.loginAppPass(e.mg, user(w)) },
			func() []int { return []int{e.mg.PID()} }},
		{colNginx, func(w, _ int) error { return e.loginNginx(e.ngx.IMAPSAddr, user(w)) }, e.ngx.PIDs},
		{colDMS, func(w, _ int) error { u := user(w); return e.loginXOAUTH2(e.dc.IMAPSAddr, u, e.tokens[u]) }, nil},
	}
	if e.appPass == nil {
		all = slices.DeleteFunc(all, func(s loginSetup) bool { return s.col == colAppPass })
	}
	return all
}

// logins measures login latency and rate at each concurrency for every
// setup, reps times, setups interleaved within each repetition. It also
// records the CPU each login costs the proxy and Dovecot, and how many
// provider requests it caused.
func (e *env) logins(ctx context.Context, res *report.Results) error {
	// Warm mailgate's cache: one login per token.
	for _, u := range e.names {
		if err := e.loginMailgate(e.mg, u, e.tokens[u]); err != nil {
			return fmt.Errorf("warm-up login %s: %w", u, err)
		}
	}
	// One app-password login per password too: its first use is recorded
	// in the store (then at most once a minute), not measured here.
	if e.appPass != nil {
		for _, u := range e.names {
			if err := e.loginAppPass(e.mg, u); err != nil {
				return fmt.Errorf("warm-up app-password login %s: %w", u, err)
			}
		}
	}
	appPassMiss := 0 // app-password runs whose successful logins the metric did not count as such
	setups := e.loginSetups()
	for _, conc := range e.o.concs {
		clients := fmt.Sprintf("%d clients", conc)
		if conc == 1 {
			clients = "1 client"
		}
		p50 := res.Row(fmt.Sprintf("login.c%d.p50", conc), "login p50 (TCP+TLS+auth+LOGOUT), "+clients+", ms", 1)
		p99 := res.Row(fmt.Sprintf("login.c%d.p99", conc), "login p99, "+clients+", ms", 1)
		rate := res.Row(fmt.Sprintf("login.c%d.rate", conc), "logins/s, "+clients, 0)
		pcpu := res.Row(fmt.Sprintf("login.c%d.proxycpu", conc), "proxy CPU per login, "+clients+", ms", 2)
		pcpu.RatioTo = "-"
		dcpu := res.Row(fmt.Sprintf("login.c%d.dovecotcpu", conc), "Dovecot CPU per login, "+clients+", ms", 2)
		prov := res.Row(fmt.Sprintf("login.c%d.provider", conc), "provider requests per login, "+clients, 2)
		prov.RatioTo = "-"
		var rr *resumeRows
		if slices.Contains(e.o.resumeConcs, conc) {
			rr = newResumeRows(res, conc, clients)
		}
		for rep := 0; rep < e.o.reps; rep++ {
			for _, s := range setups {
				if err := ctx.Err(); err != nil {
					return err
				}
				var proxyCPU0 float64
				if s.proxy != nil {
					proxyCPU0 = proc.SumCPU(s.proxy(), 0)
				}
				okApp0, appMetric := e.appPassOK(s.col)
				dov0, prov0 := dovecotCPU(e.dc), e.counter.Count()
				r := load.RunLogins(ctx, conc, e.o.loginDur, 0, s.login)
				if r.Errors == r.Logins {
					return fmt.Errorf("%s c=%d: all %d logins failed, first: %w", s.col, conc, r.Logins, r.FirstErr)
				}
				if r.Errors > 0 {
					res.Note("ERRORS: %s, %d clients, run %d: %d of %d logins failed (first: %v).", title(s.col), conc, rep+1, r.Errors, r.Logins, r.FirstErr)
				}
				ok := float64(r.Logins - r.Errors)
				p50.Add(s.col, r.P(50))
				p99.Add(s.col, r.P(99))
				rate.Add(s.col, r.PerSecond())
				if s.proxy != nil {
					pcpu.Add(s.col, (proc.SumCPU(s.proxy(), 0)-proxyCPU0)*1000/ok)
				}
				dcpu.Add(s.col, (dovecotCPU(e.dc)-dov0)*1000/ok)
				if s.col == colMailgate || s.col == colCold || s.col == colAppPass || s.col == colDMS {
					prov.Add(s.col, float64(e.counter.Count()-prov0)/ok)
				}
				// Every successful login of the column must have been an
				// app-password login (mailgate_app_password_logins_total).
				if okApp1, _ := e.appPassOK(s.col); appMetric && okApp1-okApp0 != ok {
					appPassMiss++
					res.Note("app password, %d clients, run %d: mailgate counted %.0f successful app-password logins for %.0f successful logins.", conc, rep+1, okApp1-okApp0, ok)
				}
				log.Printf("login c=%d rep %d %-8s p50 %6.1f ms  p99 %6.1f ms  %5.0f/s", conc, rep+1, s.col, r.P(50), r.P(99), r.PerSecond())
			}
			if rr == nil {
				continue
			}
			for _, s := range e.resumeSetups() {
				if err := e.resumedRun(ctx, res, rr, s, conc, rep); err != nil {
					return err
				}
			}
		}
		if rr != nil {
			rr.finish(e.o.reps)
		}
	}
	if e.appPass != nil {
		e.appPassNote(res, appPassMiss)
	} else if e.appPassWhy != "" {
		res.Note("no \"mailgate, app password\" column: %s.", e.appPassWhy)
	}
	if len(e.o.resumeConcs) > 0 {
		res.Note("resumed rows: every client has a TLS session cache of its own (tls.ClientSessionCache) and makes one login before the measured run (its full handshake, not measured), so that every measured login offers the session ticket of its previous login; a run counts as resumed when at least %d%% of its logins resumed (tls.ConnectionState.DidResume), else its values are left out of the cell (kept in the JSON under \"excluded\") and the cell says so. The ratio in these rows is against the full-handshake login of the same setup (the row above), not against direct TLS, which does not resume here: the DMS-like Dovecot starts a new imap-login process per connection, so no TLS session outlives its connection (the idle notes say how Dovecot in high-performance mode does). Behind mailgate and nginx the backend leg is plain IMAP here: only the client leg resumes.", resumeThreshold)
	}
	return nil
}

// appPassOK reads mailgate's count of successful IMAP app-password logins
// (mailgate_app_password_logins_total{proto="imap",result="ok"}) when col
// is the app-password column; ok is false otherwise or when it cannot be
// read.
func (e *env) appPassOK(col string) (n float64, ok bool) {
	if col != colAppPass {
		return 0, false
	}
	fam, err := e.mg.MetricFamily("mailgate_app_password_logins_total")
	if err != nil {
		return 0, false
	}
	v, ok := fam[`proto="imap",result="ok"`]
	return v, ok
}

// appPassNote explains the app-password column under the table, with
// what an app-password login costs mailgate beyond a cached-token login.
func (e *env) appPassNote(res *report.Results, miss int) {
	procs := "GOMAXPROCS: as many as the CPUs mailgate may use"
	if v, err := e.mg.Metric("go_sched_gomaxprocs_threads"); err == nil {
		procs = fmt.Sprintf("GOMAXPROCS: %.0f here, from mailgate's go_sched_gomaxprocs_threads", v)
	}
	var extra []string
	for _, c := range e.o.concs {
		key := fmt.Sprintf("login.c%d.proxycpu", c)
		a, m := res.Median(key, colAppPass), res.Median(key, colMailgate)
		if a == a && m == m {
			extra = append(extra, fmt.Sprintf("%.1f ms with %d", a-m, c))
		}
	}
	counted := "mailgate_app_password_logins_total{proto=\"imap\",result=\"ok\"} grew by exactly the successful logins of every run"
	if miss > 0 {
		counted = fmt.Sprintf("in %d runs mailgate_app_password_logins_total{proto=\"imap\",result=\"ok\"} did not grow by the successful logins (notes above)", miss)
	}
	res.Note("mailgate, app password: the same mailgate process as the \"mailgate\" column, which runs with app_passwords on (SQLite store in the work directory, IMAP only, no page); one app password per load user (%d), made with `mailgate app-passwords create` before mailgate started; every login is IMAP `LOGIN user mgp_…` over IMAPS, and mailgate opens the Dovecot session as the master user, as for a token; no provider request. Client i logs in as load user i (as in every column), so mailgate's per-user serialization of password attempts never makes a login wait. Each login costs exactly one argon2id hash (t=2, m=19 MiB, p=1; `go test ./auth/apppass -bench Verify` puts it at 26-34 ms p50 on one core of the quiet reference machine), and at most GOMAXPROCS hashes run at once (%s; 19 MiB each), so with 8 and 64 clients logins queue for the 2 cores behind mailgate's hash semaphore and Dovecot's own per-login work: the latency there is mostly that queue. Proxy CPU per login includes the hash: beyond the \"mailgate\" column's (cached token) it is %s client(s) (medians; the hash, the store lookup and LOGIN's parsing); Dovecot CPU per login is that of the other mailgate columns (no TLS, master password check). The store writes a password's last use at most once a minute (the first use at warm-up, not measured), so a few logins per run also write to SQLite. Checked: %s.",
		len(e.appPass), procs, strings.Join(extra, ", "), counted)
}

// resumeThreshold is the share of logins (percent) that must have resumed
// their TLS session for a run to count as resumed.
const resumeThreshold = 99

// resumeSetup is a login through which a returning client resumes its TLS
// session.
type resumeSetup struct {
	col   string
	addr  func() string
	auth  func(c *imapc.Conn, user string) error
	proxy func() []int // nil for a direct login
}

func (e *env) resumeSetups() []resumeSetup {
	return []resumeSetup{
		{colDirect, func() string { return e.dc.IMAPSAddr },
			func(c *imapc.Conn, u string) error { return c.AuthPlain(u, e.dc.MasterUser, e.dc.MasterPassword) }, nil},
		{colMailgate, func() string { return e.mg.IMAPSAddr },
			func(c *imapc.Conn, u string) error { return c.AuthXOAUTH2(u, e.tokens[u]) },
			func() []int { return []int{e.mg.PID()} }},
		{colNginx, func() string { return e.ngx.IMAPSAddr },
			func(c *imapc.Conn, u string) error { return c.Login(u, password) }, e.ngx.PIDs},
	}
}

// resumeRows are the rows of a returning client at one concurrency.
type resumeRows struct {
	share, p50, cpu *report.Row
	left            map[string]int // runs left out per column
}

func newResumeRows(res *report.Results, conc int, clients string) *resumeRows {
	rr := &resumeRows{left: map[string]int{}}
	rr.share = res.Row(fmt.Sprintf("login.c%d.resumed.share", conc), "returning client: logins that resumed their TLS session, "+clients+", %", 1)
	rr.share.RatioTo = "-"
	rr.p50 = res.Row(fmt.Sprintf("login.c%d.resumed.p50", conc), "login p50, returning client resuming its TLS session, "+clients+", ms", 1)
	rr.p50.RatioRow, rr.p50.RatioName = fmt.Sprintf("login.c%d.p50", conc), "of full"
	rr.cpu = res.Row(fmt.Sprintf("login.c%d.resumed.proxycpu", conc), "proxy CPU per login, returning client resuming its TLS session, "+clients+", ms", 2)
	rr.cpu.RatioRow, rr.cpu.RatioName = fmt.Sprintf("login.c%d.proxycpu", conc), "of full"
	return rr
}

// finish marks the cells of columns with runs that did not resume.
func (rr *resumeRows) finish(reps int) {
	for col, n := range rr.left {
		mark := fmt.Sprintf("(%d of %d runs left out: not resumed)", n, reps)
		if n == reps {
			mark = "not resumed: full handshakes"
		}
		rr.p50.Mark(col, mark)
		if len(rr.cpu.Excluded[col]) > 0 {
			rr.cpu.Mark(col, mark)
		}
	}
}

// loginCycle connects to addr with tc, authenticates with auth and logs out;
// it reports whether the TLS handshake resumed a session.
func loginCycle(addr string, tc *tls.Config, auth func(*imapc.Conn) error) (bool, error) {
	c, err := imapc.Dial(addr, imapc.Options{TLS: tc})
	if err != nil {
		return false, err
	}
	defer c.Close()
	resumed := c.Resumed()
	if err := auth(c); err != nil {
		return resumed, err
	}
	return resumed, c.Logout()
}

// resumedRun runs one measured login run of returning clients through s:
// each client first logs in once with an empty session cache of its own
// (a full handshake, not measured), then logs in back to back, offering
// the session of its previous login each time.
func (e *env) resumedRun(ctx context.Context, res *report.Results, rr *resumeRows, s resumeSetup, conc, rep int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	user := func(w int) string { return e.names[w%len(e.names)] }
	confs := make([]*tls.Config, conc)
	for w := range confs {
		confs[w] = e.tlsConf.Clone()
		confs[w].ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	var resumed atomic.Int64
	cycle := func(w int) (bool, error) {
		u := user(w)
		return loginCycle(s.addr(), confs[w], func(c *imapc.Conn) error { return s.auth(c, u) })
	}
	for w := range confs {
		if _, err := cycle(w); err != nil {
			return fmt.Errorf("%s resumed c=%d: warm-up login: %w", s.col, conc, err)
		}
	}
	var cpu0 float64
	if s.proxy != nil {
		cpu0 = proc.SumCPU(s.proxy(), 0)
	}
	r := load.RunLogins(ctx, conc, e.o.loginDur, 0, func(w, _ int) error {
		ok, err := cycle(w)
		if err == nil && ok {
			resumed.Add(1)
		}
		return err
	})
	if r.Errors == r.Logins {
		return fmt.Errorf("%s resumed c=%d: all %d logins failed, first: %w", s.col, conc, r.Logins, r.FirstErr)
	}
	if r.Errors > 0 {
		res.Note("ERRORS: %s, returning clients, %d clients, run %d: %d of %d logins failed (first: %v).", title(s.col), conc, rep+1, r.Errors, r.Logins, r.FirstErr)
	}
	ok := float64(r.Logins - r.Errors)
	share := float64(resumed.Load()) * 100 / ok
	var cpu float64
	if s.proxy != nil {
		cpu = (proc.SumCPU(s.proxy(), 0) - cpu0) * 1000 / ok
	}
	rr.share.Add(s.col, share)
	if share >= resumeThreshold {
		rr.p50.Add(s.col, r.P(50))
		if s.proxy != nil {
			rr.cpu.Add(s.col, cpu)
		}
	} else {
		rr.left[s.col]++
		rr.p50.Exclude(s.col, r.P(50))
		if s.proxy != nil {
			rr.cpu.Exclude(s.col, cpu)
		}
	}
	log.Printf("login c=%d rep %d %-8s resumed %5.1f%% of %d  p50 %6.1f ms  CPU %.2f ms/login", conc, rep+1, s.col, share, int(ok), r.P(50), cpu)
	return nil
}

// provider counts provider requests for 1,000 logins through a freshly
// started (empty-cache) mailgate, with one token and with 100 tokens.
func (e *env) provider(ctx context.Context, res *report.Results) error {
	const logins, conc = 1000, 8
	cases := []struct {
		key, label string
		tokens     int
	}{
		{"provider.1", "provider requests per 1,000 logins, 1 token", 1},
		{"provider.100", "provider requests per 1,000 logins, 100 tokens", loadUsers},
	}
	for _, c := range cases {
		row := res.Row(c.key, c.label, 0)
		row.RatioTo = "-"
		for _, col := range []string{colMailgate, colCold} {
			old := e.mg
			if col == colCold {
				old = e.mgCold
			}
			// A fresh process: nothing cached.
			old.Stop()
			ttl := cacheTTL
			if col == colCold {
				ttl = 0
			}
			m, err := e.startMailgate(ctx, "mailgate-"+col+"-provider-"+fmt.Sprint(c.tokens), ttl)
			if err != nil {
				return err
			}
			if col == colCold {
				e.mgCold = m
			} else {
				e.mg = m
			}
			var next atomic.Int64
			n0 := e.counter.Count()
			r := load.RunLogins(ctx, conc, 0, logins, func(_, _ int) error {
				u := e.names[int(next.Add(1)-1)%c.tokens]
				return e.loginMailgate(m, u, e.tokens[u])
			})
			if r.Errors > 0 {
				res.Note("ERRORS: %s, %s: %d of %d logins failed (first: %v).", c.label, title(col), r.Errors, r.Logins, r.FirstErr)
			}
			n := e.counter.Count() - n0
			row.Add(col, float64(n)*1000/float64(r.Logins))
			log.Printf("%s %s: %d provider requests for %d logins", c.key, col, n, r.Logins)
		}
		// Dovecot's oauth2 passdb has no cache of its own (DMS default).
		if m := res.Median(fmt.Sprintf("login.c%d.provider", e.o.concs[0]), colDMS); m == m {
			row.Add(colDMS, m*1000)
		}
	}
	res.Note("provider rows: a fresh mailgate per cell, %d logins by %d clients; the Dovecot oauth2 (DMS) cell is the login rows' requests per login x 1,000.", logins, conc)
	return nil
}

// title is the column title of key.
func title(key string) string {
	for _, c := range columns {
		if c.Key == key {
			return c.Title
		}
	}
	return key
}
