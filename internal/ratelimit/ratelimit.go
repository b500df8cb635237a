// Package ratelimit holds the token buckets and the client-network keys
// that mailgate's listeners share: the mail listeners' connection rate,
// the public listeners' caps, the app-password page's sign-ins.
package ratelimit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Table is a token bucket per key (a client network): each key may take
// burst tokens at once, then rate per second.
// It remembers at most tableMax networks; when full, it forgets the
// buckets that have refilled (they behave like new ones), and if none has,
// refuses networks it does not know yet until some have.
type Table struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// tableMax bounds the networks a Table tracks (about 64 bytes each).
const tableMax = 100_000

// New returns a Table of rate tokens per second and bursts of burst per
// key; now is the clock (nil: time.Now).
func New(rate float64, burst int, now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	return &Table{rate: rate, burst: float64(max(burst, 1)), now: now, buckets: map[netip.Prefix]*bucket{}}
}

// Allow takes a token from key's bucket, reporting false when it is empty.
func (t *Table) Allow(key netip.Prefix) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	b := t.buckets[key]
	if b == nil {
		if len(t.buckets) >= tableMax && !t.pruneLocked(now) {
			return false
		}
		b = &bucket{tokens: t.burst, at: now}
		t.buckets[key] = b
	}
	b.refill(now, t.rate, t.burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = min(burst, b.tokens+el*rate)
		b.at = now
	}
}

// pruneLocked forgets the full buckets and reports whether it freed any.
// It scans the table at most once a second, so that a flood from more
// networks than the table holds costs no more than that.
func (t *Table) pruneLocked(now time.Time) bool {
	if now.Sub(t.lastPrune) < time.Second {
		return false
	}
	t.lastPrune = now
	n := len(t.buckets)
	for k, b := range t.buckets {
		if b.refill(now, t.rate, t.burst); b.tokens >= t.burst {
			delete(t.buckets, k)
		}
	}
	return len(t.buckets) < n
}

// AddrIP returns the IP address of a, unmapped and without zone (the zero
// Addr if it has none).
func AddrIP(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	return ip.Unmap().WithZone("")
}

// Network is the client network ip counts in: IPv4 addresses by their
// first v4 bits, IPv6 by their first v6 (the zero Prefix for no address).
func Network(ip netip.Addr, v4, v6 int) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := v4
	if ip.Is6() {
		bits = v6
	}
	p, _ := ip.Prefix(bits)
	return p
}
