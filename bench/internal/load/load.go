// Package load drives many clients at once: closed-loop login workers with
// latency samples, and many sessions opened and left sitting in IMAP IDLE.
package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/stats"
)

// LoginFunc runs one complete login cycle for worker w (its n-th cycle):
// connect, TLS, authenticate, LOGOUT.
type LoginFunc func(w, n int) error

// LoginResult is the outcome of RunLogins.
type LoginResult struct {
	Logins    int           // completed cycles (errors included)
	Errors    int           // cycles that failed
	FirstErr  error         // the first failure, nil if none
	Elapsed   time.Duration // wall time of the run
	Latencies []time.Duration
}

// PerSecond is successful logins per second.
func (r LoginResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Logins-r.Errors) / r.Elapsed.Seconds()
}

// P is the p-th percentile latency in milliseconds.
func (r LoginResult) P(p float64) float64 {
	return float64(stats.Percentile(r.Latencies, p)) / float64(time.Millisecond)
}

// RunLogins runs conc workers in a closed loop, each calling f back to back,
// until dur has passed (when dur > 0) or total cycles were started (when
// total > 0), or ctx is done.
func RunLogins(ctx context.Context, conc int, dur time.Duration, total int, f LoginFunc) LoginResult {
	var (
		mu      sync.Mutex
		res     LoginResult
		started atomic.Int64
		wg      sync.WaitGroup
	)
	var deadline time.Time
	start := time.Now()
	if dur > 0 {
		deadline = start.Add(dur)
	}
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs, n := 0, 0
			var first error
			for ; ctx.Err() == nil; n++ {
				if !deadline.IsZero() && time.Now().After(deadline) {
					break
				}
				if total > 0 && started.Add(1) > int64(total) {
					break
				}
				t0 := time.Now()
				if err := f(w, n); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			res.Logins += len(lat) + errs
			res.Errors += errs
			res.Latencies = append(res.Latencies, lat...)
			if res.FirstErr == nil {
				res.FirstErr = first
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// OpenFunc opens session i, logs in and starts IDLE.
type OpenFunc func(i int) (*imapc.Conn, error)

// Sessions is a set of sessions sitting in IDLE.
type Sessions struct {
	Conns  []*imapc.Conn
	Failed int   // sessions that could not be opened
	Err    error // the first failure
	Took   time.Duration
}

// OpenIdle opens n sessions, conc at a time. Sessions that fail are
// counted, not retried.
func OpenIdle(ctx context.Context, n, conc int, open OpenFunc) *Sessions {
	s := &Sessions{Conns: make([]*imapc.Conn, 0, n)}
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := open(i)
				mu.Lock()
				if err != nil {
					s.Failed++
					if s.Err == nil {
						s.Err = err
					}
				} else {
					s.Conns = append(s.Conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.Took = time.Since(start)
	if s.Err == nil && ctx.Err() != nil {
		s.Err = ctx.Err()
	}
	return s
}

// Close ends every session: DONE, LOGOUT, close; conc at a time. It returns
// how many did not end cleanly.
func (s *Sessions) Close(conc int) int {
	var (
		bad  atomic.Int64
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(s.Conns) {
					return
				}
				c := s.Conns[i]
				if err := c.Done(); err != nil {
					bad.Add(1)
					c.Close()
					continue
				}
				if err := c.Logout(); err != nil {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	s.Conns = nil
	return int(bad.Load())
}
