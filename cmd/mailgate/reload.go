package main

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"sync/atomic"
	"syscall"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy"
)

// SIGHUP reloads the certificates and the reloadable parts of the
// configuration: log.level and the oauth2 section (validator, policy,
// cache), except session_lifetime and revalidate_every. Everything else (listeners, backends, master user, limits) needs a
// restart; a changed value there is reported and ignored. A configuration
// that does not load or validate is refused and the running one stays.

// swapAuthenticator lets a reload replace the authenticator under running
// listeners; sessions already authenticated are not affected.
type swapAuthenticator struct {
	cur atomic.Pointer[proxy.Authenticator]
}

func (s *swapAuthenticator) Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	return (*s.cur.Load()).Authenticate(ctx, c)
}

func (s *swapAuthenticator) set(a proxy.Authenticator) { s.cur.Store(&a) }

// reloadOnSIGHUP reloads on every SIGHUP until ctx is done.
func (a *app) reloadOnSIGHUP(ctx context.Context, load func() (*config.Config, error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for {
		select {
		case <-ctx.Done():
			// Shutting down: a SIGHUP from a log rotation or a certificate
			// renewal hook must not kill the drain (its default action).
			signal.Ignore(syscall.SIGHUP)
			return
		case <-hup:
			a.reload(load)
		}
	}
}

func (a *app) reload(load func() (*config.Config, error)) {
	if err := a.certs.Reload(); err != nil {
		a.log.Error("certificate reload failed; keeping the old ones", "err", err)
	} else {
		a.log.Info("certificates reloaded")
	}
	if load == nil {
		return
	}
	next, err := load()
	if err == nil {
		err = validate(next)
	}
	if err != nil {
		a.log.Error("configuration reload refused; keeping the running one", "err", err)
		return
	}
	tc, err := newTokenCheck(next, a.log, a.metrics, sharedCache(a.shared))
	if err != nil {
		a.log.Error("configuration reload refused; keeping the running one", "err", err)
		return
	}
	for _, key := range restartOnlyChanges(a.cfg, next) {
		a.log.Warn("configuration change needs a restart; ignored until then", "section", key)
	}
	a.use(tc)
	if a.level != nil {
		a.level.Set(parseLevel(next.Log.Level))
	}
	applyReloadable(a.cfg, next)
	a.drainDelay.Store(int64(next.Cluster.DrainDelay))
	if a.disco != nil {
		snapshot := *a.cfg // the discovery listener reads it from other goroutines
		if err := a.disco.reload(&snapshot); err != nil {
			a.log.Error("discovery documents not reloaded", "err", err)
		}
	}
	a.log.Info("configuration reloaded", "reloaded", "log.level, oauth2, clients, discovery documents, cluster.drain_delay")
}

// applyReloadable sets c's reloadable keys from next. The others need a
// restart (restartOnlyChanges).
func applyReloadable(c, next *config.Config) {
	lifetime, every, status := c.OAuth2.SessionLifetime, c.OAuth2.RevalidateEvery, c.OAuth2.XOAUTH2ErrorStatus
	c.OAuth2, c.Log.Level, c.Clients = next.OAuth2, next.Log.Level, next.Clients
	// Restart only (they are in the proxy's options).
	c.OAuth2.SessionLifetime, c.OAuth2.RevalidateEvery, c.OAuth2.XOAUTH2ErrorStatus = lifetime, every, status
	listen, tls := c.Discovery.Listen, c.Discovery.TLS
	c.Discovery = next.Discovery
	c.Discovery.Listen, c.Discovery.TLS = listen, tls
	c.Cluster.DrainDelay = next.Cluster.DrainDelay
}

// restartOnlyChanges names the sections that differ but cannot be reloaded.
func restartOnlyChanges(cur, next *config.Config) []string {
	var out []string
	for name, pair := range map[string][2]any{
		"tls":           {cur.TLS, next.TLS},
		"master":        {cur.Master, next.Master},
		"imap":          {cur.IMAP, next.IMAP},
		"smtp":          {cur.SMTP, next.SMTP},
		"pop3":          {cur.POP3, next.POP3},
		"sieve":         {cur.Sieve, next.Sieve},
		"auth":          {cur.Auth, next.Auth},
		"app_passwords": {cur.AppPasswords, next.AppPasswords},
		"limits":        {cur.Limits, next.Limits},
		"http":          {cur.HTTP, next.HTTP},
		"discovery.listen, discovery.tls": {
			[2]any{cur.Discovery.Listen, cur.Discovery.TLS}, [2]any{next.Discovery.Listen, next.Discovery.TLS}},
		"cluster.redis":  {cur.Cluster.Redis, next.Cluster.Redis},
		"proxy_protocol": {cur.ProxyProtocol, next.ProxyProtocol},
		"log.format":     {cur.Log.Format, next.Log.Format},
		"oauth2.session_lifetime, oauth2.revalidate_every": {
			[2]any{cur.OAuth2.SessionLifetime, cur.OAuth2.RevalidateEvery},
			[2]any{next.OAuth2.SessionLifetime, next.OAuth2.RevalidateEvery}},
		"oauth2.xoauth2_error_status": {cur.OAuth2.XOAUTH2ErrorStatus, next.OAuth2.XOAUTH2ErrorStatus},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			out = append(out, name)
		}
	}
	return out
}
