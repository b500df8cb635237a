// Command mgload is the load test of mailgate against the real Dovecot: N
// concurrent sessions logged in through mailgate and sitting in IDLE
// (memory per session at each N), then cached-token logins back to back for
// a fixed time with zero errors allowed, and checks that mailgate's open
// file descriptors (and goroutines, when it serves /metrics or /debug/pprof)
// return to their baseline after every session has closed.
//
// It starts its own Hydra, Dovecot (tuned for many sessions) and mailgate on
// 127.0.0.1 and needs root, like internal/testenv. It exits 1 when a login
// or session failed, or a count did not return to its baseline.
//
//	mgload -mailgate /tmp/mailgate -sessions 1000,10000 -logins 60s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/report"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	users        = 100
	openConc     = 32
	startTimeout = 60 * time.Second
	// backTimeout bounds the wait for counts to return to the baseline.
	backTimeout = 60 * time.Second
)

type options struct {
	mailgate string
	sessions []int
	loginDur time.Duration
	conc     int
	out      string
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("[mgload] ")
	var o options
	var sessions string
	flag.StringVar(&o.mailgate, "mailgate", "", "mailgate binary (required)")
	flag.StringVar(&sessions, "sessions", "1000,10000", "idle session counts")
	flag.DurationVar(&o.loginDur, "logins", 60*time.Second, "length of the sustained login run (0: skip)")
	flag.IntVar(&o.conc, "concurrency", 8, "clients of the sustained login run")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	flag.Parse()
	if o.mailgate == "" {
		log.Fatal("-mailgate is required")
	}
	for _, f := range strings.Split(sessions, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			log.Fatalf("-sessions: %v", err)
		}
		o.sessions = append(o.sessions, n)
	}
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

type idleResult struct {
	Wanted, N      int
	OpenTook       time.Duration
	PSS, RSS       float64 // KiB per session
	FDsPerSession  float64
	Peak, After    rig.Counts
	BadClose       int
	BackToBaseline bool
}

type loginResult struct {
	Dur              time.Duration
	Logins, Errors   int
	PerSecond        float64
	P50, P99         float64
	ProviderRequests int64
	After            rig.Counts
	BackToBaseline   bool
	FirstErr         error
}

type reportData struct {
	Version   string
	Baseline  rig.Counts
	Idle      []idleResult
	Login     *loginResult
	Notes     []string
	FDLimit   int
	StartedAt time.Time
}

