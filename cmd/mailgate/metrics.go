package main

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// metrics are mailgate's Prometheus metrics. They implement proxy.Observer.
type metrics struct {
	reg *prometheus.Registry

	connsOpen         *prometheus.GaugeVec
	connsTotal        *prometheus.CounterVec
	connsRefused      *prometheus.CounterVec
	logins            *prometheus.CounterVec
	loginSeconds      *prometheus.HistogramVec
	backendLogin      *prometheus.HistogramVec
	backendErrors     *prometheus.CounterVec
	backendTLS        *prometheus.CounterVec
	bytes             *prometheus.CounterVec
	smtpMessages      *prometheus.CounterVec
	smtpBytes         prometheus.Counter
	validation        *prometheus.HistogramVec
	appPasswordLogins *prometheus.CounterVec
	// appPasswordRevalidations counts the page's provider revalidations.
	appPasswordRevalidations *prometheus.CounterVec
	dependencyUp             *prometheus.GaugeVec
	draining                 prometheus.Gauge
	sharedUp                 prometheus.Gauge
	cache                    *cacheCollector
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailgate_connections_open",
			Help: "Client connections open now."}, []string{"proto", "listener"}),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_connections_total",
			Help: "Client connections admitted."}, []string{"proto", "listener"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_connections_refused_total",
			Help: "Client connections turned away, by reason."}, []string{"proto", "listener", "reason"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_authentications_total",
			Help: "Authentication attempts by mechanism and result (ok, invalid, unavailable, malformed)."},
			[]string{"proto", "mechanism", "result"}),
		loginSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailgate_authentication_seconds",
			Help: "Time from the client's credentials to the backend session (token check + backend login).", Buckets: latencyBuckets},
			[]string{"proto", "result"}),
		backendLogin: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailgate_backend_login_seconds",
			Help: "Backend dial and master login latency.", Buckets: latencyBuckets}, []string{"proto"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_backend_errors_total",
			Help: "Backend dials or logins that failed."}, []string{"proto"}),
		backendTLS: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_backend_tls_handshakes_total",
			Help: "TLS handshakes with a backend, resumed (abbreviated) or full."}, []string{"proto", "resumed"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_relayed_bytes_total",
			Help: "Bytes relayed, dir up (client to backend) or down."}, []string{"proto", "dir"}),
		smtpMessages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_smtp_messages_total",
			Help: "Messages relayed to the submission backend, by result (ok, rejected, aborted)."}, []string{"result"}),
		smtpBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailgate_smtp_message_bytes_total",
			Help: "Bytes of message bodies relayed to the submission backend."}),
		validation: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailgate_token_validation_seconds",
			Help: "Latency of token validations that reached the provider (cache misses), by result.", Buckets: latencyBuckets},
			[]string{"result"}),
		appPasswordLogins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_app_password_logins_total",
			Help: "Logins with an app password, by the store's verdict (ok, invalid, protocol, suspended, unavailable, error)."},
			[]string{"proto", "result"}),
		appPasswordRevalidations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailgate_app_password_revalidations_total",
			Help: "Refreshes of users' provider links for app passwords, by result (ok, refused: the user's app passwords suspended, error: tried again later)."},
			[]string{"result"}),
		dependencyUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailgate_dependency_up",
			Help: "1 when a dependency (a backend, the identity provider) was reachable at the last check, else 0."}, []string{"dependency"}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailgate_draining",
			Help: "1 from SIGTERM on: /readyz says 503 and the listeners close after cluster.drain_delay."}),
		sharedUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailgate_shared_state_up",
			Help: "1 while cluster.redis is reachable (throttle and token cache shared), 0 while each replica works on its own state; absent without cluster.redis."}),
		cache: &cacheCollector{},
	}
	reg.MustRegister(m.connsOpen, m.connsTotal, m.connsRefused, m.logins, m.loginSeconds, m.backendLogin,
		m.backendErrors, m.backendTLS, m.bytes, m.smtpMessages, m.smtpBytes, m.validation, m.appPasswordLogins, m.appPasswordRevalidations, m.dependencyUp, m.draining, m.cache,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

var _ proxy.Observer = (*metrics)(nil)

func (m *metrics) ConnOpened(proto, listener string) {
	m.connsOpen.WithLabelValues(proto, listener).Inc()
	m.connsTotal.WithLabelValues(proto, listener).Inc()
}

func (m *metrics) ConnClosed(proto, listener string) {
	m.connsOpen.WithLabelValues(proto, listener).Dec()
}

func (m *metrics) ConnRefused(proto, listener, reason string) {
	m.connsRefused.WithLabelValues(proto, listener, reason).Inc()
}

func (m *metrics) Login(proto, mech, result string, d time.Duration) {
	m.logins.WithLabelValues(proto, mech, result).Inc()
	m.loginSeconds.WithLabelValues(proto, result).Observe(d.Seconds())
}

func (m *metrics) BackendLogin(proto string, d time.Duration, err error) {
	m.backendLogin.WithLabelValues(proto).Observe(d.Seconds())
	if err != nil {
		m.backendErrors.WithLabelValues(proto).Inc()
	}
}

func (m *metrics) BackendTLS(proto string, resumed bool) {
	m.backendTLS.WithLabelValues(proto, strconv.FormatBool(resumed)).Inc()
}

func (m *metrics) Relayed(proto, dir string, n int) {
	m.bytes.WithLabelValues(proto, dir).Add(float64(n))
}

func (m *metrics) SMTPMessage(result string, bytes int64) {
	m.smtpMessages.WithLabelValues(result).Inc()
	m.smtpBytes.Add(float64(bytes))
}

// cacheCollector exports the current token cache's counters. A reload
// replaces the cache, which restarts its counters (Prometheus sees a reset).
type cacheCollector struct{ cur atomic.Pointer[auth.Cache] }

var (
	cacheLookupsDesc = prometheus.NewDesc("mailgate_token_cache_total",
		"Token cache lookups, by outcome (hit, negative_hit, miss).", []string{"outcome"}, nil)
	providerCallsDesc = prometheus.NewDesc("mailgate_token_provider_calls_total",
		"Token validations sent to the provider, and how many failed (result unavailable).", []string{"result"}, nil)
	cacheEntriesDesc = prometheus.NewDesc("mailgate_token_cache_entries", "Tokens in the cache.", nil, nil)
)

func (c *cacheCollector) set(v *auth.Cache) { c.cur.Store(v) }

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheLookupsDesc
	ch <- providerCallsDesc
	ch <- cacheEntriesDesc
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.cur.Load()
	if v == nil {
		return
	}
	st := v.Stats()
	ch <- prometheus.MustNewConstMetric(cacheLookupsDesc, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(cacheLookupsDesc, prometheus.CounterValue, float64(st.NegativeHits), "negative_hit")
	ch <- prometheus.MustNewConstMetric(cacheLookupsDesc, prometheus.CounterValue, float64(st.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(providerCallsDesc, prometheus.CounterValue, float64(st.ProviderCalls), "all")
	ch <- prometheus.MustNewConstMetric(providerCallsDesc, prometheus.CounterValue, float64(st.ProviderErrors), "unavailable")
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(st.Entries))
}
