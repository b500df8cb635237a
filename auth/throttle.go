package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Throttle defaults (see ThrottleOptions).
const (
	DefaultFailuresPerWindow = 10
	DefaultThrottleWindow    = time.Minute
	DefaultThrottleBaseDelay = time.Second
	DefaultThrottleMaxDelay  = 15 * time.Second // as Dovecot's auth penalty
	DefaultThrottleBlockFor  = 5 * time.Minute
	DefaultThrottleEntries   = 100_000
	// blockFactor: an IP is blocked once its failure score reaches
	// blockFactor × Failures (see ThrottleOptions.BlockAfter).
	blockFactor = 3
)

// ThrottleOptions configures NewThrottle. The zero value gives the
// defaults: 10 failures per minute free, then 1, 2, 4, 8, 15, 15... s of
// delay, a 5-minute block at 30.
type ThrottleOptions struct {
	// Failures is how many failures per Window a client IP (or a claimed
	// user) may have without delay: limits.auth_failures_per_ip. Zero:
	// DefaultFailuresPerWindow. Negative: throttling is off.
	Failures int
	// Window is the period of Failures. Zero: one minute.
	Window time.Duration
	// BaseDelay is the first delay; each further failure doubles it, up to
	// MaxDelay. Zero: 1 s / 15 s.
	BaseDelay, MaxDelay time.Duration
	// BlockAfter is the failure score at which an IP is refused outright
	// (ErrThrottled, no provider call) for BlockFor. Zero: 3 × Failures
	// and 5 minutes. Claimed users are only delayed, never blocked, so that
	// nobody can lock a user out by failing in their name.
	BlockAfter int
	BlockFor   time.Duration
	// MaxEntries bounds the IPs and users tracked; when full, idle entries
	// and then random ones are forgotten. Zero: DefaultThrottleEntries.
	MaxEntries int
	// Logger receives a line when an IP gets blocked. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Throttle slows down and then blocks clients that keep failing to
// authenticate, in the manner of Dovecot's auth penalty, for IMAP and SMTP
// alike. Each client IP (IPv4 address, IPv6 /64) and each claimed user
// name has a failure score that grows by one per failure and drains at
// Failures per Window, so a steady Failures per Window costs nothing.
// Above Failures, every attempt first waits BaseDelay × 2^(score−Failures),
// at most MaxDelay; a sequential client is thereby held to about Failures
// per Window. A client that fails faster (parallel connections) reaches
// BlockAfter and its IP is refused for BlockFor.
//
// Success forgets the IP's and the user's scores (as Dovecot does), except
// an active block. A nil *Throttle throttles nothing. Safe for concurrent use.
type Throttle struct {
	free       float64
	rate       float64 // score drained per second
	base, max  time.Duration
	blockAt    float64
	blockFor   time.Duration
	maxEntries int
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]*penalty
}

// penalty is the failure record of one IP group or user.
type penalty struct {
	score        float64
	updated      time.Time
	blockedUntil time.Time
}

