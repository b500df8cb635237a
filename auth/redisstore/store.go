// Package redisstore keeps what mailgate replicas share in Redis (or
// Valkey, which speaks the same protocol): it implements auth.SharedCache
// for the token cache and auth.SharedThrottle for failure scores and
// blocks, with github.com/redis/go-redis/v9.
//
// Typical usage:
//
//	st, err := redisstore.New(ctx, redisstore.Options{
//		Addrs: []string{"redis.internal:6379"}, Password: pw,
//		OnStateChange: func(up bool, err error) { ... log one line, set a gauge ... },
//	})
//	defer st.Close()
//	cache := auth.NewCache(v, auth.CacheOptions{TTL: ttl, Shared: st})
//	thr := auth.NewThrottle(auth.ThrottleOptions{Shared: st})
//
// # Keys
//
// Every key starts with Options.KeyPrefix ("mailgate:" by default):
//
//	mailgate:token:<namespace><sha256 hex>  string: a JSON cache entry (claims or refusal text, expiry); PX = its TTL
//	mailgate:throttle:ip:<address or network>  hash: s score, t time of s (µs), b end of block (µs, 0 none)
//	mailgate:throttle:user:<user name>         the same, never blocked
//
// Throttle records expire (PEXPIRE) once drained and unblocked, plus a
// second; token entries when their TTL ends. Nothing else is written. The
// health probe reads mailgate:probe through the penalty script and writes
// nothing.
//
// # Time bounds and failures
//
// Every operation is bounded by Options.OpTimeout, from the wait for a
// pooled connection (or a new one) to the reply, and is never retried.
// When one fails for want of a usable server (timeout, refused or broken
// connection, authentication, LOADING, READONLY...), the store is down:
// OnStateChange is called once, Degraded reports true, and operations fail
// at once with an error wrapping ErrDown, so that a login costs at most
// one OpTimeout before the callers (auth.Cache, auth.Throttle) carry on
// with local state. A probe every ProbeInterval (PING-like: a read through
// the penalty script) brings the store up again, with one more call of
// OnStateChange.
//
// # Access
//
// The commands sent are GET, SET, DEL, EVALSHA and EVAL (with HELLO and
// AUTH on connecting, and SELECT with a DB); the script calls HMGET, HSET,
// PEXPIRE, DEL and TIME. A Redis 6+ ACL user for mailgate needs no more:
//
//	user mailgate on >secret ~mailgate:* resetchannels -@all +hello +auth +get +set +del +evalsha +eval +hmget +hset +pexpire +time
package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults (see Options).
const (
	DefaultKeyPrefix     = "mailgate:"
	DefaultOpTimeout     = 150 * time.Millisecond
	DefaultDialTimeout   = 250 * time.Millisecond
	DefaultPoolSize      = 32
	DefaultProbeInterval = time.Second
	// keepAlive is the TCP keepalive period of the connections.
	keepAlive = 30 * time.Second
)

// Options configures New. Addrs is required; every other zero value
// selects a default.
type Options struct {
	// Addrs is where the server is: one "host:port"; with MasterName, the
	// Sentinels' addresses; several without MasterName, the seed nodes of
	// a Redis Cluster (every key is used alone, so any slot layout works).
	Addrs []string
	// MasterName is the Sentinel name of the master. Empty: no Sentinel.
	MasterName string
	// Username and Password authenticate (AUTH, or ACL with Username).
	// The caller reads Password from a file; it is never logged. Empty:
	// no authentication (Username empty: the "default" user).
	Username, Password string
	// DB selects the database (not with a Cluster). Zero: 0.
	DB int
	// TLS turns TLS on (to every address, Sentinels included), version
	// 1.2 at least. CAFile is a PEM file of the roots to trust (empty: the
	// system's); ServerName the name to verify (empty: the host of the
	// address dialled). Both need TLS.
	TLS        bool
	CAFile     string
	ServerName string
	// KeyPrefix starts every key. Empty: DefaultKeyPrefix.
	KeyPrefix string
	// OpTimeout bounds each operation, from waiting for a connection to
	// the reply (and so also each socket read and write). Zero: 150 ms.
	OpTimeout time.Duration
	// DialTimeout bounds one connection attempt (TCP and TLS), within
	// OpTimeout when a login waits for it. Zero: 250 ms.
	DialTimeout time.Duration
	// PoolSize bounds the connections to each server. Zero: 32.
	PoolSize int
	// ProbeInterval is the period of the health probe, and so how soon a
	// server that came back is used again. Zero: one second.
	ProbeInterval time.Duration
	// CallerClock makes the penalty script use the time each replica
	// passes (auth.PenaltyOp.Now) instead of the server's clock (TIME).
	// The server's clock keeps replicas with skewed clocks consistent; a
	// caller's clock lets tests use a fake one. False: the server's clock.
	CallerClock bool
	// Logger receives go-redis's own messages (failed dials and the like:
	// noise next to OnStateChange) at level Debug. go-redis has one logger
	// per process: New sets it, the last New wins. Nil: they are dropped.
	Logger *slog.Logger
	// OnStateChange, if not nil, is called once each time the store goes
	// down (up false, err the failure) or comes back (up true, err nil),
	// including when New finds the server down. Calls are serialised, in
	// order; it must return quickly (log a line, set a gauge) and may call
	// Degraded and State.
	OnStateChange func(up bool, err error)
}

