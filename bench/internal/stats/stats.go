// Package stats holds the few statistics of the benchmarks: percentiles of
// latency samples and the median, minimum and maximum over repeated runs.
package stats

import (
	"math"
	"sort"
	"time"
)

// Percentile returns the p-th percentile (0..100) of samples by the
// nearest-rank method; 0 for no samples. samples is sorted in place.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	rank := int(math.Ceil(p / 100 * float64(len(samples))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(samples) {
		rank = len(samples)
	}
	return samples[rank-1]
}

// Summary is the median, minimum and maximum of repeated measurements.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize summarises values (not modified). A zero Summary for no values.
func Summarize(values []float64) Summary {
	if len(values) == 0 {
		return Summary{}
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	s := Summary{Min: v[0], Max: v[len(v)-1], N: len(v)}
	if len(v)%2 == 1 {
		s.Median = v[len(v)/2]
	} else {
		s.Median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return s
}
