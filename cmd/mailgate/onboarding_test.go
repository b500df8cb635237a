package main

import (
	"reflect"
	"testing"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy/discovery"
)

// TestSiteFromConfig: every served listener is published with its port,
// implicit TLS first, passwords where passthrough applies, and the OAuth
// block from the published client and the provider's metadata.
func TestSiteFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.SMTP.Hostname = "Mail.Example.com"
	cfg.IMAP.ListenStartTLS = "" // not served
	cfg.POP3.Backend.Address = "mailserver:110"
	cfg.Sieve.Backend.Address = ""
	cfg.Auth.PasswordPassthrough, cfg.Auth.PasswordPassthroughProtocols = true, []string{"imap"}
	cfg.Discovery.Domains = []string{"Example.com."}
	cfg.Clients = []config.Client{{Name: "roundcube", ClientID: "rc"}, {Name: "thunderbird", ClientID: "tb", Public: true}}
	meta := &auth.Metadata{Issuer: "https://id.example.com/", AuthorizationEndpoint: "https://id.example.com/auth", TokenEndpoint: "https://id.example.com/token"}
	cfg.OAuth2.Issuer = meta.Issuer

	site, err := siteFrom(&cfg, meta, configAddr(&cfg))
	if err != nil {
		t.Fatal(err)
	}
	h := "mail.example.com"
	want := discovery.Site{
		Domains: []string{"example.com"},
		Servers: []discovery.Server{
			{Protocol: discovery.IMAP, Host: h, Port: 993, Security: discovery.ImplicitTLS, Passwords: true},
			{Protocol: discovery.POP3, Host: h, Port: 995, Security: discovery.ImplicitTLS},
			{Protocol: discovery.POP3, Host: h, Port: 110, Security: discovery.StartTLS},
			{Protocol: discovery.SMTP, Host: h, Port: 465, Security: discovery.ImplicitTLS},
			{Protocol: discovery.SMTP, Host: h, Port: 587, Security: discovery.StartTLS},
		},
		OAuth: &discovery.OAuth{Issuer: meta.Issuer, AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint,
			ClientID: "tb", Scopes: []string{"openid", "email", "offline_access"}},
	}
	if !reflect.DeepEqual(site, want) {
		t.Errorf("site =\n%+v\nwant\n%+v", site, want)
	}

	cfg.Discovery.Hostname = "imap.example.com"
	if site, _ = siteFrom(&cfg, nil, configAddr(&cfg)); site.OAuth != nil || !site.OAuthPending || site.Servers[0].Host != "imap.example.com" {
		t.Errorf("without metadata: OAuth %+v, pending %v, host %q; want none, pending, imap.example.com", site.OAuth, site.OAuthPending, site.Servers[0].Host)
	}
	cfg.Clients[1].Issuer = "https://other.example.com/" // the metadata read is another issuer's
	if site, _ = siteFrom(&cfg, meta, configAddr(&cfg)); site.OAuth != nil || !site.OAuthPending {
		t.Errorf("with another issuer's metadata: OAuth %+v, pending %v; want none, pending", site.OAuth, site.OAuthPending)
	}
}
