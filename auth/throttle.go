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
	"sync/atomic"
	"time"
)

// ErrBlocked: the client's address group is blocked after too many
// failures (see ThrottleOptions.BlockAfter); no attempt from it reaches the
// provider or the backend until the block ends. It wraps ErrThrottled.
var ErrBlocked = fmt.Errorf("%w: client address blocked", ErrThrottled)

// Throttle defaults (see ThrottleOptions).
const (
	DefaultFailuresPerWindow = 10
	DefaultThrottleWindow    = time.Minute
	DefaultThrottleBaseDelay = time.Second
	DefaultThrottleMaxDelay  = 15 * time.Second // as Dovecot's auth penalty
	DefaultThrottleBlockFor  = 5 * time.Minute
	DefaultThrottleEntries   = 100_000
	DefaultIPv4Prefix        = 32
	DefaultIPv6Prefix        = 56
	// blockFactor: an IP is blocked once its failure score reaches
	// blockFactor × Failures (see ThrottleOptions.BlockAfter).
	blockFactor = 3
)

// ThrottleOptions configures NewThrottle. The zero value gives the
// defaults: 10 failures per minute free, then 1, 2, 4, 8, 15, 15... s of
// delay, a 5-minute block at 30.
type ThrottleOptions struct {
	// Failures is how many failures per Window a client address group (or,
	// for passwords, a user) may have without delay:
	// limits.auth_failures_per_ip. Zero: DefaultFailuresPerWindow.
	// Negative: throttling is off.
	Failures int
	// Window is the period of Failures. Zero: one minute.
	Window time.Duration
	// BaseDelay is the first delay; each further failure doubles it, up to
	// MaxDelay. Zero: 1 s / 15 s.
	BaseDelay, MaxDelay time.Duration
	// BlockAfter is the failure score at which an IP is refused outright
	// (ErrBlocked, no provider or backend call) for BlockFor. Zero:
	// 3 × Failures and 5 minutes. Users are only delayed, never blocked, so
	// that nobody can lock a user out by failing in their name.
	BlockAfter int
	BlockFor   time.Duration
	// IPv4Prefix and IPv6Prefix group client addresses: all addresses of
	// one IPv4 /IPv4Prefix or IPv6 /IPv6Prefix network share one score and
	// one block (limits.ipv4_prefix, limits.ipv6_prefix). Zero: /32 (each
	// IPv4 address alone) and /56 (what an ISP commonly delegates to one
	// customer, so one subscriber cannot spread failures over 256 /64s).
	// Values above 32 or 128 are taken as 32 or 128.
	IPv4Prefix, IPv6Prefix int
	// MaxEntries bounds the address groups and users tracked; when full,
	// idle entries and then random ones are forgotten. Zero:
	// DefaultThrottleEntries. (Users with a password attempt in flight are
	// tracked apart, see Begin.)
	MaxEntries int
	// Logger receives a line when an IP gets blocked. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Shared, if not nil, keeps the scores and blocks in a store shared
	// with the other replicas (see SharedThrottle), so that a client
	// spreading its attempts over several replicas is held as one replica
	// would hold it. While the store answers, its records decide; the local
	// table is kept up to date all the same and decides alone whenever the
	// store fails (see SharedFailClosed). Nil: local only.
	Shared SharedThrottle
	// SharedFailClosed makes Check and Begin refuse attempts while Shared
	// fails, with an error wrapping ErrUnavailable (a temporary failure,
	// IMAP NO [UNAVAILABLE] / SMTP 454), instead of throttling on the
	// local table alone. Ignored when Shared is nil. False: local table.
	SharedFailClosed bool
}

// Throttle slows down and then blocks clients that keep failing to
// authenticate, in the manner of Dovecot's auth penalty, for IMAP and SMTP
// alike. Each client address group (IPv4 /32, IPv6 /56 by default) and
// each user name has a failure score that grows by one per failure and
// drains at Failures per Window, so a steady Failures per Window costs
// nothing. Above Failures, every attempt first waits
// BaseDelay × 2^(score−Failures), at most MaxDelay; a sequential client is
// thereby held to about Failures per Window. A client that fails faster
// (parallel connections) reaches BlockAfter and its address group is
// refused for BlockFor (ErrBlocked).
//
// Failures are charged to what is proven. A token attempt proves nothing
// about the user it names, so token logins (Throttled) are charged to the
// client address only: nobody can slow a chosen user down by sending junk
// tokens in their name. A password can be guessed, so password attempts
// (Begin) are charged to the address and to the user, and the attempts for
// one user run one at a time; the caller passes no user for a value that
// cannot be guessed either (an app password).
//
// Success forgets the scores (as Dovecot does), except an active block.
// With ThrottleOptions.Shared, scores and blocks are those of all the
// replicas (see there). A nil *Throttle throttles nothing. Safe for
// concurrent use.
type Throttle struct {
	free       float64
	rate       float64 // score drained per second
	base, max  time.Duration
	blockAt    float64
	blockFor   time.Duration
	maxEntries int
	v4, v6     int // address group prefix lengths
	log        *slog.Logger
	now        func() time.Time
	shared     SharedThrottle // nil: local only
	failClosed bool           // refuse while shared fails
	// writesLost: the shared store's last failure update failed (it may
	// still answer reads: full, evicting); until one succeeds the local
	// table's stricter verdict stands too.
	writesLost atomic.Bool

	mu      sync.Mutex
	entries map[string]*penalty
	turns   map[string]*userTurn // users with a password attempt in flight or waiting

	testHookWaitTurn func(userKey string) // tests: an attempt starts waiting for its turn
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
		v4: opts.IPv4Prefix, v6: opts.IPv6Prefix,
		log: opts.Logger, now: opts.Now, entries: map[string]*penalty{}, turns: map[string]*userTurn{},
		shared: opts.Shared, failClosed: opts.Shared != nil && opts.SharedFailClosed,
	}
	t.v4 = prefixLen(t.v4, DefaultIPv4Prefix, 32)
	t.v6 = prefixLen(t.v6, DefaultIPv6Prefix, 128)
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
// or without ":port") for user (a user name to charge, or "": token logins
// pass "", see Throttle). It returns an error wrapping ErrBlocked at once
// when the address is blocked; otherwise it waits the delay the address and
// the user have earned (the longer of the two) and returns nil, or an error
// wrapping ErrThrottled if ctx ends first. With a shared store that fails
// and SharedFailClosed, it returns an error wrapping ErrUnavailable.
// Password attempts use Begin.
func (t *Throttle) Check(ctx context.Context, ip, user string) error {
	d, until, err := t.earned(ctx, ip, user)
	if err != nil {
		return err
	}
	if !until.IsZero() {
		return blockedError(until)
	}
	return waitDelay(ctx, d)
}

