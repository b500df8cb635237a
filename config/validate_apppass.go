package config

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// validateAppPasswords checks the app_passwords section. The values are
// checked whether or not it is enabled (a typo shows before it is turned
// on); the key file only when it is.
func (c *Config) validateAppPasswords(p *problems) {
	a := &c.AppPasswords
	p.appPassDatabase("app_passwords.database", a.Database, a.Enabled)
	seen := map[string]bool{}
	for _, proto := range a.Protocols {
		switch {
		case proto != ProtoIMAP && proto != ProtoSMTP && proto != ProtoPOP3 && proto != ProtoSieve:
			p.add("app_passwords.protocols", "want imap, smtp, pop3 and/or sieve, got %q", proto)
		case seen[proto]:
			p.add("app_passwords.protocols", "%q is listed twice", proto)
		}
		seen[proto] = true
	}
	if a.Enabled && len(a.Protocols) == 0 {
		p.add("app_passwords.protocols", "empty while app_passwords.enabled is on: list imap, smtp, pop3 and/or sieve, or turn app passwords off")
	}
	if a.RecheckInterval < 0 {
		p.add("app_passwords.recheck_interval", "must be >= 0 (0 = open sessions are not checked)")
	}
	if a.MaxPerUser < 0 {
		p.add("app_passwords.max_per_user", "must be >= 0 (0 = no limit)")
	}
	if a.DefaultExpiry < 0 {
		p.add("app_passwords.default_expiry", "must be >= 0 (0 = max_expiry, or none)")
	}
	if a.MaxExpiry < 0 {
		p.add("app_passwords.max_expiry", "must be >= 0 (0 = none)")
	}
	if a.MaxExpiry > 0 && a.DefaultExpiry > a.MaxExpiry {
		p.add("app_passwords.default_expiry", "%s is longer than app_passwords.max_expiry (%s)", formatDuration(a.DefaultExpiry), formatDuration(a.MaxExpiry))
	}
	if a.Enabled {
		p.file("app_passwords.key_file", a.KeyFile)
	}
	c.validateAppPasswordPage(p)
}

// validateAppPasswordPage checks the self-service page's keys: with
// listen set, it needs a public URL, its OIDC client, the provider's
// issuer (for the endpoints) and the key that seals refresh tokens.
func (c *Config) validateAppPasswordPage(p *problems) {
	a := &c.AppPasswords
	p.listen("app_passwords.listen", a.Listen)
	if a.PageURL != "" {
		p.pageURL("app_passwords.page_url", a.PageURL)
	}
	if a.RevalidateInterval < time.Second {
		p.add("app_passwords.revalidate_interval", "must be at least 1s (e.g. \"1h\")")
	}
	if !a.Page() {
		return
	}
	need := func(key, val, why string) {
		if val == "" {
			p.add(key, "required with app_passwords.listen: %s", why)
		}
	}
	need("app_passwords.page_url", a.PageURL, "the page's public https URL, e.g. https://mail.example.com/app-passwords/")
	need("app_passwords.oidc_client_id", a.OIDCClientID, "the confidential OAuth client the page signs in with")
	need("app_passwords.oidc_client_secret_file", a.OIDCClientSecret, "the file holding that client's secret")
	need("app_passwords.key_file", a.KeyFile, "the key that seals the users' refresh tokens (openssl rand -hex 32)")
	need("oauth2.issuer", c.OAuth2.Issuer, "the page signs in at the provider named by its OpenID configuration")
}

// pageURL checks the page's public URL: https, or http on a loopback host
// (browsers treat those as secure, so Secure cookies still work).
func (p *problems) pageURL(key, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		p.add(key, "want an https URL with a host and a path, no query (e.g. https://mail.example.com/app-passwords/)")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		p.add(key, "must be https (http only on a loopback host): the page's cookies are Secure")
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// appPassDatabase checks the store's URL without echoing it (a PostgreSQL
// URL may hold a password).
func (p *problems) appPassDatabase(key, s string, required bool) {
	const want = "want sqlite:///path/to/file.db, sqlite:relative.db or postgres://user@host/db"
	switch {
	case s == "":
		if required {
			p.add(key, "required with app_passwords.enabled: %s", want)
		}
	case strings.HasPrefix(s, "sqlite:"):
		if strings.TrimPrefix(s, "sqlite:") == "" || s == "sqlite://" {
			p.add(key, "no file in the sqlite URL: %s", want)
		}
	default:
		u, err := url.Parse(s)
		if err != nil || !slices.Contains([]string{"postgres", "postgresql"}, u.Scheme) || u.Host == "" {
			p.add(key, "%s", want)
		}
	}
}
