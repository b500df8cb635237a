package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/config"
)

// Shared state of several replicas (cluster.redis): the failed-login
// throttle and the token cache live in Redis, and each replica falls back to
// its own while Redis is unreachable.

// sharedConnectTimeout bounds the first contact with Redis at start; a
// Redis that is down then is not an error (the store starts degraded).
const sharedConnectTimeout = 2 * time.Second

// newSharedStore connects to cluster.redis; nil, nil when it is not set.
// State changes are logged once each and set mailgate_shared_state_up.
func newSharedStore(cfg *config.Config, log *slog.Logger, m *metrics) (*redisstore.Store, error) {
	r := cfg.Cluster.Redis
	if r.Address == "" {
		return nil, nil
	}
	log = log.With("component", "cluster")
	ctx, cancel := context.WithTimeout(context.Background(), sharedConnectTimeout)
	defer cancel()
	s, err := redisstore.New(ctx, redisstore.Options{
		Addrs: r.Addresses(), Username: r.Username, Password: r.Password,
		TLS: r.TLS, CAFile: r.CAFile, ServerName: r.ServerName,
		KeyPrefix: r.KeyPrefix, OpTimeout: r.Timeout, Logger: log,
		OnStateChange: func(up bool, err error) { sharedStateChanged(log, m, r.WhenDown, up, err) },
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.redis: %w", err)
	}
	m.reg.MustRegister(m.sharedUp, sharedOps{s}) // only with cluster.redis
	if !s.Degraded() {
		m.sharedUp.Set(1)
	}
	return s, nil
}

// sharedOps exports the store's operation counters: failures that do not
// take it down (a full Redis answering OOM, NOPERM) show only here.
type sharedOps struct{ s *redisstore.Store }

var sharedOpsDesc = prometheus.NewDesc("mailgate_shared_state_operations_total",
	"Operations on cluster.redis by result: sent, failed (an error answer or none; a miss is not one), skipped (not tried while it is down).",
	[]string{"result"}, nil)

func (sharedOps) Describe(ch chan<- *prometheus.Desc) { ch <- sharedOpsDesc }

func (o sharedOps) Collect(ch chan<- prometheus.Metric) {
	st := o.s.Stats()
	ch <- prometheus.MustNewConstMetric(sharedOpsDesc, prometheus.CounterValue, float64(st.Ops), "sent")
	ch <- prometheus.MustNewConstMetric(sharedOpsDesc, prometheus.CounterValue, float64(st.Errors), "failed")
	ch <- prometheus.MustNewConstMetric(sharedOpsDesc, prometheus.CounterValue, float64(st.Skipped), "skipped")
}

func sharedStateChanged(log *slog.Logger, m *metrics, whenDown string, up bool, err error) {
	if up {
		m.sharedUp.Set(1)
		log.Info("shared state: redis reachable; throttle and token cache are shared again")
		return
	}
	m.sharedUp.Set(0)
	what := "each replica throttles and caches on its own"
	if whenDown == config.RedisRefuse {
		what = "logins get a temporary failure (cluster.redis.when_down: refuse)"
	}
	log.Warn("shared state: redis unreachable; "+what+" until it is back", "err", err)
}

// sharedProblem is /dependencies' line for a degraded store; nil when up.
func sharedProblem(s *redisstore.Store) error {
	if s == nil || !s.Degraded() {
		return nil
	}
	st := s.State()
	return fmt.Errorf("redis unreachable since %s (working on this replica's own state)", st.Since.UTC().Format(time.RFC3339))
}

// sharedNamespace names the provider configuration in the shared cache's
// keys, so that replicas never take answers given under another issuer,
// mode or audience list (during a rolling change of it, for instance).
func sharedNamespace(cfg *config.Config) string {
	o := cfg.OAuth2
	h := sha256.Sum256([]byte(strings.Join([]string{
		o.Mode, o.UserinfoURL, o.IntrospectionURL, o.Issuer, o.ClientID, strings.Join(cfg.Audiences(), " "),
	}, "\x00")))
	return hex.EncodeToString(h[:4]) + ":"
}

// sharedCache is s as the token cache uses it (nil without Redis).
func sharedCache(s *redisstore.Store) auth.SharedCache {
	if s == nil {
		return nil
	}
	return s
}

// sharedThrottle is s as the throttle uses it (nil without Redis).
func sharedThrottle(s *redisstore.Store) auth.SharedThrottle {
	if s == nil {
		return nil
	}
	return s
}