// Store is a connection pool to Redis that implements auth.SharedCache
// and auth.SharedThrottle. Create it with New; Close it.
type Store struct {
	client       redis.UniversalClient
	prefix       string
	opTimeout    time.Duration
	probeTimeout time.Duration
	probeEvery   time.Duration
	callerClock  bool
	onChange     func(up bool, err error)

	health   atomic.Pointer[health]
	changeMu sync.Mutex // serialises state changes and their callbacks

	ops, errs, skipped, probes atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New connects to Redis and checks the connection once within ctx (and
// at most DialTimeout + OpTimeout). A server that is down or refuses the
// credentials is not an error: the store starts down (see OnStateChange)
// and keeps probing. Errors are for options only.
func New(ctx context.Context, opts Options) (*Store, error) {
	uo, err := opts.universal()
	if err != nil {
		return nil, err
	}
	redis.SetLogger(clientLog{opts.Logger})
	s := &Store{
		client:      redis.NewUniversalClient(uo),
		prefix:      opts.KeyPrefix,
		opTimeout:   orDefault(opts.OpTimeout, DefaultOpTimeout),
		probeEvery:  opts.ProbeInterval,
		callerClock: opts.CallerClock,
		onChange:    opts.OnStateChange,
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if s.prefix == "" {
		s.prefix = DefaultKeyPrefix
	}
	if s.probeEvery <= 0 {
		s.probeEvery = DefaultProbeInterval
	}
	s.probeTimeout = uo.DialTimeout + s.opTimeout
	s.health.Store(&health{up: true, since: time.Now()})
	s.check(ctx)
	go s.watch()
	return s, nil
}

// Close stops the probe and closes the connections. Operations after Close
// fail. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.client.Close()
	})
	return s.closeErr
}

// universal maps o to go-redis options: bounded, never retried, and
// without the handshake extras (CLIENT SETINFO, maintenance notices).
func (o Options) universal() (*redis.UniversalOptions, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("redisstore: no address")
	}
	for _, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("redisstore: address %q: %w", a, err)
		}
	}
	tlsConf, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	op, dial, pool := orDefault(o.OpTimeout, DefaultOpTimeout), orDefault(o.DialTimeout, DefaultDialTimeout), o.PoolSize
	if pool <= 0 {
		pool = DefaultPoolSize
	}
	return &redis.UniversalOptions{
		Addrs: o.Addrs, MasterName: o.MasterName, DB: o.DB,
		Username: o.Username, Password: o.Password,
		Dialer:      dialer(dial, tlsConf),
		DialTimeout: dial, DialerRetries: 1,
		ReadTimeout: op, WriteTimeout: op, ContextTimeoutEnabled: true,
		MaxRetries: -1, MaxRedirects: 1,
		PoolSize: pool, MaxActiveConns: pool, PoolTimeout: op, PipelinePoolSize: -1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}, nil
}

// tlsConfig returns the client TLS configuration (nil: no TLS).
func (o Options) tlsConfig() (*tls.Config, error) {
	if !o.TLS {
		if o.CAFile != "" || o.ServerName != "" {
			return nil, errors.New("redisstore: CAFile and ServerName need TLS")
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pemBytes, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redisstore: CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("redisstore: CA file %s: no PEM certificate", o.CAFile)
		}
	}
	return c, nil
}

// dialer connects within the context's deadline (go-redis's own TLS dialer
// would ignore it) and at most timeout; TLS when conf is not nil.
func dialer(timeout time.Duration, conf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: timeout, KeepAlive: keepAlive}
	if conf == nil {
		return nd.DialContext
	}
	td := &tls.Dialer{NetDialer: nd, Config: conf}
	return td.DialContext
}

// clientLog passes go-redis's messages to a logger at level Debug.
type clientLog struct{ l *slog.Logger }

// Printf implements go-redis's logging interface.
func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	if c.l != nil {
		c.l.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
	}
}

// orDefault returns d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
