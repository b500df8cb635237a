package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/bench/internal/stats"
)

// soakReport is everything the soak saw.
type soakReport struct {
	o        options
	Started  time.Time
	Version  string
	Failures []string

	ClientNoFile, MailgateNoFile int
	SoakConfig                   string
	Dropped, PreloginDropped     []string // limits keys the binary did not know
	CapsLowered                  string   // mailgate's warning when it fitted its caps to its open-files limit
	PreloginPool                 int
	MailgateExited               string // phase in which it exited, "" = never

	SessionsOpened int
	SessionsTook   time.Duration
	Snaps          []snapshot

	FloodWorkers  int
	FloodOpenTook time.Duration
	Flood         []load.HoldStats
	Refused       map[string]float64 // growth of mailgate_connections_refused_total during the flood
	Probes        []probeResult
	IdleAlive     int
	IdleErr       error
	IdleTook      time.Duration
	BadClose      int
	Back          bool
	PeakRSS       int64 // KiB, VmHWM

	Prelogin []preloginResult
}

// preloginResult is step 5 for one listener kind.
type preloginResult struct {
	Kind          string
	K, Held       int
	Stats         load.TargetStats
	Before, After rig.Counts
	PSS, RSS, FDs float64 // per connection (KiB, KiB, count)
	Goroutines    float64
	// Heap and Stacks are the growth of go_memstats_heap_inuse_bytes and
	// go_memstats_stack_inuse_bytes per connection, KiB (0: no /metrics).
	Heap, Stacks float64
	Back         bool
}

