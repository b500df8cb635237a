package main

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"

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
	return []loginSetup{
		{colDirect, func(w, _ int) error { return e.loginDirect(e.dc.IMAPSAddr, e.tlsConf, user(w)) }, nil},
		{colMailgate, func(w, _ int) error { u := user(w); return e.loginMailgate(e.mg, u, e.tokens[u]) },
			func() []int { return []int{e.mg.PID()} }},
		{colCold, func(w, _ int) error { u := user(w); return e.loginMailgate(e.mgCold, u, e.tokens[u]) },
			func() []int { return []int{e.mgCold.PID()} }},
		{colNginx, func(w, _ int) error { return e.loginNginx(e.ngx.IMAPSAddr, user(w)) }, e.ngx.PIDs},
		{colDMS, func(w, _ int) error { u := user(w); return e.loginXOAUTH2(e.dc.IMAPSAddr, u, e.tokens[u]) }, nil},
	}
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
		for rep := 0; rep < e.o.reps; rep++ {
			for _, s := range setups {
				if err := ctx.Err(); err != nil {
					return err
				}
				var proxyCPU0 float64
				if s.proxy != nil {
					proxyCPU0 = proc.SumCPU(s.proxy(), 0)
				}
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
				if s.col == colMailgate || s.col == colCold || s.col == colDMS {
					prov.Add(s.col, float64(e.counter.Count()-prov0)/ok)
				}
				log.Printf("login c=%d rep %d %-8s p50 %6.1f ms  p99 %6.1f ms  %5.0f/s", conc, rep+1, s.col, r.P(50), r.P(99), r.PerSecond())
			}
		}
	}
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
