package rig

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metric reads one unlabelled sample (e.g. go_goroutines) from mailgate's
// Prometheus /metrics. It returns ErrNoMetrics when nothing serves it.
func (m *Mailgate) Metric(name string) (float64, error) {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + m.HTTPAddr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoMetrics, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%w: HTTP %d", ErrNoMetrics, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("%w: no sample %s", ErrNoMetrics, name)
}

// Goroutines asks mailgate for its goroutine count: go_goroutines from
// /metrics, else the total of /debug/pprof/goroutine. It returns
// ErrNoMetrics when neither is served.
func (m *Mailgate) Goroutines() (int, error) {
	if v, err := m.Metric("go_goroutines"); err == nil {
		return int(v), nil
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + m.HTTPAddr + "/debug/pprof/goroutine?debug=1")
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
