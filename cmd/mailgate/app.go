package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy"
)

// certWatchInterval is how often certificate files are checked for changes.
const certWatchInterval = 10 * time.Second

// app is a configured mailgate: the certificate store, the proxy server and
// its listeners. serve and demo both run one.
type app struct {
	cfg      *config.Config
	log      *slog.Logger
	certs    *certs.Store
	srv      *proxy.Server
	fronts   map[string]proxy.Front // by protocol, for the configured ones
	metrics  *metrics
	auth     *swapAuthenticator // replaced on reload
	throttle *auth.Throttle     // failed-login throttle, kept across reloads
	checks   atomic.Pointer[tokenCheck]
	level    *slog.LevelVar    // the logger's level, set on reload (nil in tests)
	shared   *redisstore.Store // cluster.redis; nil when not set
	appPass  *apppass.Store    // app_passwords; nil when off
	ops      *opsServer        // nil when http.listen is empty
	disco    *discoveryServer  // nil when discovery.listen is empty
	page     *pageServer       // nil when app_passwords.listen is empty
	serving  atomic.Bool       // the client listeners are up
	// drainDelay is cluster.drain_delay (reloadable, read at SIGTERM).
	drainDelay atomic.Int64

	listeners []appListener
}

type appListener struct {
	name     string // config key, for logs
	proto    string // imap | smtp | pop3 | sieve
	implicit bool
	ln       net.Listener
}

// newApp builds everything from cfg and opens the listeners (so that a busy
// port is reported before anything runs). cfg must have been validated.
// openFiles is the process's open-files limit, which the connection caps
// are fitted to (see fitToOpenFiles); 0 takes the caps as configured.
func newApp(cfg *config.Config, log *slog.Logger, openFiles uint64) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, metrics: newMetrics()}
	a.drainDelay.Store(int64(cfg.Cluster.DrainDelay))
	defer func() {
		if err != nil {
			a.closeShared()
		}
	}()
	pairs := []certs.Pair{{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile}}
	for _, p := range cfg.TLS.Certificates {
		pairs = append(pairs, certs.Pair{CertFile: p.CertFile, KeyFile: p.KeyFile})
	}
	store, err := certs.New(pairs, log.With("component", "certs"))
	if err != nil {
		return nil, err
	}
	a.certs = store
	minTLS, err := certs.ParseMinVersion(cfg.TLS.MinVersion)
	if err != nil {
		return nil, err
	}
	if a.shared, err = newSharedStore(cfg, log, a.metrics); err != nil {
		return nil, err
	}
	a.throttle = newThrottle(cfg, log, sharedThrottle(a.shared))
	tc, err := newTokenCheck(cfg, log, a.metrics, sharedCache(a.shared))
	if err != nil {
		return nil, err
	}
	a.auth = &swapAuthenticator{}
	a.use(tc)
	opts, err := proxyOptions(cfg, a.auth, log)
	if err != nil {
		return nil, err
	}
	if a.appPass, err = openAppPasswords(cfg, log); err != nil {
		return nil, err
	}
	opts.AppPasswords = appPasswordOptions(cfg, a.appPass, a.metrics)
	caps := fitToOpenFiles(cfg, openFiles, log)
	opts.Limits.MaxConnections, opts.Limits.MaxPrelogin = orNoLimit(caps.sessions), orNoLimit(caps.prelogin)
	opts.TLSConfig = store.TLSConfig(minTLS, "imap", "smtp", "pop3", "managesieve")
	opts.Observer = a.metrics
	if a.throttle != nil {
		opts.Passwords.Throttle = a.throttle // the token logins' throttle: one score per address and user
	}
	if opts.Lifetime.Mode == proxy.LifetimeRevalidate {
		opts.Lifetime.Revalidator = revalidator{a}
	}
	if a.srv, err = proxy.New(opts); err != nil {
		return nil, err
	}
	if a.fronts, err = newFronts(a.srv, cfg); err != nil {
		return nil, err
	}

	for _, l := range []appListener{
		{name: "imap.listen_tls", proto: "imap", implicit: true},
		{name: "imap.listen_starttls", proto: "imap"},
		{name: "smtp.listen_tls", proto: "smtp", implicit: true},
		{name: "smtp.listen_starttls", proto: "smtp"},
		{name: "pop3.listen_tls", proto: "pop3", implicit: true},
		{name: "pop3.listen_starttls", proto: "pop3"},
		{name: "sieve.listen", proto: "sieve"},
	} {
		addr := listenAddr(cfg, l.name)
		if addr == "" || !cfg.On(l.proto) {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			a.closeListeners()
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		l.ln = ln
		a.listeners = append(a.listeners, l)
	}
	if len(a.listeners) == 0 {
		return nil, errors.New("no listener configured")
	}
	if cfg.HTTP.Listen != "" {
		if a.ops, err = newOpsServer(cfg.HTTP.Listen, a.metrics, readyTargets(cfg), &a.serving, log.With("component", "http")); err != nil {
			a.closeListeners()
			return nil, err
		}
		a.ops.problems = func() error { return errors.Join(a.backendProblems(), sharedProblem(a.shared)) }
		a.ops.withDependencies = cfg.HTTP.ReadyzDependencies
	}
	if cfg.Discovery.Listen != "" {
		if a.disco, err = newDiscoveryServer(cfg, store.TLSConfig(minTLS, "http/1.1"), a.addr, log.With("component", "discovery")); err != nil {
			a.closeListeners()
			if a.ops != nil {
				a.ops.ln.Close()
			}
			return nil, err
		}
	}
	if cfg.AppPasswords.Page() {
		if a.page, err = newPageServer(a, store.TLSConfig(minTLS, "http/1.1")); err != nil {
			a.closeListeners()
			if a.ops != nil {
				a.ops.ln.Close()
			}
			if a.disco != nil {
				a.disco.ln.Close()
			}
			return nil, err
		}
	}
	return a, nil
}

