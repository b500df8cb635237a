package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy/apppage"
	"github.com/mailgate/mailgate/proxy/discovery"
)

// The app-password page (app_passwords.listen) and the revalidation of
// the users' provider links behind it.

// pageServer is the page's listener and the revalidation loop.
type pageServer struct {
	srv   *http.Server
	ln    net.Listener
	reval *apppage.Revalidator
	log   *slog.Logger
}

// newPageServer opens app_passwords.listen (TLS from tlsConf unless
// app_passwords.tls is false) for a's store.
func newPageServer(a *app, tlsConf *tls.Config) (*pageServer, error) {
	cfg, log := a.cfg, a.log.With("component", "apppage")
	client, err := auth.NewHTTPClient(cfg.OAuth2.CAFile)
	if err != nil {
		return nil, fmt.Errorf("oauth2.ca_file: %w", err)
	}
	client.Timeout = cfg.OAuth2.Timeout
	provider := apppage.NewOIDC(apppage.OIDCOptions{
		Issuer: cfg.OAuth2.Issuer, ClientID: cfg.AppPasswords.OIDCClientID, ClientSecret: cfg.AppPasswords.OIDCClientSecret,
		RedirectURL: apppage.RedirectURL(cfg.AppPasswords.PageURL), Scopes: cfg.OAuth2.RequiredScopes, Client: client,
	})
	authn := pageAuthenticator{a}
	protocols, err := storeProtocols(cfg)
	if err != nil {
		return nil, err
	}
	h, err := apppage.New(apppage.Options{
		Store: a.appPass, Provider: provider, Authenticator: authn, URL: cfg.AppPasswords.PageURL,
		Protocols: protocols, DefaultExpiry: cfg.AppPasswords.DefaultExpiry, MaxExpiry: cfg.AppPasswords.MaxExpiry, Title: cfg.Discovery.DisplayName,
		Links: a.pageLinks, Addon: a.pageAddon, ProxiedClients: !cfg.AppPasswords.TLS, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ln, err := publicListener("app_passwords.listen", cfg.AppPasswords.Listen, cfg.AppPasswords.TLS, tlsConf)
	if err != nil {
		return nil, err
	}
	reval := &apppage.Revalidator{
		Store: a.appPass, Provider: provider, Authenticator: authn, Interval: cfg.AppPasswords.RevalidateInterval,
		Logger: log, Count: func(r string) { a.metrics.appPasswordRevalidations.WithLabelValues(r).Inc() },
	}
	return &pageServer{srv: discovery.NewServer(h, log), ln: ln, reval: reval, log: log}, nil
}

// run serves and revalidates until ctx is done, and returns once both
// have stopped.
func (p *pageServer) run(ctx context.Context) {
	revalidated := make(chan struct{})
	go func() { defer close(revalidated); p.reval.Run(ctx) }()
	p.log.Info("app passwords page listening", "addr", p.ln.Addr().String())
	serveUntil(ctx, p.srv, p.ln, p.log, "app passwords page listener")
	<-revalidated
}

// pageAuthenticator checks a page sign-in's access token with the running
// token check, like an OAuth mail login (without the login throttle: the
// provider's login page stands before it).
type pageAuthenticator struct{ a *app }

func (p pageAuthenticator) Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	tc := p.a.checks.Load()
	return auth.TokenAuthenticator{Validator: tc.cache, Policy: tc.policy, Logger: tc.log, Source: tc.mode}.Authenticate(ctx, c)
}

// pageLinks are the onboarding documents of user's domain, when the
// discovery listener serves them.
func (a *app) pageLinks(user string) []apppage.Link {
	if a.disco == nil {
		return nil
	}
	return []apppage.Link{
		{Label: "Automatic setup (Thunderbird and others)", URL: discovery.AutoconfigURL(user), Note: "mail apps that set themselves up from your address read this"},
		{Label: "Apple profile", URL: discovery.MobileconfigURL(user), Note: "for iPhone, iPad and Mac Mail; it asks for an app password"},
	}
}

// pageAddon is the Thunderbird add-on of the discovery site, when it
// publishes an OAuth client (built with the site, not per request).
func (a *app) pageAddon() []byte {
	if a.disco == nil {
		return nil
	}
	if xpi := a.disco.addon.Load(); xpi != nil {
		return *xpi
	}
	return nil
}
