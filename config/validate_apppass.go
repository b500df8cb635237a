package config

import (
	"net/url"
	"slices"
	"strings"
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
