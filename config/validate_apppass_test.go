package config

import (
	"errors"
	"path/filepath"
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
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
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
