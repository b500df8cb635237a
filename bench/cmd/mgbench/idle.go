package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"slices"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/report"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	// openConc is how many sessions are opened at once.
	openConc = 32
	// drainWait bounds the wait for processes to let go of closed sessions.
	drainWait = 90 * time.Second
)

// idle opens N sessions in IDLE through each setup and measures the memory
// the proxy (or, for direct, Dovecot) holds per session, on a Dovecot of its
// own tuned for many sessions.
func (e *env) idle(ctx context.Context, res *report.Results) error {
	all := append(append([]testenv.User(nil), e.users...), testenv.User{Name: sinkUser, Password: password})
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	dc, err := testenv.NewDovecot(sctx, testenv.DovecotOptions{Users: all, ExtraConfig: rig.IdleDovecotExtra})
	if err != nil {
		return fmt.Errorf("idle dovecot: %w", err)
	}
	defer dc.Stop()
	mg, err := rig.StartMailgate(ctx, rig.MailgateOptions{
		Binary: e.o.mailgate, Dir: e.dir, Name: "mailgate-idle",
		Dovecot: dc, UserinfoURL: e.userinfo, CacheTTL: cacheTTL, Limits: rig.IdleLimits(),
	})
	if err != nil {
		return err
	}
	defer mg.Stop()
	authh, err := rig.NewAuthHTTP(dc.IMAPAddr, dc.MasterUser, dc.MasterPassword, all)
	if err != nil {
		return err
	}
	defer authh.Close()
	maxN := rig.MaxSessions()
	largest := 0
	for _, n := range e.o.measured {
		largest = max(largest, min(n, maxN))
	}
	ndir, err := os.MkdirTemp(e.dir, "nginx-idle-")
	if err != nil {
		return err
	}
	ngx, err := rig.StartNginx(ctx, rig.NginxOptions{
		Binary: e.o.nginx, Module: e.o.nginxModule, Dir: ndir,
		CertFile: dc.CertFile, KeyFile: dc.KeyFile, CAPEM: dc.CACertPEM, AuthHTTP: authh.Addr,
		WorkerConnections: 2*largest + 512,
	})
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	defer ngx.Stop()

	user := func(i int) string { return e.names[i%len(e.names)] }
	tc := rig.ClientTLS(dc.CACertPEM) // this Dovecot's own certificate
	e.dovecotResumeProbe(res, dc, tc)
	idleSession := func(addr string, login func(*imapc.Conn, string) error) load.OpenFunc {
		return func(i int) (*imapc.Conn, error) {
			return imapc.OpenIdle(addr, imapc.Options{TLS: tc, Timeout: time.Minute}, func(c *imapc.Conn) error {
				return login(c, user(i))
			})
		}
	}
	dovecot := load.Target{Name: "dovecot", PIDs: dovecotPIDs(dc)}
	setups := []struct {
		col  string
		open load.OpenFunc
		own  load.Target
	}{
		{colDirect, idleSession(dc.IMAPSAddr, func(c *imapc.Conn, u string) error {
			return c.AuthPlain(u, dc.MasterUser, dc.MasterPassword)
		}), dovecot},
		{colMailgate, idleSession(mg.IMAPSAddr, func(c *imapc.Conn, u string) error {
			return c.AuthXOAUTH2(u, e.tokens[u])
		}), load.Target{Name: "own", PIDs: func() []int { return []int{mg.PID()} }}},
		{colNginx, idleSession(ngx.IMAPSAddr, func(c *imapc.Conn, u string) error {
			return c.Login(u, password)
		}), load.Target{Name: "own", PIDs: ngx.PIDs}},
	}
	baseProcs := len(dovecot.PIDs())
	for _, want := range e.o.sessions {
		n := min(want, maxN)
		label := fmtInt(want)
		measured := slices.Contains(e.o.measured, want)
		if n < want {
			label = fmt.Sprintf("%s (%s: fd limit)", fmtInt(want), fmtInt(n))
		}
		if n < want && measured {
			res.Note("idle sessions: %s wanted, %s measured in every column: the open-files hard limit here is %d and cannot be raised in this container; a proxy holds two descriptors per session, and mailgate also counts two per pre-login slot (%d kept for opening sessions) and keeps %d for itself, lowering its caps at start-up to fit.", fmtInt(want), fmtInt(n), rig.NoFileHardLimit(), rig.IdlePreloginSlots, 256)
		}
		own := res.Row(fmt.Sprintf("idle.%d.pss", want), fmt.Sprintf("idle session in IDLE, %s sessions: PSS per session, KiB (direct: all of Dovecot)", label), 1)
		ownRSS := res.Row(fmt.Sprintf("idle.%d.rss", want), fmt.Sprintf("idle session, %s sessions: RSS per session, KiB", label), 1)
		dov := res.Row(fmt.Sprintf("idle.%d.dovecot", want), fmt.Sprintf("idle session, %s sessions: Dovecot's PSS per session behind it, KiB", label), 1)
		if !measured {
			for _, r := range []*report.Row{own, ownRSS, dov} {
				for _, s := range setups {
					r.Mark(s.col, "not measured (quick run)")
				}
			}
			res.Note("idle sessions: the %s-session rows were not measured in this run (-sessions-measured; BENCH_QUICK_SESSIONS for bench/run.sh): opening that many sessions three times takes 5-20 minutes on 2 cores.", fmtInt(want))
			continue
		}
		for rep := 0; rep < e.o.idleReps; rep++ {
			for _, s := range setups {
				if err := ctx.Err(); err != nil {
					return err
				}
				targets := []load.Target{s.own}
				if s.own.Name != dovecot.Name {
					targets = append(targets, dovecot)
				}
				r := load.MeasureIdle(ctx, n, openConc, s.open, targets, nil)
				if err := ctx.Err(); err != nil {
					return err // interrupted: the figures are not of n sessions
				}
				if r.Opened == 0 {
					return fmt.Errorf("%s: all %d sessions failed, first: %w", s.col, n, r.FirstErr)
				}
				if r.Failed > 0 {
					res.Note("ERRORS: idle, %s, %s sessions: %d could not be opened (first: %v); per-session figures divide by the %d opened.", title(s.col), fmtInt(n), r.Failed, r.FirstErr, r.Opened)
				}
				pss, rss := r.PerSession(s.own.Name)
				own.Add(s.col, pss)
				ownRSS.Add(s.col, rss)
				dpss, _ := r.PerSession(dovecot.Name)
				dov.Add(s.col, dpss)
				log.Printf("idle n=%d %-8s opened in %s: PSS %.1f KiB/session, RSS %.1f KiB/session, Dovecot %.1f KiB/session",
					n, s.col, r.OpenTook.Round(time.Second), pss, rss, dpss)
				if err := waitProcs(ctx, dovecot, baseProcs); err != nil {
					return err
				}
			}
		}
	}
	res.Note("idle rows: a Dovecot of its own with imap-login in high-performance mode (service_count = 0, 4-8 processes) and one imap process per session; N sessions opened 32 at a time over TLS, logged in, SELECT INBOX, IDLE; PSS/RSS growth of the proxy's processes (mailgate: its one process; nginx: master + 2 workers; direct: every Dovecot process) divided by N, measured once memory is steady.")
	return nil
}

