package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateAppPasswords(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(c *Config)
		want   []string // problems, each "key: substring"; none = valid
	}{
		{"off by default", func(c *Config) {}, nil},
		{"on with the defaults", func(c *Config) { c.AppPasswords.Enabled = true }, nil},
		{"postgres", func(c *Config) {
			c.AppPasswords.Enabled, c.AppPasswords.Database = true, "postgres://mailgate:secret@db.example.com/mailgate?sslmode=verify-full"
		}, nil},
		{"every problem at once", func(c *Config) {
			c.AppPasswords = AppPasswords{Enabled: true, Database: "mysql://secret@db/x", Protocols: []string{"imap", "jmap", "imap"},
				MaxPerUser: -1, DefaultExpiry: 48 * time.Hour, MaxExpiry: 24 * time.Hour, KeyFile: filepath.Join(t.TempDir(), "missing")}
		}, []string{
			"app_passwords.database: want sqlite",
			`app_passwords.protocols: want imap, smtp, pop3 and/or sieve, got "jmap"`,
			`app_passwords.protocols: "imap" is listed twice`,
			"app_passwords.max_per_user: must be >= 0",
			"app_passwords.default_expiry: 48h is longer than app_passwords.max_expiry (24h)",
			"app_passwords.key_file: cannot read",
		}},
		{"negative expiries", func(c *Config) { c.AppPasswords.DefaultExpiry, c.AppPasswords.MaxExpiry = -1, -1 },
			[]string{"app_passwords.default_expiry: must be >= 0", "app_passwords.max_expiry: must be >= 0"}},
		{"enabled without protocols or database", func(c *Config) {
			c.AppPasswords.Enabled, c.AppPasswords.Protocols, c.AppPasswords.Database = true, []string{}, ""
		}, []string{"app_passwords.protocols: empty", "app_passwords.database: required"}},
		{"empty sqlite path", func(c *Config) { c.AppPasswords.Database = "sqlite://" }, []string{"app_passwords.database: no file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if !wantProblems(t, err, tt.want) {
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("problems are not FieldErrors: %v", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("a problem shows the database URL:\n%v", err)
			}
		})
	}
}

func TestAppPasswordsFor(t *testing.T) {
	a := Default().AppPasswords
	if a.For(ProtoIMAP) {
		t.Error("on by default")
	}
	a.Enabled, a.Protocols = true, []string{ProtoSMTP}
	if !a.For(ProtoSMTP) || a.For(ProtoIMAP) {
		t.Errorf("For with protocols smtp: smtp %v, imap %v", a.For(ProtoSMTP), a.For(ProtoIMAP))
	}
}

func TestValidateAppPasswordPage(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	page := func(c *Config) {
		c.AppPasswords.Enabled, c.AppPasswords.Listen, c.AppPasswords.KeyFile = true, ":8443", key
		c.AppPasswords.PageURL, c.AppPasswords.OIDCClientID, c.AppPasswords.OIDCClientSecret = "https://mail.example.com/app-passwords/", "page", "s3cret"
		c.OAuth2.Issuer = "https://auth.example.com/"
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"complete", page, nil},
		{"http on loopback", func(c *Config) { page(c); c.AppPasswords.PageURL = "http://127.0.0.1:8443/" }, nil},
		{"listen without the rest", func(c *Config) { c.AppPasswords.Enabled, c.AppPasswords.Listen = true, ":8443" }, []string{
			"app_passwords.page_url: required", "app_passwords.oidc_client_id: required",
			"app_passwords.oidc_client_secret_file: required", "app_passwords.key_file: required", "oauth2.issuer: required",
		}},
		{"plain http elsewhere", func(c *Config) { page(c); c.AppPasswords.PageURL = "http://mail.example.com/ap/" },
			[]string{"app_passwords.page_url: must be https"}},
		{"query", func(c *Config) { page(c); c.AppPasswords.PageURL = "https://mail.example.com/?x=1" },
			[]string{"app_passwords.page_url: want an https URL"}},
		{"bad listen and interval", func(c *Config) {
			page(c)
			c.AppPasswords.Listen, c.AppPasswords.RevalidateInterval = "8443", time.Millisecond
		},
			[]string{"app_passwords.listen: want [host]:port", "app_passwords.revalidate_interval: must be at least 1s"}},
		{"off: page keys not required", func(c *Config) { c.AppPasswords.Listen = ":8443" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.edit(&c)
			err := c.Validate()
			if !wantProblems(t, err, tt.want) {
				return
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("a problem shows the client secret:\n%v", err)
			}
		})
	}
}

func TestPageClientIsAnAudience(t *testing.T) {
	c := Default()
	c.OAuth2.Audiences = []string{"mail"}
	c.AppPasswords.OIDCClientID = "page"
	if got := c.Audiences(); slices.Contains(got, "page") {
		t.Errorf("Audiences() = %q with the page off", got)
	}
	c.AppPasswords.Enabled, c.AppPasswords.Listen = true, ":8443"
	if got := c.Audiences(); !slices.Equal(got, []string{"mail", "page"}) {
		t.Errorf("Audiences() = %q, want [mail page]", got)
	}
}
