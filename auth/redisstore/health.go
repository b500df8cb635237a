package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/redis/go-redis/v9"
)

// ErrDown is wrapped by the errors of operations refused without trying,
// because the store is down (see State).
var ErrDown = errors.New("redisstore: redis is down")

// outageReplies are the server replies that mean it cannot serve at all.
var outageReplies = []string{"LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOAUTH", "WRONGPASS"}

// probeKey is the key the probe reads (and never writes).
const probeKey = "probe"

// health is the store's state; each change is a new value.
type health struct {
	up    bool
	since time.Time
	err   error
	epoch uint64 // incremented by each change
}

// State is the store's health.
type State struct {
	// Up reports whether operations are sent to the server.
	Up bool
	// Since is when Up last changed (New's time if it never did).
	Since time.Time
	// Err is why the store is down; nil when up.
	Err error
}

// Stats are cumulative counters.
type Stats struct {
	Ops     uint64 // operations sent to the server
	Errors  uint64 // operations that failed (a miss is not a failure)
	Skipped uint64 // operations refused without trying while down
	Probes  uint64 // health probes sent
}

// State returns the store's health. It never blocks.
func (s *Store) State() State {
	h := s.health.Load()
	return State{Up: h.up, Since: h.since, Err: h.err}
}

// Degraded reports whether the store is down, so that its users work on
// local state alone. It never blocks.
func (s *Store) Degraded() bool { return !s.health.Load().up }

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Ops: s.ops.Load(), Errors: s.errs.Load(), Skipped: s.skipped.Load(), Probes: s.probes.Load()}
}

// do runs op within OpTimeout, unless the store is down. A failure that
// means the server cannot serve takes the store down, unless the caller's
// ctx ended (the caller gave up, not the server).
func (s *Store) do(ctx context.Context, name string, op func(context.Context) error) error {
	h := s.health.Load()
	if !h.up {
		s.skipped.Add(1)
		return fmt.Errorf("%w (since %s): %w", ErrDown, h.since.UTC().Format(time.RFC3339), h.err)
	}
	octx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	s.ops.Add(1)
	err := op(octx)
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	s.errs.Add(1)
	err = fmt.Errorf("redisstore: %s: %w", name, err)
	if ctx.Err() == nil && outage(err) {
		s.change(h.epoch, false, err)
	}
	return err
}

// outage reports whether err means the server cannot serve at all, rather
// than refusing one command (a wrong key type, a missing permission) or
// having no free connection for a burst of logins (which only that
// operation pays for: an attacker's burst must not take the store down).
func outage(err error) bool {
	if errors.Is(err, redis.ErrPoolTimeout) {
		return false // every connection busy: a burst, not an outage (the probe still sees a dead server)
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return true // no reply: network, timeout, closed
	}
	for _, p := range outageReplies {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// watch probes the server every probeEvery until Close.
func (s *Store) watch() {
	defer close(s.done)
	tick := time.NewTicker(s.probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.check(context.Background())
		}
	}
}

// check probes the server once and records the result: any failure of the
// probe, which uses what the operations use, takes the store down, and so
// does an answer slower than OpTimeout (a slow server would otherwise go
// up and down at every probe). The probe may take longer (up to
// DialTimeout more) only to fail with the cause.
func (s *Store) check(ctx context.Context) {
	epoch := s.health.Load().epoch
	ctx, cancel := context.WithTimeout(ctx, s.probeTimeout)
	defer cancel()
	s.probes.Add(1)
	start := time.Now()
	err := s.probe(ctx)
	if el := time.Since(start); err == nil && el > s.opTimeout {
		err = fmt.Errorf("answered in %v, more than OpTimeout (%v)", el.Round(time.Millisecond), s.opTimeout)
	}
	if err != nil {
		err = fmt.Errorf("redisstore: probe: %w", err)
	}
	s.change(epoch, err == nil, err)
}

// probe reads probeKey through the penalty script: it checks the
// connection, the credentials and the permission to run the script, and
// loads the script into the server's cache.
func (s *Store) probe(ctx context.Context) error {
	op := auth.PenaltyOp{Key: probeKey, Kind: auth.PenaltyRead, Now: time.Now(), Rate: 1}
	_, err := s.runPenalties(ctx, s.prefix, []auth.PenaltyOp{op})
	return err
}

// change records that the store is up or down, if it is not already and
// nothing changed since epoch (a late failure of an operation sent before
// the last change says nothing about the server now), and tells
// OnStateChange.
func (s *Store) change(epoch uint64, up bool, err error) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	h := s.health.Load()
	if h.up == up || h.epoch != epoch || s.closing() {
		return
	}
	s.health.Store(&health{up: up, since: time.Now(), err: err, epoch: epoch + 1})
	if s.onChange != nil {
		s.onChange(up, err)
	}
}

// closing reports whether Close was called (operations then fail because
// of it, not of the server).
func (s *Store) closing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}
