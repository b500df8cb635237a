package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy/discovery"
)

// The onboarding documents (discovery listener, thunderbird-addon, onboarding
// dns) publish one discovery.Site, built here from the configuration and the
// provider's OpenID configuration.

// publishedListeners are the client listeners in the order documents list
// them: implicit TLS before STARTTLS (RFC 8314).
var publishedListeners = []struct {
	key   string
	proto string
	dp    discovery.Protocol
	sec   discovery.Security
}{
	{"imap.listen_tls", config.ProtoIMAP, discovery.IMAP, discovery.ImplicitTLS},
	{"imap.listen_starttls", config.ProtoIMAP, discovery.IMAP, discovery.StartTLS},
	{"pop3.listen_tls", config.ProtoPOP3, discovery.POP3, discovery.ImplicitTLS},
	{"pop3.listen_starttls", config.ProtoPOP3, discovery.POP3, discovery.StartTLS},
	{"smtp.listen_tls", config.ProtoSMTP, discovery.SMTP, discovery.ImplicitTLS},
	{"smtp.listen_starttls", config.ProtoSMTP, discovery.SMTP, discovery.StartTLS},
	{"sieve.listen", config.ProtoSieve, discovery.Sieve, discovery.StartTLS},
}

// siteFrom builds the Site of cfg. addrOf gives a listener's address by its
// key (the bound one when serving, so that ":0" shows its real port); meta is
// the provider's metadata, nil when unknown. OAuth is published only with
// the metadata of the published client's issuer; without it the site is
// OAuthPending.
func siteFrom(cfg *config.Config, meta *auth.Metadata, addrOf func(key string) string) (discovery.Site, error) {
	host, err := publicHostname(cfg)
	if err != nil {
		return discovery.Site{}, err
	}
	site := discovery.Site{Domains: lowerAll(cfg.DiscoveryDomains()), DisplayName: cfg.Discovery.DisplayName}
	for _, l := range publishedListeners {
		addr := addrOf(l.key)
		if addr == "" || !cfg.On(l.proto) {
			continue
		}
		port, err := portOf(addr)
		if err != nil {
			return discovery.Site{}, fmt.Errorf("%s: %w", l.key, err)
		}
		site.Servers = append(site.Servers, discovery.Server{
			Protocol: l.dp, Host: host, Port: port, Security: l.sec,
			Passwords: cfg.Auth.PasswordPassthroughFor(l.proto) || cfg.AppPasswords.For(l.proto),
		})
	}
	cl, ok := cfg.PublishedClient()
	issuer := cl.IssuerOr(cfg.OAuth2.Issuer)
	switch {
	case !ok || issuer == "":
	case meta == nil || meta.Issuer != issuer: // not read yet, or read for another issuer
		site.OAuthPending = true
	default:
		site.OAuth = &discovery.OAuth{
			Issuer: meta.Issuer, AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint,
			ClientID: cl.ClientID, Scopes: cl.ScopesOrDefault(),
		}
	}
	return site, nil
}

// publicHostname is discovery.hostname, else smtp.hostname, else the
// machine's host name.
func publicHostname(cfg *config.Config) (string, error) {
	for _, h := range []string{cfg.Discovery.Hostname, cfg.SMTP.Hostname} {
		if h != "" {
			return strings.ToLower(h), nil
		}
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", errors.New("discovery.hostname: not set, and the machine has no host name")
	}
	return strings.ToLower(h), nil
}

// portOf is the port of a listen address such as ":993" or "127.0.0.1:993".
func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("no port in %q", addr)
	}
	return n, nil
}

func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSuffix(strings.ToLower(s), ".")
	}
	return out
}

// providerMetadata reads the issuer's OpenID configuration for the
// documents. It returns nil, nil when nothing is to be published (no public
// client or no issuer).
func providerMetadata(ctx context.Context, cfg *config.Config) (*auth.Metadata, error) {
	cl, ok := cfg.PublishedClient()
	issuer := cl.IssuerOr(cfg.OAuth2.Issuer)
	if !ok || issuer == "" {
		return nil, nil
	}
	client, err := auth.NewHTTPClient(cfg.OAuth2.CAFile)
	if err != nil {
		return nil, fmt.Errorf("oauth2.ca_file: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.OAuth2.Timeout)
	defer cancel()
	m, err := auth.FetchMetadata(ctx, client, issuer)
	if err != nil {
		return nil, err
	}
	if m.AuthorizationEndpoint == "" || m.TokenEndpoint == "" {
		return nil, fmt.Errorf("%s names no authorization_endpoint or token_endpoint", auth.DiscoveryURL(issuer))
	}
	return &m, nil
}

// configAddr is a listener's configured address (for commands that do not
// serve).
func configAddr(cfg *config.Config) func(string) string {
	return func(key string) string { return listenAddr(cfg, key) }
}
