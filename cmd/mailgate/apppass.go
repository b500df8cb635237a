package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy"
)

// openAppPasswords opens the app-password store of cfg for serve, or
// returns nil when app_passwords is off.
func openAppPasswords(cfg *config.Config, log *slog.Logger) (*apppass.Store, error) {
	if !cfg.AppPasswords.Enabled {
		return nil, nil
	}
	return openAppPassStore(context.Background(), cfg, log.With("component", "apppass"))
}

// openAppPassStore opens app_passwords.database with the policy and key of
// cfg, whether or not app passwords are enabled (the operator command may
// make them before). ctx bounds the opening and the migrations.
func openAppPassStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*apppass.Store, error) {
	a := cfg.AppPasswords
	protocols, err := storeProtocols(cfg)
	if err != nil {
		return nil, err
	}
	policy := apppass.Policy{MaxPerUser: orNoLimit(a.MaxPerUser), DefaultExpiry: a.DefaultExpiry, MaxExpiry: a.MaxExpiry, Protocols: protocols}
	opts := apppass.Options{Policy: policy, Logger: log}
	if a.KeyFile != "" {
		b, err := os.ReadFile(a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("app_passwords.key_file: %w", err)
		}
		key, err := apppass.ParseKeyFile(b)
		if err != nil {
			return nil, fmt.Errorf("app_passwords.key_file %s: %w", a.KeyFile, err)
		}
		if opts.Keys, err = apppass.NewKeyring(key); err != nil {
			return nil, fmt.Errorf("app_passwords.key_file %s: %w", a.KeyFile, err)
		}
	}
	st, err := apppass.Open(ctx, a.Database, opts)
	if err != nil {
		return nil, fmt.Errorf("app_passwords.database: %w", err) // Open's errors never show a password
	}
	return st, nil
}

// storeProtocols are app_passwords.protocols as the store names them.
func storeProtocols(cfg *config.Config) ([]apppass.Protocol, error) {
	var out []apppass.Protocol
	for _, p := range cfg.AppPasswords.Protocols {
		proto, err := apppass.ParseProtocol(p)
		if err != nil {
			return nil, fmt.Errorf("app_passwords.protocols: %w", err)
		}
		out = append(out, proto)
	}
	return out, nil
}

// appPasswordOptions maps app_passwords to proxy's options: logins check
// the store (v; nil: off) on the protocols listed, counted in m.
func appPasswordOptions(cfg *config.Config, v apppass.Verifier, m *metrics) proxy.AppPasswordOptions {
	if v == nil || !cfg.AppPasswords.Enabled {
		return proxy.AppPasswordOptions{}
	}
	a := cfg.AppPasswords
	return proxy.AppPasswordOptions{
		Verifier:     appPasswordLogins{v: v, count: m.appPasswordLogins},
		IMAP:         a.For(config.ProtoIMAP),
		SMTP:         a.For(config.ProtoSMTP),
		POP3:         a.For(config.ProtoPOP3),
		Sieve:        a.For(config.ProtoSieve),
		Checker:      appPasswordLogins{v: v},
		RecheckEvery: a.RecheckInterval,
	}
}

// purgeAfter is how long revoked and expired app passwords stay in the
// store (so that a login with one is logged as such) before purgeEvery's
// pass deletes them, with expired page sessions and sign-ins.
const (
	purgeAfter = 90 * 24 * time.Hour
	purgeEvery = time.Hour
)

// startStoreJobs starts what uses the app-password store in the
// background (the page with its revalidation, the purge) and returns the
// function that stops them and waits, to be called before the store
// closes.
func (a *app) startStoreJobs() (stop func()) {
	if a.appPass == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if a.page != nil {
		wg.Go(func() { a.page.run(ctx) })
	}
	wg.Go(func() { a.purgeAppPasswords(ctx) })
	return sync.OnceFunc(func() { cancel(); wg.Wait() })
}

// purgeAppPasswords deletes old revoked and expired rows now and every
// purgeEvery until ctx ends.
func (a *app) purgeAppPasswords(ctx context.Context) {
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	for {
		n, err := a.appPass.Purge(ctx, time.Now().Add(-purgeAfter))
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Warn("app passwords: purge failed", "err", err)
		case n > 0:
			a.log.Info("app passwords: purged revoked and expired passwords", "count", n, "older_than", purgeAfter)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// closeAppPasswords closes the app-password store, if open.
func (a *app) closeAppPasswords() {
	if a.appPass != nil {
		a.appPass.Close()
		a.appPass = nil
	}
}

// appPasswordLogins adapts the store to the login path (auth.AppPasswords)
// and counts every check of a value that is an app password by proto and
// apppass.Outcome.
type appPasswordLogins struct {
	v     apppass.Verifier
	count *prometheus.CounterVec
}

var (
	_ auth.AppPasswords        = appPasswordLogins{}
	_ proxy.AppPasswordChecker = appPasswordLogins{}
)

// IsAppPassword implements auth.AppPasswords.
func (appPasswordLogins) IsAppPassword(password string) bool { return apppass.IsPassword(password) }

// StillValid checks an open session's app password again (no hash).
func (l appPasswordLogins) StillValid(ctx context.Context, id, user, proto string) error {
	p, err := apppass.ParseProtocol(proto)
	if err != nil {
		return fmt.Errorf("apppass: session over %w", err)
	}
	return l.v.StillValid(ctx, id, user, p)
}

func (l appPasswordLogins) VerifyAppPassword(ctx context.Context, user, password, proto, clientIP string) (auth.AppPassword, error) {
	p, err := apppass.ParseProtocol(proto)
	if err != nil {
		return auth.AppPassword{}, fmt.Errorf("apppass: login over %w", err)
	}
	rec, err := l.v.Verify(ctx, user, password, p, clientIP)
	if errors.Is(err, apppass.ErrNotAppPassword) {
		return auth.AppPassword{}, fmt.Errorf("%w: %w", auth.ErrNotAppPassword, err)
	}
	l.count.WithLabelValues(proto, apppass.Outcome(err)).Inc()
	if err != nil {
		var r *apppass.Refusal
		if errors.As(err, &r) {
			return auth.AppPassword{ID: r.ID}, err
		}
		return auth.AppPassword{}, err
	}
	return auth.AppPassword{ID: rec.ID, User: rec.User}, nil
}
