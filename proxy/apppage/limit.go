package apppage

import (
	"sync"
	"time"
)

// Sign-ins under way are rows in the store until they complete or expire
// (signInLifetime), and anyone may start one: the page starts at most
// signInRate per second (bursts of signInBurst), so that at most about
// signInRate*signInLifetime + signInBurst (6,100) are ever pending.
const (
	signInRate  = 10
	signInBurst = 100
)

// bucket is a token bucket.
type bucket struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	at     time.Time
}

func newBucket(rate, burst float64) *bucket { return &bucket{rate: rate, burst: burst, tokens: burst} }

// take takes a token at now, reporting false when there is none.
func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
