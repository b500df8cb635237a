package main

import (
	"fmt"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy"
	"github.com/mailgate/mailgate/proxy/pop3"
	"github.com/mailgate/mailgate/proxy/sieve"
)

// newFronts builds the fronts of the protocols served by their own
// packages, by protocol name.
func newFronts(cfg *config.Config, srv *proxy.Server) (map[string]proxy.Front, error) {
	fronts := map[string]proxy.Front{}
	if cfg.On(config.ProtoPOP3) {
		b, err := backend(cfg.POP3.Backend)
		if err != nil {
			return nil, fmt.Errorf("pop3.backend: %w", err)
		}
		fronts[config.ProtoPOP3] = pop3.New(srv, pop3.Options{Backend: b, Master: master(cfg)})
	}
	if cfg.On(config.ProtoSieve) {
		b, err := backend(cfg.Sieve.Backend)
		if err != nil {
			return nil, fmt.Errorf("sieve.backend: %w", err)
		}
		opts := sieve.Options{Backend: b, Master: master(cfg)}
		if err := opts.Check(); err != nil {
			return nil, fmt.Errorf("sieve.backend: %w", err)
		}
		fronts[config.ProtoSieve] = sieve.New(srv, opts)
	}
	return fronts, nil
}

// master is the master user as the proxy takes it.
func master(cfg *config.Config) proxy.Master {
	return proxy.Master{User: cfg.Master.User, Password: cfg.Master.Password, CheckMailbox: cfg.Master.CheckMailbox}
}