func listenAddr(cfg *config.Config, key string) string {
	switch key {
	case "imap.listen_tls":
		return cfg.IMAP.ListenTLS
	case "imap.listen_starttls":
		return cfg.IMAP.ListenStartTLS
	case "smtp.listen_tls":
		return cfg.SMTP.ListenTLS
	case "smtp.listen_starttls":
		return cfg.SMTP.ListenStartTLS
	case "pop3.listen_tls":
		return cfg.POP3.ListenTLS
	case "pop3.listen_starttls":
		return cfg.POP3.ListenStartTLS
	case "sieve.listen":
		return cfg.Sieve.Listen
	}
	return ""
}

func (a *app) closeListeners() {
	for _, l := range a.listeners {
		l.ln.Close()
	}
}

// addr returns the bound address of the listener named by its config key.
func (a *app) addr(name string) string {
	for _, l := range a.listeners {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// readyTargets are what /readyz checks: the backends of the protocols in
// use and the provider's host.
func readyTargets(cfg *config.Config) []readyTarget {
	var t []readyTarget
	for _, b := range []struct{ proto, addr string }{
		{config.ProtoIMAP, cfg.IMAP.Backend.Address}, {config.ProtoSMTP, cfg.SMTP.Backend.Address},
		{config.ProtoPOP3, cfg.POP3.Backend.Address}, {config.ProtoSieve, cfg.Sieve.Backend.Address},
	} {
		if cfg.On(b.proto) {
			t = append(t, readyTarget{b.proto + " backend", b.addr})
		}
	}
	for _, u := range []string{cfg.OAuth2.UserinfoURL, cfg.OAuth2.IntrospectionURL, cfg.OAuth2.Issuer} {
		if hp := urlHostPort(u); hp != "" {
			t = append(t, readyTarget{"identity provider", hp})
			break
		}
	}
	return t
}

// run serves until ctx is done, then shuts down within drain.
func (a *app) run(ctx context.Context, drain time.Duration) error {
	go a.certs.Watch(ctx, certWatchInterval)
	if a.ops != nil {
		a.log.Info("operations endpoint", "addr", a.ops.ln.Addr().String())
		go func() {
			if err := a.ops.serve(); err != nil {
				a.log.Error("operations endpoint failed", "err", err)
			}
		}()
		defer a.ops.shutdown()
	}
	if a.disco != nil {
		dctx, cancel := context.WithCancel(context.Background())
		defer cancel() // after the sessions drained: documents stay served meanwhile
		go a.disco.run(dctx)
	}
	stopStoreJobs := a.startStoreJobs()
	defer stopStoreJobs()
	a.serving.Store(true)
	defer a.serving.Store(false)
	// The listeners outlive ctx by the drain delay (leaveBalancer), and the
	// connections' context outlives Shutdown's start.
	acceptCtx, stopAccepting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAccepting()
	var wg sync.WaitGroup
	errc := make(chan error, len(a.listeners))
	for _, l := range a.listeners {
		a.log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.srv.Serve(acceptCtx, l.ln, l.implicit, a.fronts[l.proto]); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", l.name, err)
			}
		}()
	}
	a.checkBackends(ctx)
	var runErr error
	select {
	case <-ctx.Done():
		a.leaveBalancer()
	case runErr = <-errc:
		a.log.Error("listener failed", "err", runErr)
	}
	// Shutdown closes the listeners and ends pre-auth reads; acceptCtx is
	// the connections' context too, so it stays until Shutdown is done: a
	// login whose backend login is under way when the drain delay ends is
	// not cut off (a rolling restart lost those).
	a.log.Info("shutting down", "drain", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	a.srv.Shutdown(sctx)
	wg.Wait()
	stopStoreJobs() // before the store closes: a rotated refresh token is stored
	a.closeShared()
	return runErr
}

// closeShared closes the connections to cluster.redis and the app-password
// store, if any.
func (a *app) closeShared() {
	if a.shared != nil {
		a.shared.Close()
	}
	a.closeAppPasswords()
}

// leaveBalancer turns /readyz to 503 and keeps the listeners open for
// cluster.drain_delay, so that a load balancer's health check takes this
// replica out before it stops accepting connections. Without an operations
// endpoint nobody can see it: then it does not wait.
func (a *app) leaveBalancer() {
	delay := time.Duration(a.drainDelay.Load())
	if a.ops == nil || delay <= 0 {
		return
	}
	a.ops.drain()
	a.log.Info("draining: /readyz answers 503; listeners close after the drain delay", "drain_delay", delay)
	time.Sleep(delay)
}

// tokenCheck is the token validation of one configuration: the cache over
// the provider-facing validator, and the identity policy.
type tokenCheck struct {
	cache  *auth.Cache
	policy auth.Policy
	mode   string
	log    *slog.Logger
}

// authenticator is the login path: throttle, cache, validator, policy.
func (tc *tokenCheck) authenticator(t *auth.Throttle) proxy.Authenticator {
	return auth.Throttled{
		Next: auth.TokenAuthenticator{Validator: tc.cache, Policy: tc.policy, Logger: tc.log, Source: tc.mode},
		T:    t,
	}
}

// newTokenCheck builds the token validator (behind its cache) and identity
// policy of cfg.
func newTokenCheck(cfg *config.Config, log *slog.Logger, m *metrics, shared auth.SharedCache) (*tokenCheck, error) {
	v, policy, err := newValidator(cfg, log, func(v auth.Validator) auth.Validator { return timedValidator{v, m} }, shared)
	if err != nil {
		return nil, err
	}
	return &tokenCheck{cache: v, policy: policy, mode: cfg.OAuth2.Mode, log: log.With("component", "auth")}, nil
}

// use makes tc the running token check: logins, revalidation and metrics.
func (a *app) use(tc *tokenCheck) {
	a.checks.Store(tc)
	a.metrics.cache.set(tc.cache)
	a.auth.set(tc.authenticator(a.throttle))
}

// proxyOptions maps the configuration to proxy.Options (without TLSConfig).
func proxyOptions(cfg *config.Config, authn proxy.Authenticator, log *slog.Logger) (proxy.Options, error) {
	exempt, err := parsePrefixes(cfg.Limits.ExemptNetworks)
	if err != nil {
		return proxy.Options{}, fmt.Errorf("limits.exempt_networks: %w", err)
	}
	ch := auth.ChallengeOptions{Scope: "openid email", XOAUTH2Status: cfg.OAuth2.XOAUTH2ErrorStatus}
	if len(cfg.OAuth2.RequiredScopes) > 0 {
		ch.Scope = strings.Join(cfg.OAuth2.RequiredScopes, " ")
	}
	if cfg.OAuth2.Issuer != "" {
		ch.OpenIDConfiguration = strings.TrimSuffix(cfg.OAuth2.Issuer, "/") + "/.well-known/openid-configuration"
	}
	return proxy.Options{
		Authenticator: authn,
		Challenge:     ch,
		Master:        master(cfg),
		Limits: proxy.Limits{
			PreauthTimeout:      cfg.Limits.PreauthTimeout,
			IdleTimeout:         cfg.Limits.IdleTimeout,
			MaxConnections:      orNoLimit(cfg.Limits.MaxConnections),
			MaxConnectionsPerIP: orNoLimit(cfg.Limits.MaxConnectionsPerIP),
			MaxPrelogin:         orNoLimit(cfg.Limits.MaxPreloginConnections),
			MaxPreloginPerIP:    orNoLimit(cfg.Limits.MaxPreloginPerIP),
			IPv4Prefix:          cfg.Limits.IPv4Prefix,
			IPv6Prefix:          cfg.Limits.IPv6Prefix,
			ConnRate:            rateOrOff(cfg.Limits.ConnectionRatePerIP),
			ConnBurst:           cfg.Limits.ConnectionBurstPerIP,
			ExemptNetworks:      exempt,
			HandshakeTimeout:    cfg.Limits.HandshakeTimeout,
			CommandTimeout:      cfg.Limits.CommandTimeout,
			DummyReplyWait:      cfg.Limits.DummyReplyTimeout,
			MaxLine:             cfg.Limits.MaxLineBytes,
			MaxLiteral:          cfg.Limits.MaxLiteralBytes,
			MaxPreloginBytes:    cfg.Limits.MaxPreloginBytes,
			MaxAuthFailures:     cfg.Limits.MaxAuthAttempts,
		},
		Passwords: proxy.PasswordOptions{
			IMAP:  cfg.Auth.PasswordPassthroughFor(config.ProtoIMAP),
			SMTP:  cfg.Auth.PasswordPassthroughFor(config.ProtoSMTP),
			POP3:  cfg.Auth.PasswordPassthroughFor(config.ProtoPOP3),
			Sieve: cfg.Auth.PasswordPassthroughFor(config.ProtoSieve),
		},
		Lifetime: proxy.LifetimeOptions{
			Mode:            cfg.OAuth2.SessionLifetime,
			RevalidateEvery: cfg.OAuth2.RevalidateEvery,
		},
		ProxyProtocolFrom: cfg.ProxyProtocol.TrustedNetworks,
		Logger:            log,
	}, nil
}

// revalidator is oauth2.session_lifetime revalidate's check of a session's
// token: the running authenticator's token validator without its cache (so
// the provider is asked, and a reload's new oauth2 settings apply), and its
// identity policy (the token must still name the session's mailbox). It is
// not throttled: a revoked token is not a guess.
type revalidator struct{ a *app }

// Revalidate asks the provider again (bypassing the cache) and applies the
// running identity policy; a refused token is also dropped from the cache,
// so that a reconnect with it is refused too.
func (r revalidator) Revalidate(ctx context.Context, c auth.Credentials) error {
	tc := r.a.checks.Load()
	ta := auth.TokenAuthenticator{Validator: tc.cache.Unwrap(), Policy: tc.policy, Logger: tc.log, Source: tc.mode}
	_, err := ta.Authenticate(ctx, c)
	if errors.Is(err, auth.ErrInvalidCredentials) {
		tc.cache.Forget(c.Token)
	}
	return err
}

// orNoLimit maps the configuration's 0 (no limit) to proxy's negative.
func orNoLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// rateOrOff maps the configuration's 0 (no rate limit) to proxy's negative.
func rateOrOff(r float64) float64 {
	if r == 0 {
		return -1
	}
	return r
}

// parsePrefixes parses CIDR networks, masking any host bits.
func parsePrefixes(nets []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// backend maps a backend section; it reads the CA file.
func backend(b config.Backend) (proxy.Backend, error) {
	tc := &tls.Config{ServerName: b.ServerName, InsecureSkipVerify: b.InsecureSkipVerify}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return proxy.Backend{}, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return proxy.Backend{}, fmt.Errorf("ca_file %s: no PEM certificate found", b.CAFile)
		}
		tc.RootCAs = pool
	}
	return proxy.Backend{
		Address:   b.Address,
		TLS:       proxy.TLSMode(b.TLS),
		TLSConfig: tc,
		ClientIP:  b.ClientIP,
		Login:     b.Login,
	}, nil
}

// timedValidator records the latency of real provider calls (it sits
// inside the cache) by result.
type timedValidator struct {
	next auth.Validator
	m    *metrics
}

func (v timedValidator) Validate(ctx context.Context, token string) (auth.Claims, error) {
	start := time.Now()
	c, err := v.next.Validate(ctx, token)
	result := "ok"
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		result = "invalid"
	case err != nil:
		result = "unavailable"
	}
	v.m.validation.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return c, err
}

// SourceFor forwards the per-token validator name (auto mode) to the logs.
func (v timedValidator) SourceFor(token string) string {
	if s, ok := v.next.(interface{ SourceFor(string) string }); ok {
		return s.SourceFor(token)
	}
	return ""
}
