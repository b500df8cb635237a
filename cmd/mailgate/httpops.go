package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The operations endpoint (http.listen): /metrics (Prometheus), /healthz
// (the process is up), /readyz (the load balancer's verdict: the listeners
// serve and the replica is not draining) and /dependencies (the backends and
// the provider are reachable and no backend refuses mailgate's login).
//
// A dependency's failure is not in /readyz's verdict unless
// http.readyz_dependencies is on: every replica shares the same backends and
// provider, so a balancer would take all of them out at once, and clients
// would get closed connections instead of a temporary failure.

const (
	readyCheckTimeout = 2 * time.Second
	readyCacheFor     = 5 * time.Second
)

type opsServer struct {
	srv      *http.Server
	ln       net.Listener
	serving  *atomic.Bool // the client listeners are up
	draining atomic.Bool  // SIGTERM received: /readyz says 503
	targets  []readyTarget
	log      *slog.Logger
	metrics  *metrics

	// withDependencies puts /dependencies into /readyz's verdict
	// (http.readyz_dependencies).
	withDependencies bool

	// problems, if set, reports a configuration problem seen by the proxy
	// (a backend refusing the master login); it is not cached.
	problems func() error

	mu      sync.Mutex
	checked time.Time
	lastErr error
}

// readyTarget is something that must be reachable for /dependencies.
type readyTarget struct{ name, addr string }

func newOpsServer(addr string, m *metrics, targets []readyTarget, serving *atomic.Bool, log *slog.Logger) (*opsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	o := &opsServer{ln: ln, serving: serving, targets: targets, log: log, metrics: m}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", o.readyz)
	mux.HandleFunc("GET /dependencies", o.dependenciesz)
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	return o, nil
}

func (o *opsServer) serve() error {
	err := o.srv.Serve(o.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (o *opsServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o.srv.Shutdown(ctx)
}

// drain makes /readyz answer 503 from now on.
func (o *opsServer) drain() {
	o.draining.Store(true)
	o.metrics.draining.Set(1)
}

func (o *opsServer) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case !o.serving.Load():
		http.Error(w, "not ready: listeners not up", http.StatusServiceUnavailable)
		return
	case o.draining.Load():
		http.Error(w, "not ready: draining (shutting down)", http.StatusServiceUnavailable)
		return
	}
	deps := o.dependencies(r.Context())
	if deps != nil && o.withDependencies {
		http.Error(w, "not ready: "+deps.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
	if deps != nil {
		io.WriteString(w, "dependencies (not in this verdict; see /dependencies): "+deps.Error()+"\n")
	}
}

func (o *opsServer) dependenciesz(w http.ResponseWriter, r *http.Request) {
	if err := o.dependencies(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

// dependencies reports a backend problem, or the targets that cannot be
// reached; reachability is cached for a few seconds so that probes cannot
// hammer the backends.
func (o *opsServer) dependencies(ctx context.Context) error {
	if o.problems != nil {
		if err := o.problems(); err != nil {
			return err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.checked) < readyCacheFor {
		return o.lastErr
	}
	o.checked, o.lastErr = time.Now(), o.dialTargets(ctx)
	if o.lastErr != nil {
		o.log.Warn("dependency unreachable", "err", o.lastErr)
	}
	return o.lastErr
}

// dialTargets connects to every target at once and sets mailgate_dependency_up.
func (o *opsServer) dialTargets(ctx context.Context) error {
	errs := make([]error, len(o.targets))
	var wg sync.WaitGroup
	for i, t := range o.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: readyCheckTimeout}
			c, err := d.DialContext(ctx, "tcp", t.addr)
			if err != nil {
				errs[i] = fmt.Errorf("%s unreachable", t.name)
				o.metrics.dependencyUp.WithLabelValues(t.name).Set(0)
				return
			}
			c.Close()
			o.metrics.dependencyUp.WithLabelValues(t.name).Set(1)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// urlHostPort returns host:port of a URL, with the scheme's default port.
func urlHostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

const healthcheckHelp = `Usage: mailgate healthcheck [--config FILE] [--url URL]

Asks a running mailgate for /healthz on its operations endpoint (http.listen)
and exits 0 if it answers 200, 1 otherwise (2: wrong flags). Meant for
Docker's HEALTHCHECK.
`

func runHealthcheck(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("healthcheck", healthcheckHelp, stdout, stderr).withConfig("http")
	target := cmd.fs.String("url", "", "URL to ask instead of http.listen's /healthz")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	if cmd.fs.NArg() > 0 {
		cmd.usageError("unexpected argument %q", cmd.fs.Arg(0))
		return 2
	}
	if *target == "" {
		cfg, err := cmd.loadConfig()
		if err != nil {
			return cmd.fail(1, "%v", err)
		}
		if cfg.HTTP.Listen == "" {
			return cmd.fail(1, "http.listen is empty: no endpoint to ask (%s)", cmd.source)
		}
		host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
		if err != nil {
			return cmd.fail(1, "http.listen: %v", err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		*target = "http://" + net.JoinHostPort(host, port) + "/healthz"
	}
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(*target)
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cmd.fail(1, "%s: %s", *target, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