func run(ctx context.Context, o options) (*reportData, error) {
	if _, err := testenv.Check(testenv.PartAll); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mgload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	log.Printf("starting Hydra, Dovecot and mailgate")
	hydra, err := testenv.NewHydra(sctx, testenv.HydraOptions{AccessTokenLifespan: 4 * time.Hour})
	if err != nil {
		return nil, err
	}
	defer hydra.Stop()
	u, err := url.Parse(hydra.UserinfoURL)
	if err != nil {
		return nil, err
	}
	counter, err := rig.NewCounter(hydra.PublicURL, u.Path)
	if err != nil {
		return nil, err
	}
	defer counter.Close()
	accounts := rig.LoadUsers(users)
	dc, err := testenv.NewDovecot(sctx, testenv.DovecotOptions{Users: accounts, ExtraConfig: rig.IdleDovecotExtra})
	if err != nil {
		return nil, err
	}
	defer dc.Stop()
	m, err := rig.StartMailgate(ctx, rig.MailgateOptions{
		Binary: o.mailgate, Dir: dir, Dovecot: dc, UserinfoURL: counter.URL + u.Path, CacheTTL: 10 * time.Minute,
		Limits: rig.IdleLimits(),
	})
	if err != nil {
		return nil, err
	}
	defer m.Stop()
	names := make([]string, len(accounts))
	for i, a := range accounts {
		names[i] = a.Name
	}
	log.Printf("minting %d tokens", len(names))
	tokens, err := rig.MintTokens(ctx, hydra, names, 1)
	if err != nil {
		return nil, err
	}
	tc := rig.ClientTLS(dc.CACertPEM)
	login := func(c *imapc.Conn, i int) error {
		return c.AuthXOAUTH2(names[i%len(names)], tokens[names[i%len(names)]])
	}
	// Warm the cache and the provider connections.
	for i := range names {
		c, err := imapc.Dial(m.IMAPSAddr, imapc.Options{TLS: tc})
		if err != nil {
			return nil, err
		}
		if err := login(c, i); err != nil {
			c.Close()
			return nil, fmt.Errorf("warm-up login: %w", err)
		}
		c.Logout()
	}
	pt := rig.Ports{Listeners: []int{rig.PortOf(m.IMAPSAddr)}, Backends: []int{rig.PortOf(dc.IMAPAddr)}, Provider: rig.PortOf(counter.URL)}
	rep := &reportData{FDLimit: int(rig.NoFileHardLimit()), StartedAt: time.Now()}
	rep.Version = strings.TrimSpace(rig.FirstLine(o.mailgate, "version"))
	base, _ := m.WaitBack(ctx, pt, m.Sample(pt), rig.Tolerance{}, backTimeout)
	rep.Baseline = base
	if base.Goroutines < 0 {
		rep.Notes = append(rep.Notes, "goroutines: n/a — this mailgate serves neither /metrics (go_goroutines) nor /debug/pprof on http.listen; descriptors are counted in /proc/<pid>/fd.")
	}
	var failed []string
	open := func(i int) (*imapc.Conn, error) {
		return imapc.OpenIdle(m.IMAPSAddr, imapc.Options{TLS: tc, Timeout: time.Minute}, func(c *imapc.Conn) error { return login(c, i) })
	}
	maxN := rig.MaxSessions()
	for _, want := range o.sessions {
		n := min(want, maxN)
		log.Printf("opening %d idle sessions", n)
		ir := idleResult{Wanted: want, N: n}
		own := load.Target{Name: "mailgate", PIDs: func() []int { return []int{m.PID()} }}
		r := load.MeasureIdle(ctx, n, openConc, open, []load.Target{own}, func(int) { ir.Peak = m.Sample(pt) })
		if r.Failed > 0 {
			failed = append(failed, fmt.Sprintf("%d of %d sessions failed (first: %v)", r.Failed, n, r.FirstErr))
		}
		ir.OpenTook, ir.BadClose = r.OpenTook, r.BadClose
		ir.PSS, ir.RSS = r.PerSession("mailgate")
		if r.Opened > 0 {
			ir.FDsPerSession = float64(ir.Peak.FDs-base.FDs) / float64(r.Opened)
		}
		ir.After, ir.BackToBaseline = m.WaitBack(ctx, pt, base, rig.Tolerance{}, backTimeout)
		if !ir.BackToBaseline {
			failed = append(failed, fmt.Sprintf("after %d sessions: %s (baseline %s)", n, ir.After, base))
		}
		if r.BadClose > 0 {
			failed = append(failed, fmt.Sprintf("%d of %d sessions did not end cleanly", r.BadClose, n))
		}
		log.Printf("n=%d: PSS %.1f KiB/session, RSS %.1f KiB/session, %.2f fds/session; after close fds %d (baseline %d)", n, ir.PSS, ir.RSS, ir.FDsPerSession, ir.After.FDs, base.FDs)
		rep.Idle = append(rep.Idle, ir)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	if o.loginDur > 0 {
		log.Printf("cached logins for %s with %d clients", o.loginDur, o.conc)
		n0 := counter.Count()
		r := load.RunLogins(ctx, o.conc, o.loginDur, 0, func(w, _ int) error {
			c, err := imapc.Dial(m.IMAPSAddr, imapc.Options{TLS: tc})
			if err != nil {
				return err
			}
			defer c.Close()
			if err := login(c, w); err != nil {
				return err
			}
			return c.Logout()
		})
		lr := &loginResult{Dur: r.Elapsed, Logins: r.Logins, Errors: r.Errors, PerSecond: r.PerSecond(),
			P50: r.P(50), P99: r.P(99), ProviderRequests: counter.Count() - n0, FirstErr: r.FirstErr}
		lr.After, lr.BackToBaseline = m.WaitBack(ctx, pt, base, rig.Tolerance{}, backTimeout)
		rep.Login = lr
		if r.Errors > 0 {
			failed = append(failed, fmt.Sprintf("%d of %d logins failed (first: %v)", r.Errors, r.Logins, r.FirstErr))
		}
		if !lr.BackToBaseline {
			failed = append(failed, fmt.Sprintf("after the login run: %s (baseline %s)", lr.After, base))
		}
	}
	if len(failed) > 0 {
		log.Printf("--- mailgate's log (last lines)\n%s", m.LogTail(15))
		return rep, errors.New(strings.Join(failed, "; "))
	}
	return rep, nil
}

func (r *reportData) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## mgload: mailgate under load (%s, %s)\n\n", r.Version, r.StartedAt.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Baseline after warm-up: %s, %d threads, RSS %.1f MiB. \"Back to baseline\" = no session socket left, and fds and goroutines at most the baseline plus the provider keep-alive connections held beyond the baseline's (1 fd + 2 goroutines each).\n\n", r.Baseline, r.Baseline.Threads, float64(r.Baseline.Mem.RSS)/1024)
	if len(r.Idle) > 0 {
		b.WriteString("| idle sessions in IDLE | opened in | mailgate RSS per session | PSS per session | fds per session | at peak: fds / goroutines / RSS | after close | back to baseline |\n|---|---|---|---|---|---|---|---|\n")
		for _, i := range r.Idle {
			n := strconv.Itoa(i.N)
			if i.N != i.Wanted {
				n = fmt.Sprintf("%d (of %d: fd limit %d)", i.N, i.Wanted, r.FDLimit)
			}
			fmt.Fprintf(&b, "| %s | %s | %.1f KiB | %.1f KiB | %.2f | %d / %s / %.0f MiB | %s | %s |\n",
				n, i.OpenTook.Round(100*time.Millisecond), i.RSS, i.PSS, i.FDsPerSession,
				i.Peak.FDs, i.Peak.GoroutinesString(), float64(i.Peak.Mem.RSS)/1024, i.After, yes(i.BackToBaseline))
		}
		b.WriteString("\n")
	}
	if l := r.Login; l != nil {
		fmt.Fprintf(&b, "Sustained cached-token logins (TLS + XOAUTH2 + LOGOUT, new connection each) for %s: **%.0f logins/s**, %d logins, **%d errors**, p50 %.1f ms, p99 %.1f ms, %d provider requests; after: %s (back to baseline: %s).\n\n",
			l.Dur.Round(time.Second), l.PerSecond, l.Logins, l.Errors, l.P50, l.P99, l.ProviderRequests, l.After, yes(l.BackToBaseline))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