// waitProcs waits until t has at most n processes (closed sessions' imap
// processes have exited).
func waitProcs(ctx context.Context, t load.Target, n int) error {
	deadline := time.Now().Add(drainWait)
	for len(t.PIDs()) > n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still has %d processes (baseline %d) after %s", t.Name, len(t.PIDs()), n, drainWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// resumeProbeLogins is how many logins the performance-mode resumption probe
// makes after its first.
const resumeProbeLogins = 20

// dovecotResumeProbe notes whether a returning client resumes its TLS
// session with a Dovecot whose imap-login runs in high-performance mode (a
// few long-lived processes), which the login rows' DMS-like Dovecot (one
// process per connection) cannot do: one client with a session cache logs
// in 1 + resumeProbeLogins times.
func (e *env) dovecotResumeProbe(res *report.Results, dc *testenv.Dovecot, tc *tls.Config) {
	conf := tc.Clone()
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	auth := func(c *imapc.Conn) error { return c.AuthPlain(e.names[0], dc.MasterUser, dc.MasterPassword) }
	if _, err := loginCycle(dc.IMAPSAddr, conf, auth); err != nil {
		res.Note("direct Dovecot in high-performance mode: resumption probe failed: %v", err)
		return
	}
	resumed := 0
	for i := 0; i < resumeProbeLogins; i++ {
		ok, err := loginCycle(dc.IMAPSAddr, conf, auth)
		if err != nil {
			res.Note("direct Dovecot in high-performance mode: resumption probe failed: %v", err)
			return
		}
		if ok {
			resumed++
		}
	}
	log.Printf("performance-mode Dovecot: %d of %d returning logins resumed their TLS session", resumed, resumeProbeLogins)
	res.Note("direct Dovecot in high-performance mode (the idle rows' Dovecot: imap-login service_count = 0, 4-8 long-lived processes, each with its own TLS session cache and ticket keys): %d of %d logins of a returning client resumed their TLS session (the login rows' DMS-like Dovecot, one imap-login process per connection, resumes none).", resumed, resumeProbeLogins)
}
