package load

import (
	"context"
	"time"

	"github.com/mailgate/mailgate/bench/internal/proc"
)

// Target is a set of processes whose memory is measured, e.g. mailgate's
// pid, nginx's master and workers, or every process of a Dovecot.
type Target struct {
	Name string
	PIDs func() []int
}

// IdleReport is what MeasureIdle saw.
type IdleReport struct {
	Wanted, Opened, Failed int
	FirstErr               error
	OpenTook               time.Duration
	Before, After          map[string]proc.Mem // per Target name, KiB
	BadClose               int                 // sessions that did not end cleanly
}

// PerSession returns the PSS and RSS growth of target per open session in
// KiB.
func (r IdleReport) PerSession(target string) (pss, rss float64) {
	if r.Opened == 0 {
		return 0, 0
	}
	b, a := r.Before[target], r.After[target]
	return float64(a.PSS-b.PSS) / float64(r.Opened), float64(a.RSS-b.RSS) / float64(r.Opened)
}

// settleTimeout bounds the wait for memory to stop changing.
const settleTimeout = 15 * time.Second

// MeasureIdle measures targets, opens n sessions (conc at a time) that sit
// in IDLE, waits until the targets' memory stops growing, measures again,
// and closes every session. between, if not nil, runs while the sessions
// are open (after the measurement).
func MeasureIdle(ctx context.Context, n, conc int, open OpenFunc, targets []Target, between func(opened int)) IdleReport {
	r := IdleReport{Wanted: n, Before: map[string]proc.Mem{}, After: map[string]proc.Mem{}}
	measure := func(into map[string]proc.Mem) {
		for _, t := range targets {
			into[t.Name] = proc.SumMemory(t.PIDs())
		}
	}
	Settle(ctx, targets)
	measure(r.Before)
	s := OpenIdle(ctx, n, conc, open)
	r.Opened, r.Failed, r.FirstErr, r.OpenTook = len(s.Conns), s.Failed, s.Err, s.Took
	Settle(ctx, targets)
	measure(r.After)
	if between != nil {
		between(r.Opened)
	}
	r.BadClose = s.Close(conc)
	return r
}

// Settle waits until the summed PSS of all targets changes by less than
// 0.5% over one second (or settleTimeout passes).
func Settle(ctx context.Context, targets []Target) {
	total := func() int64 {
		var sum int64
		for _, t := range targets {
			sum += proc.SumMemory(t.PIDs()).PSS
		}
		return sum
	}
	deadline := time.Now().Add(settleTimeout)
	prev := total()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Second)
		cur := total()
		d := cur - prev
		if d < 0 {
			d = -d
		}
		if float64(d) <= 0.005*float64(prev) {
			return
		}
		prev = cur
	}
}
