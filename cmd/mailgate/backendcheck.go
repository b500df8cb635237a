package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy"
)

// backendCheckTimeout bounds check-config's probe of one backend.
const backendCheckTimeout = 10 * time.Second

// configuredProtos are the protocols served (see config.Config.On).
func configuredProtos(cfg *config.Config) []string {
	var out []string
	for _, p := range []string{config.ProtoIMAP, config.ProtoSMTP, config.ProtoPOP3, config.ProtoSieve} {
		if cfg.On(p) {
			out = append(out, p)
		}
	}
	return out
}

// checkBackends probes each backend once at start-up (logging in as
// master.check_mailbox when set): a configuration problem is logged with its
// fix (and /readyz reports it until fixed); an unreachable backend is only
// warned about, as it may start after mailgate.
func (a *app) checkBackends(ctx context.Context) {
	for _, proto := range configuredProtos(a.cfg) {
		go func() {
			err := a.srv.CheckBackend(ctx, proto, a.cfg.Master.CheckMailbox)
			var p *proxy.BackendProblem
			switch {
			case err == nil:
				a.log.Info("backend accepts mailgate's login path", "proto", proto)
			case errors.As(err, &p), ctx.Err() != nil:
				// logged by the proxy with its fix
			default:
				a.log.Warn("backend not checked at start-up: logins fail until it answers", "proto", proto, "err", err)
			}
		}()
	}
}

// backendProblems reports a backend that refuses the master login for a
// configuration reason (see proxy.Server.BackendProblem), for /readyz.
func (a *app) backendProblems() error {
	var errs []error
	for _, proto := range configuredProtos(a.cfg) {
		if p := a.srv.BackendProblem(proto); p != "" {
			errs = append(errs, fmt.Errorf("%s backend %s", proto, p))
		}
	}
	return errors.Join(errs...)
}

// reportBackends is check-config's probe: one line per backend. It returns
// false if a backend has a configuration problem; an unreachable backend
// is a warning.
func reportBackends(cfg *config.Config, loginAs string, w io.Writer) bool {
	opts, err := proxyOptions(cfg, refuseAll{}, slog.New(slog.DiscardHandler))
	var srv *proxy.Server
	if err == nil {
		opts.TLSConfig = &tls.Config{} // never serves
		if srv, err = proxy.New(opts); err == nil {
			_, err = newFronts(srv, cfg) // registers their probes
		}
	}
	if err != nil {
		fmt.Fprintf(w, "warning: backends not checked: %v\n", err)
		return true
	}
	ok := true
	for _, proto := range configuredProtos(cfg) {
		ctx, cancel := context.WithTimeout(context.Background(), backendCheckTimeout)
		err := srv.CheckBackend(ctx, proto, loginAs)
		cancel()
		var p *proxy.BackendProblem
		switch {
		case err == nil && loginAs != "":
			fmt.Fprintf(w, "%s backend: OK, master login as %s accepted\n", proto, loginAs)
		case err == nil:
			fmt.Fprintf(w, "%s backend: OK (reachable, offers the master login; --login-as USER also tries it)\n", proto)
		case errors.As(err, &p):
			ok = false
			fmt.Fprintf(w, "%s backend: PROBLEM: %s\n  fix: %s\n", proto, p.What, p.Fix)
		default:
			fmt.Fprintf(w, "warning: %s backend not checked: %v\n", proto, err)
		}
	}
	return ok
}

// refuseAll is check-config's authenticator: its server never serves.
type refuseAll struct{}

func (refuseAll) Authenticate(context.Context, auth.Credentials) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrInvalidCredentials
}
