package proxy

import (
	"net/netip"
	"sync"
	"time"
)

// rateTable is a token bucket per client network for new connections:
// each network may open burst connections at once, then rate per second.
// It remembers at most rateTableMax networks; when full, it forgets the
// buckets that have refilled (they behave like new ones), and if none has,
// refuses networks it does not know yet until some have.
type rateTable struct {
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

// rateTableMax bounds the networks a rateTable tracks (about 64 bytes each).
const rateTableMax = 100_000

func newRateTable(rate float64, burst int, now func() time.Time) *rateTable {
	return &rateTable{rate: rate, burst: float64(max(burst, 1)), now: now, buckets: map[netip.Prefix]*bucket{}}
}

// allow takes a token from key's bucket, reporting false when it is empty.
func (t *rateTable) allow(key netip.Prefix) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	b := t.buckets[key]
	if b == nil {
		if len(t.buckets) >= rateTableMax && !t.pruneLocked(now) {
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
func (t *rateTable) pruneLocked(now time.Time) bool {
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
