package main

import (
	"fmt"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy"
	"github.com/mailgate/mailgate/proxy/imap"
	"github.com/mailgate/mailgate/proxy/pop3"
	"github.com/mailgate/mailgate/proxy/sieve"
	"github.com/mailgate/mailgate/proxy/smtp"
)

// newFronts builds the front of every served protocol on srv, by protocol
// name; each registers its backend probe with srv.
func newFronts(srv *proxy.Server, cfg *config.Config) (map[string]proxy.Front, error) {
	fronts := map[string]proxy.Front{}
	for _, p := range configuredProtos(cfg) {
		f, err := newFront(srv, cfg, p)
		if err != nil {
			return nil, err
		}
		fronts[p] = f
	}
	return fronts, nil
}

func newFront(srv *proxy.Server, cfg *config.Config, proto string) (proxy.Front, error) {
	cb := map[string]config.Backend{config.ProtoIMAP: cfg.IMAP.Backend, config.ProtoSMTP: cfg.SMTP.Backend,
		config.ProtoPOP3: cfg.POP3.Backend, config.ProtoSieve: cfg.Sieve.Backend}[proto]
	b, err := backend(cb)
	if err != nil {
		return nil, fmt.Errorf("%s.backend: %w", proto, err)
	}
	switch proto {
	case config.ProtoIMAP:
		return imap.New(srv, imap.Options{Backend: b}), nil
	case config.ProtoSMTP:
		return smtp.New(srv, smtp.Options{
			Backend:         b,
			Hostname:        cfg.SMTP.Hostname,
			MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
			EnforceSender:   cfg.SMTP.EnforceSender,
			SenderAliases:   cfg.SMTP.SenderAliases,
			DataTimeout:     cfg.Limits.DataTimeout,
		})
	case config.ProtoPOP3:
		return pop3.New(srv, pop3.Options{Backend: b}), nil
	default:
		opts := sieve.Options{Backend: b}
		if err := opts.Check(); err != nil {
			return nil, fmt.Errorf("sieve.backend: %w", err)
		}
		return sieve.New(srv, opts), nil
	}
}

// master is the master user as the proxy takes it.
func master(cfg *config.Config) proxy.Master {
	return proxy.Master{User: cfg.Master.User, Password: cfg.Master.Password, CheckMailbox: cfg.Master.CheckMailbox}
}