// NewThrottle returns a Throttle, or nil (no throttling) when
// opts.Failures is negative.
func NewThrottle(opts ThrottleOptions) *Throttle {
	if opts.Failures < 0 {
		return nil
	}
	t := &Throttle{
		free: float64(opts.Failures), base: opts.BaseDelay, max: opts.MaxDelay,
		blockAt: float64(opts.BlockAfter), blockFor: opts.BlockFor, maxEntries: opts.MaxEntries,
		log: opts.Logger, now: opts.Now, entries: map[string]*penalty{},
	}
	if t.free == 0 {
		t.free = DefaultFailuresPerWindow
	}
	window := opts.Window
	if window <= 0 {
		window = DefaultThrottleWindow
	}
	t.rate = t.free / window.Seconds()
	if t.base <= 0 {
		t.base = DefaultThrottleBaseDelay
	}
	if t.max <= 0 {
		t.max = DefaultThrottleMaxDelay
	}
	if t.blockAt <= 0 {
		t.blockAt = blockFactor * t.free
	}
	if t.blockFor <= 0 {
		t.blockFor = DefaultThrottleBlockFor
	}
	if t.maxEntries <= 0 {
		t.maxEntries = DefaultThrottleEntries
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// Check is called before an authentication attempt by ip (an address, with
// or without ":port") for user (the claimed name; may be empty). It
// returns an error wrapping ErrThrottled at once when the IP is blocked;
// otherwise it waits the delay the IP and the user have earned (the longer
// of the two) and returns nil, or an error wrapping ErrThrottled if ctx
// ends first.
func (t *Throttle) Check(ctx context.Context, ip, user string) error {
	d, until := t.Delay(ip, user)
	if !until.IsZero() {
		return fmt.Errorf("%w: client blocked until %s", ErrThrottled, until.UTC().Format(time.RFC3339))
	}
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting %s after earlier failures: %w", ErrThrottled, d, ctx.Err())
	}
}

// Delay returns what Check would do without waiting: the delay, or the end
// of the IP's block (zero when not blocked).
func (t *Throttle) Delay(ip, user string) (time.Duration, time.Time) {
	if t == nil {
		return 0, time.Time{}
	}
	ipKey, userKey := ipGroup(ip), userKeyOf(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var d time.Duration
	if p := t.entries[ipKey]; p != nil && ipKey != "" {
		if now.Before(p.blockedUntil) {
			return 0, p.blockedUntil
		}
		d = t.delayFor(p.drain(now, t.rate))
	}
	if p := t.entries[userKey]; p != nil && userKey != "" {
		d = max(d, t.delayFor(p.drain(now, t.rate)))
	}
	return d, time.Time{}
}

// Failure records a failed authentication.
func (t *Throttle) Failure(ip, user string) {
	if t == nil {
		return
	}
	ipKey, userKey := ipGroup(ip), userKeyOf(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if ipKey != "" {
		p := t.entry(ipKey, now)
		if s := p.drain(now, t.rate) + 1; s >= t.blockAt && !now.Before(p.blockedUntil) {
			p.score = s
			p.blockedUntil = now.Add(t.blockFor)
			t.log.Warn("auth: client blocked after repeated authentication failures",
				"ip_group", ipKey, "failures", int(math.Round(s)), "until", p.blockedUntil.UTC().Format(time.RFC3339))
		} else {
			p.score = s
		}
	}
	if userKey != "" {
		p := t.entry(userKey, now)
		p.score = p.drain(now, t.rate) + 1
	}
}

// Success forgets the failures of ip and user, unless ip is blocked.
func (t *Throttle) Success(ip, user string) {
	if t == nil {
		return
	}
	ipKey, userKey := ipGroup(ip), userKeyOf(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if p := t.entries[ipKey]; p != nil && !now.Before(p.blockedUntil) {
		delete(t.entries, ipKey)
	}
	delete(t.entries, userKey)
}

// Len returns the number of IPs and users tracked.
func (t *Throttle) Len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// delayFor maps a score to a delay: none up to free, then base doubling
// per failure above it, capped at max.
func (t *Throttle) delayFor(score float64) time.Duration {
	over := score - t.free
	if over < 0 {
		return 0
	}
	n := int(over) // 0 for the first attempt over the allowance
	if n >= 30 {
		return t.max
	}
	return min(t.base<<n, t.max)
}

// drain returns the score after draining at rate per second until now,
// and records it.
func (p *penalty) drain(now time.Time, rate float64) float64 {
	if el := now.Sub(p.updated).Seconds(); el > 0 {
		p.score = math.Max(0, p.score-el*rate)
		p.updated = now
	}
	return p.score
}

// entry returns the record of key, creating it (and making room) if needed.
func (t *Throttle) entry(key string, now time.Time) *penalty {
	if p := t.entries[key]; p != nil {
		return p
	}
	if len(t.entries) >= t.maxEntries {
		t.evictLocked(now)
	}
	p := &penalty{updated: now}
	t.entries[key] = p
	return p
}

// evictLocked forgets drained entries among the first evictScan of the map,
// or else one entry that is not blocked (or, failing that, any).
func (t *Throttle) evictLocked(now time.Time) {
	var victim string
	dropped, n := 0, 0
	for k, p := range t.entries {
		if !now.Before(p.blockedUntil) && p.drain(now, t.rate) == 0 {
			delete(t.entries, k)
			dropped++
		} else if victim == "" && !now.Before(p.blockedUntil) {
			victim = k
		}
		if n++; n >= evictScan {
			break
		}
	}
	if dropped > 0 {
		return
	}
	if victim == "" {
		for k := range t.entries {
			victim = k
			break
		}
	}
	delete(t.entries, victim)
}

// ipGroup returns the throttling key of a client address: "ip:" and the
// IPv4 address, or the IPv6 /64 (a host usually owns a whole /64).
// Unparsable input is used as it is; empty input gives "" (not tracked).
func ipGroup(addr string) string {
	if addr == "" {
		return ""
	}
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		ip = ap.Addr()
	} else if a, err := netip.ParseAddr(addr); err == nil {
		ip = a
	} else {
		return "ip:" + addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail for /64 of an IPv6 address
		return "ip:" + p.String()
	}
	return "ip:" + ip.String()
}

// userKeyOf returns the throttling key of a claimed user name ("" = none).
func userKeyOf(user string) string {
	user = strings.ToLower(strings.TrimSpace(user))
	if user == "" {
		return ""
	}
	if len(user) > maxMailbox {
		user = user[:maxMailbox]
	}
	return "user:" + user
}

// Throttled is an Authenticator that applies a Throttle around another:
// Check before (IP from Credentials.RemoteAddr, user from Credentials.User),
// Failure after ErrInvalidCredentials, Success after a success (for the
// claimed and the authenticated user). ErrUnavailable counts for nothing: a
// provider outage must not block users. A nil T throttles nothing.
type Throttled struct {
	Next Authenticator
	T    *Throttle
}

var _ Authenticator = Throttled{}

// Authenticate implements Authenticator.
func (a Throttled) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	if err := a.T.Check(ctx, c.RemoteAddr, c.User); err != nil {
		return Identity{}, err
	}
	id, err := a.Next.Authenticate(ctx, c)
	switch {
	case err == nil:
		a.T.Success(c.RemoteAddr, c.User)
		if !strings.EqualFold(id.User, c.User) {
			a.T.Success("", id.User)
		}
	case errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrUnavailable):
		a.T.Failure(c.RemoteAddr, c.User)
	}
	return id, err
}
