package rig

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// metricsClient keeps no connection open: an idle keep-alive connection
// would be one more descriptor and goroutine in the counts it reads.
var metricsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Metric reads one unlabelled sample (e.g. go_goroutines) from mailgate's
// Prometheus /metrics. It returns ErrNoMetrics when nothing serves it.
func (m *Mailgate) Metric(name string) (float64, error) {
	fam, err := m.MetricFamily(name)
	if err != nil {
		return 0, err
	}
	v, ok := fam[""]
	if !ok {
		return 0, fmt.Errorf("%w: no sample %s", ErrNoMetrics, name)
	}
	return v, nil
}

// MetricFamily reads every sample of the metric name from /metrics, keyed
// by its label set as written ("" for none, `reason="limit",proto="imap"`).
// It returns ErrNoMetrics when nothing serves /metrics.
func (m *Mailgate) MetricFamily(name string) (map[string]float64, error) {
	resp, err := metricsClient.Get("http://" + m.HTTPAddr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMetrics, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP %d", ErrNoMetrics, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[labels] = v
		}
	}
	return out, sc.Err()
}

// Sum is the total of a MetricFamily's samples (0 when there are none).
func Sum(fam map[string]float64) float64 {
	var t float64
	for _, v := range fam {
		t += v
	}
	return t
}

// Goroutines asks mailgate for its goroutine count: go_goroutines from
// /metrics, else the total of /debug/pprof/goroutine. It returns
// ErrNoMetrics when neither is served.
func (m *Mailgate) Goroutines() (int, error) {
	if v, err := m.Metric("go_goroutines"); err == nil {
		return int(v), nil
	}
	resp, err := metricsClient.Get("http://" + m.HTTPAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoMetrics, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%w: HTTP %d", ErrNoMetrics, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	if sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "goroutine profile: total "); ok {
			return strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	return 0, fmt.Errorf("%w: no goroutine total", ErrNoMetrics)
}
