package apppass_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

// timingHasher records how long each hash takes.
type timingHasher struct {
	apppass.Hasher
	mu sync.Mutex
	d  []time.Duration
}

func (h *timingHasher) Compare(p []byte, encoded string) (bool, error) {
	t0 := time.Now()
	ok, err := h.Hasher.Compare(p, encoded)
	h.mu.Lock()
	h.d = append(h.d, time.Since(t0))
	h.mu.Unlock()
	return ok, err
}

// percentile returns the p-th percentile (0..100) of ds, in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i]) / float64(time.Millisecond)
}

// BenchmarkVerify is the cost of a login with an app password with the
// default argon2id parameters, one at a time: hash-ms-p50/p99 is the
// hash alone, verify-ms-p50/p99 the whole Verify (lookup, hash, and the
// last-use write once a minute).
func BenchmarkVerify(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			h := &timingHasher{Hasher: apppass.Argon2id{}}
			s := openStore(b, be.newURL(b), apppass.Options{Hasher: h})
			pw, _, err := s.Create(tctx(b), "alice@example.test", "bench", nil, 0)
			if err != nil {
				b.Fatal(err)
			}
			var total []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := s.Verify(b.Context(), "alice@example.test", pw, apppass.IMAP, "192.0.2.1"); err != nil {
					b.Fatal(err)
				}
				total = append(total, time.Since(t0))
			}
			b.ReportMetric(percentile(h.d, 50), "hash-ms-p50")
			b.ReportMetric(percentile(h.d, 99), "hash-ms-p99")
			b.ReportMetric(percentile(total, 50), "verify-ms-p50")
			b.ReportMetric(percentile(total, 99), "verify-ms-p99")
		})
	}
}