// blockedError is the error of a blocked address.
func blockedError(until time.Time) error {
	return fmt.Errorf("%w until %s", ErrBlocked, until.UTC().Format(time.RFC3339))
}

// waitDelay waits d, or returns an error wrapping ErrThrottled and
// ctx.Err() if ctx ends first.
func waitDelay(ctx context.Context, d time.Duration) error {
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
// of the IP's block (zero when not blocked). When the shared store fails it
// answers from the local table, whatever SharedFailClosed says.
func (t *Throttle) Delay(ip, user string) (time.Duration, time.Time) {
	d, until, _ := t.earned(context.Background(), ip, user)
	return d, until
}

// localEarned is Delay on the local table, for the keys of ip and user.
func (t *Throttle) localEarned(ipKey, userKey string) (time.Duration, time.Time) {
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

// Failure records a failed authentication: for the address group of ip
// (which may get blocked) and, unless user is "", for user (see Throttle
// for who is charged). Failure(ip, "") also charges attempts that were
// malformed before any credential could be checked. A shared store is
// updated too, within its own time bound.
func (t *Throttle) Failure(ip, user string) { t.failure(context.Background(), ip, user) }

// localFailure is Failure on the local table; it reports a block it started.
func (t *Throttle) localFailure(ipKey, userKey string) blockStart {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var b blockStart
	if ipKey != "" {
		p := t.entry(ipKey, now)
		if s := p.drain(now, t.rate) + 1; s >= t.blockAt && !now.Before(p.blockedUntil) {
			p.score = s
			p.blockedUntil = now.Add(t.blockFor)
			b = blockStart{started: true, score: s, until: p.blockedUntil}
		} else {
			p.score = s
		}
	}
	if userKey != "" {
		p := t.entry(userKey, now)
		p.score = p.drain(now, t.rate) + 1
	}
	return b
}

// Success forgets the failures of ip's address group, unless it is
// blocked, and of user (unless ""), locally and in a shared store.
func (t *Throttle) Success(ip, user string) { t.success(context.Background(), ip, user) }

// localSuccess is Success on the local table.
func (t *Throttle) localSuccess(ipKey, userKey string) {
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

// prefixLen returns n, or def when n is not positive, at most max.
func prefixLen(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

// ipGroup returns the throttling key of a client address: "ip:" and the
// IPv4 /v4 or IPv6 /v6 network ("ip:192.0.2.1", "ip:2001:db8::/56").
// Unparsable input is used as it is; empty input gives "" (not tracked).
func (t *Throttle) ipGroup(addr string) string {
	return ipGroup(addr, t.v4, t.v6)
}

// ipGroup is Throttle.ipGroup with the prefix lengths as arguments.
func ipGroup(addr string, v4, v6 int) string {
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
	bits := v4
	if ip.Is6() {
		bits = v6
	}
	if bits >= ip.BitLen() {
		return "ip:" + ip.String()
	}
	p, err := ip.Prefix(bits)
	if err != nil { // cannot happen: 0 < bits < BitLen
		return "ip:" + ip.String()
	}
	return "ip:" + p.String()
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

// Throttled is an Authenticator that applies a Throttle around token
// logins (the Next authenticator verifies bearer tokens): Check before,
// Failure after ErrInvalidCredentials, Success after a success, all for
// the client address (Credentials.RemoteAddr) only. The user the client
// names (Credentials.User) is neither consulted nor charged: until the
// token is verified it is only a claim, and charging it would let anyone
// slow that user's logins down with junk tokens. ErrUnavailable counts for
// nothing: a provider outage must not block users. A nil T throttles
// nothing. Password attempts use Throttle.Begin instead.
type Throttled struct {
	Next Authenticator
	T    *Throttle
}

var _ Authenticator = Throttled{}

// Authenticate implements Authenticator.
func (a Throttled) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	if err := a.T.Check(ctx, c.RemoteAddr, ""); err != nil {
		return Identity{}, err
	}
	id, err := a.Next.Authenticate(ctx, c)
	rctx := context.WithoutCancel(ctx) // record the verdict even if the client has gone
	switch {
	case err == nil:
		a.T.success(rctx, c.RemoteAddr, "")
	case errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrUnavailable):
		a.T.failure(rctx, c.RemoteAddr, "")
	}
	return id, err
}