func (r *soakReport) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func (r *soakReport) markdown() string {
	var b strings.Builder
	o := r.o
	fmt.Fprintf(&b, "## mgsoak: mailgate under a connection flood (%s, %s)\n\n", r.Version, r.Started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "%d IDLE sessions (%d per source address, opened in %s), then %d idle connections that never send a byte (%d per source address 127.1.x.y, half to the implicit-TLS port, half to the STARTTLS port, held by %d processes, opened in %s). Backends: internal/demo (IMAP with master logins, token issuer; SMTP submission with master logins for the pre-login measurement) in the soak process. Open-files limit: soak processes %d, mailgate %d. ",
		o.sessions, o.sessPerAddr, r.SessionsTook.Round(100*time.Millisecond), o.flood, o.floodPerAddr, r.FloodWorkers, r.FloodOpenTook.Round(100*time.Millisecond), r.ClientNoFile, r.MailgateNoFile)
	if o.holdTimeouts > 0 {
		fmt.Fprintf(&b, "Handshake, pre-auth and command timeouts set to %s so that nothing idle is dropped by a timer during the measurement. ", o.holdTimeouts)
	}
	if len(o.limits) > 0 {
		fmt.Fprintf(&b, "Limits overridden: %v. ", map[string]string(o.limits))
	}
	b.WriteString("Other limits: mailgate's defaults")
	if r.CapsLowered != "" {
		fmt.Fprintf(&b, ", which it fitted to its open-files limit: `%s`", r.CapsLowered)
	}
	b.WriteString(".\n\n")
	if len(r.Dropped) > 0 {
		fmt.Fprintf(&b, "**This mailgate does not know the limits keys %s: left out.**\n\n", strings.Join(r.Dropped, ", "))
	}

	b.WriteString("| moment | RSS MiB | PSS MiB | peak RSS (VmHWM) MiB | fds | goroutines | client connections open |\n|---|---|---|---|---|---|---|\n")
	for _, s := range r.Snaps {
		open := "n/a"
		if s.Open >= 0 {
			open = fmt.Sprintf("%.0f", s.Open)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s |\n", s.Label, mib(s.C.Mem.RSS), mib(s.C.Mem.PSS), mib(s.C.Mem.HWM), s.C.FDs, s.C.GoroutinesString(), open)
	}
	b.WriteString("\n")

	if len(r.Flood) > 0 {
		b.WriteString("| flood, per listener | dialled | connected | got bytes | closed by mailgate within 1 s | closed later | still open at the end | dial errors |\n|---|---|---|---|---|---|---|---|\n")
		per := map[string]*load.TargetStats{}
		var order []string
		for _, hs := range r.Flood {
			for _, t := range hs.Targets {
				a := per[t.Target]
				if a == nil {
					a = &load.TargetStats{Target: t.Target, DialErrs: map[string]int{}}
					per[t.Target] = a
					order = append(order, t.Target)
				}
				sum := load.HoldStats{Targets: []load.TargetStats{*a, t}}.Total()
				sum.Target = t.Target
				*a = sum
			}
		}
		var all []load.TargetStats
		for _, t := range order {
			all = append(all, *per[t])
			fmt.Fprintf(&b, "| %s | %s |\n", r.listenerName(t), floodCells(*per[t]))
		}
		fmt.Fprintf(&b, "| **all** | %s |\n\n", floodCells(load.HoldStats{Targets: all}.Total()))
	}
	if len(r.Refused) > 0 {
		keys := slices.Sorted(maps.Keys(r.Refused))
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %.0f", k, r.Refused[k]))
		}
		fmt.Fprintf(&b, "mailgate_connections_refused_total during the flood: %s.\n\n", strings.Join(parts, "; "))
	}

	if len(r.Probes) > 0 {
		b.WriteString("| new login from a fresh address (TCP+TLS+XOAUTH2, cached token) | probes | failed | p50 ms | max ms | max to the greeting ms | first error |\n|---|---|---|---|---|---|---|\n")
		for _, opening := range []bool{true, false} {
			name := "while the flood was held"
			if opening {
				name = "while the flood was being opened"
			}
			var ok []time.Duration
			var greet time.Duration
			n, failed := 0, 0
			var first error
			for _, p := range r.Probes {
				if p.Opening != opening {
					continue
				}
				n++
				greet = max(greet, p.Greeting)
				if p.Err != nil {
					failed++
					if first == nil {
						first = p.Err
					}
					continue
				}
				ok = append(ok, p.Took)
			}
			p50, mx, fe := "", "", ""
			if len(ok) > 0 {
				p50, mx = fmt.Sprintf("%.1f", ms(stats.Percentile(ok, 50))), fmt.Sprintf("%.1f", ms(slices.Max(ok)))
			}
			if first != nil {
				fe = fmt.Sprintf("%.80s", first.Error())
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %.1f | %s |\n", name, n, failed, p50, mx, ms(greet), fe)
		}
		which := "Every probe made while the flood is held"
		if o.strictOpening {
			which = "Every probe"
		}
		fmt.Fprintf(&b, "\n%s must succeed within %s (-login-within).\n\n", which, o.loginWithin)
	}
	if r.SessionsOpened > 0 {
		fmt.Fprintf(&b, "IDLE sessions alive during the flood: **%d of %d** received the EXISTS of a message appended to their mailbox (all within %s); %d did not end cleanly (DONE, LOGOUT) afterwards.\n\n",
			r.IdleAlive, r.SessionsOpened, r.IdleTook.Round(time.Millisecond), r.BadClose)
	}
	if len(r.Snaps) > 0 {
		fmt.Fprintf(&b, "Peak RSS (VmHWM) over the soak: **%s MiB** (bound -max-rss %d MiB). Back to baseline after closing (no session socket, fds within +%d, goroutines within +%d, plus provider keep-alives): **%s**.\n\n",
			mib(r.PeakRSS), o.maxRSS, o.tolFDs, o.tolG, yes(r.Back))
	}
	if r.MailgateExited != "" {
		fmt.Fprintf(&b, "**mailgate exited during %s.**\n\n", r.MailgateExited)
	}
	fmt.Fprintf(&b, "What limited the flood: %s\n\n", r.limitedBy())

	if len(r.Prelogin) > 0 {
		fmt.Fprintf(&b, "Pre-login memory per idle connection (a fresh mailgate per listener and state, with IMAPS, IMAP STARTTLS, SMTPS and SMTP submission STARTTLS listeners, limits.max_prelogin_connections %d, max_connections 100; K connections from K distinct addresses 127.2.x.y, which send nothing (\"after TLS\": nothing after their handshake); growth of mailgate's PSS/RSS once steady, divided by the connections held):\n\n", r.PreloginPool)
		if len(r.PreloginDropped) > 0 {
			fmt.Fprintf(&b, "**This mailgate does not know the limits keys %s: left out.**\n\n", strings.Join(r.PreloginDropped, ", "))
		}
		b.WriteString("| listener, state | K | held | PSS per connection KiB | RSS per connection KiB | fds per connection | goroutines per connection | back to baseline |\n|---|---|---|---|---|---|---|---|\n")
		for _, p := range r.Prelogin {
			fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %.1f | %.2f | %.2f | %s |\n", p.Kind, p.K, p.Held, p.PSS, p.RSS, p.FDs, p.Goroutines, yes(p.Back))
		}
		b.WriteString("\n")
		var split []string
		for _, p := range r.Prelogin {
			if p.Heap != 0 || p.Stacks != 0 {
				split = append(split, fmt.Sprintf("%s: %.1f heap + %.1f stacks", p.Kind, p.Heap, p.Stacks))
			}
		}
		if len(split) > 0 {
			fmt.Fprintf(&b, "Of that, the growth of the Go heap in use and of goroutine stacks (go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes) per connection, KiB: %s.\n\n", strings.Join(split, "; "))
		}
	}
	if len(r.Failures) == 0 {
		b.WriteString("**All assertions passed.**\n")
	} else {
		b.WriteString("**Assertions failed:**\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

// listenerName names a flood target by the port order of the soak run.
func (r *soakReport) listenerName(target string) string {
	if len(r.Flood) > 0 && len(r.Flood[0].Targets) == 2 {
		switch target {
		case r.Flood[0].Targets[0].Target:
			return "implicit TLS " + target
		case r.Flood[0].Targets[1].Target:
			return "STARTTLS/plain " + target
		}
	}
	return target
}

func floodCells(t load.TargetStats) string {
	var errs []string
	for _, k := range slices.Sorted(maps.Keys(t.DialErrs)) {
		errs = append(errs, fmt.Sprintf("%s: %d", k, t.DialErrs[k]))
	}
	e := "none"
	if len(errs) > 0 {
		e = strings.Join(errs, ", ")
	}
	return fmt.Sprintf("%d | %d | %d | %d | %d | %d | %s", t.Dialed, t.Connected, t.Greeted, t.ClosedFast, t.ClosedLater, t.Open, e)
}

// limitedBy says what bounded the connections mailgate held during the
// flood.
func (r *soakReport) limitedBy() string {
	var peakFDs int
	for _, s := range r.Snaps {
		if strings.HasPrefix(s.Label, "flood peak") {
			peakFDs = s.C.FDs
		}
	}
	var tot load.TargetStats
	if len(r.Flood) > 0 {
		var all []load.TargetStats
		for _, hs := range r.Flood {
			all = append(all, hs.Targets...)
		}
		tot = load.HoldStats{Targets: all}.Total()
	}
	var parts []string
	if emfile := tot.DialErrs["EMFILE (client's open-files limit)"]; emfile > 0 {
		parts = append(parts, fmt.Sprintf("the client's own open-files limit (%d dials failed with EMFILE)", emfile))
	}
	if peakFDs > 0 && r.MailgateNoFile > 0 && peakFDs >= r.MailgateNoFile-10 {
		parts = append(parts, fmt.Sprintf("mailgate's open-files limit (%d, peak %d fds)", r.MailgateNoFile, peakFDs))
	}
	if closed := tot.ClosedFast + tot.ClosedLater; closed > 0 {
		why := ""
		if len(r.Refused) > 0 {
			why = " (" + r.refusedByReason() + ")"
		}
		parts = append(parts, fmt.Sprintf("mailgate's own caps: it closed %d of the %d connections%s, %d of them within 1 s of the connect, and held at most %d fds (limit %d)",
			closed, tot.Connected, why, tot.ClosedFast, peakFDs, r.MailgateNoFile))
	}
	if n := len(tot.DialErrs); n > 0 && len(parts) == 0 {
		parts = append(parts, "dial errors (see the table)")
	}
	if len(parts) == 0 {
		return fmt.Sprintf("nothing: all %d connections were held (mailgate peak %d fds, limit %d).", tot.Connected, peakFDs, r.MailgateNoFile)
	}
	return strings.Join(parts, "; ") + "."
}

// refusedByReason sums the refusals of the flood per reason label.
func (r *soakReport) refusedByReason() string {
	per := map[string]float64{}
	for labels, v := range r.Refused {
		reason := "?"
		for _, l := range strings.Split(labels, ",") {
			if k, val, ok := strings.Cut(l, "="); ok && k == "reason" {
				reason = strings.Trim(val, `"`)
			}
		}
		per[reason] += v
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(per)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, per[k]))
	}
	return "mailgate_connections_refused_total by reason: " + strings.Join(parts, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
