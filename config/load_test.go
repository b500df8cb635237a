package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	return p
}

// TestExampleMatchesDefault parses the shipped example and checks that every
// key it does not set to a site-specific value equals Default(): the example
// documents the defaults.
func TestExampleMatchesDefault(t *testing.T) {
	raw, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pw := writeFile(t, "pw", "s3cret\n")
	text := strings.ReplaceAll(string(raw), "/run/secrets/mailgate_master_password", pw)
	got, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse(example) = %v", err)
	}
	want := Default()
	want.TLS.CertFile = "/etc/mailgate/tls/fullchain.pem"
	want.TLS.KeyFile = "/etc/mailgate/tls/privkey.pem"
	want.TLS.Certificates = []CertPair{}
	want.Master.PasswordFile = pw
	want.Master.Password = "s3cret"
	want.IMAP.Backend.Address = "mailserver:143"
	want.SMTP.Backend.Address = "mailserver:587"
	want.SMTP.Hostname = "mail.example.com"
	want.OAuth2.UserinfoURL = "https://auth.example.com/application/o/userinfo/"
	want.OAuth2.Audiences = []string{}
	want.OAuth2.RequiredScopes = []string{}
	want.OAuth2.AllowedDomains = []string{}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Parse(example) =\n%+v\nwant\n%+v", *got, want)
	}
}

func TestParseFile(t *testing.T) {
	for _, tt := range []struct {
		name  string
		yaml  string
		check func(c *Config) bool
	}{
		{"empty file keeps defaults", "", func(c *Config) bool { return reflect.DeepEqual(*c, Default()) }},
		{"override keeps siblings", "imap:\n  backend:\n    address: d:143\n",
			func(c *Config) bool {
				return c.IMAP.Backend.Address == "d:143" && c.IMAP.Backend.TLS == "starttls" && c.IMAP.ListenTLS == ":993"
			}},
		{"null disables", "imap:\n  listen_starttls:\n", func(c *Config) bool { return c.IMAP.ListenStartTLS == "" && c.IMAP.ListenTLS == ":993" }},
		{"empty string disables", "smtp:\n  listen_tls: \"\"\n", func(c *Config) bool { return c.SMTP.ListenTLS == "" }},
		{"durations", "oauth2:\n  cache_ttl: 2m\n  negative_cache_ttl: 0\n", func(c *Config) bool {
			return c.OAuth2.CacheTTL == 2*time.Minute && c.OAuth2.NegativeCacheTTL == 0
		}},
		{"rate as int and float", "limits:\n  connection_rate_per_ip: 5\n  exempt_networks: [10.1.0.0/16]\n", func(c *Config) bool {
			return c.Limits.ConnectionRatePerIP == 5 && reflect.DeepEqual(c.Limits.ExemptNetworks, []string{"10.1.0.0/16"})
		}},
		{"rate fraction", "limits:\n  connection_rate_per_ip: 0.25\n", func(c *Config) bool { return c.Limits.ConnectionRatePerIP == 0.25 }},
		{"keys are case-insensitive", "LOG:\n  Level: debug\n", func(c *Config) bool { return c.Log.Level == "debug" }},
		{"min_version as number", "tls:\n  min_version: 1.3\n", func(c *Config) bool { return c.TLS.MinVersion == "1.3" }},
		{"certificates", "tls:\n  certificates:\n    - cert_file: a.pem\n      key_file: a.key\n", func(c *Config) bool {
			return reflect.DeepEqual(c.TLS.Certificates, []CertPair{{"a.pem", "a.key"}})
		}},
		{"sender aliases with dots", "smtp:\n  sender_aliases:\n    Jane.Doe@Example.com: [\"*@example.org\", j@example.com]\n", func(c *Config) bool {
			return reflect.DeepEqual(c.SMTP.SenderAliases, map[string][]string{"jane.doe@example.com": {"*@example.org", "j@example.com"}})
		}},
		{"list as comma string", "oauth2:\n  audiences: a,b\n", func(c *Config) bool {
			return reflect.DeepEqual(c.OAuth2.Audiences, []string{"a", "b"})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.yaml))
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if !tt.check(c) {
				t.Errorf("Parse() = %+v", *c)
			}
		})
	}
}

func TestParseFileErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"duration without unit", "oauth2:\n  timeout: 5\n", "no unit"},
		{"bad duration", "limits:\n  idle_timeout: soon\n", "idle_timeout"},
		{"not yaml", "imap: [\n", "yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse() error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadEnv(t *testing.T) {
	file := "imap:\n  backend:\n    address: file:143\noauth2:\n  timeout: 7s\n"
	for _, tt := range []struct {
		name  string
		env   []string
		check func(c *Config) bool
	}{
		{"env beats file", []string{"MAILGATE_IMAP_BACKEND_ADDRESS=env:143"},
			func(c *Config) bool { return c.IMAP.Backend.Address == "env:143" }},
		{"env-only string key", []string{"MAILGATE_OAUTH2_CLIENT_SECRET=s"},
			func(c *Config) bool { return c.OAuth2.ClientSecret == "s" }},
		{"env-only nested key", []string{"MAILGATE_SMTP_BACKEND_SERVER_NAME=mx"},
			func(c *Config) bool { return c.SMTP.Backend.ServerName == "mx" }},
		{"list", []string{"MAILGATE_OAUTH2_AUDIENCES=mail, imap,,"},
			func(c *Config) bool { return reflect.DeepEqual(c.OAuth2.Audiences, []string{"mail", "imap"}) }},
		{"empty list", []string{"MAILGATE_OAUTH2_ALLOWED_DOMAINS="},
			func(c *Config) bool { return len(c.OAuth2.AllowedDomains) == 0 }},
		{"duration over file", []string{"MAILGATE_OAUTH2_TIMEOUT=2s"},
			func(c *Config) bool { return c.OAuth2.Timeout == 2*time.Second }},
		{"empty duration ignored", []string{"MAILGATE_OAUTH2_TIMEOUT="},
			func(c *Config) bool { return c.OAuth2.Timeout == 7*time.Second }},
		{"env-only duration", []string{"MAILGATE_LIMITS_IDLE_TIMEOUT=45m"},
			func(c *Config) bool { return c.Limits.IdleTimeout == 45*time.Minute }},
		{"clients as YAML", []string{"MAILGATE_CLIENTS=[{name: thunderbird, client_id: tb, public: true}]"},
			func(c *Config) bool {
				return reflect.DeepEqual(c.Clients, []Client{{Name: "thunderbird", ClientID: "tb", Public: true}})
			}},
		{"bool", []string{"MAILGATE_SMTP_ENFORCE_SENDER=false", "MAILGATE_AUTH_PASSWORD_PASSTHROUGH=1"},
			func(c *Config) bool { return !c.SMTP.EnforceSender && c.Auth.PasswordPassthrough }},
		{"ints", []string{"MAILGATE_LIMITS_MAX_CONNECTIONS=7", "MAILGATE_SMTP_MAX_MESSAGE_BYTES=1048576"},
			func(c *Config) bool { return c.Limits.MaxConnections == 7 && c.SMTP.MaxMessageBytes == 1<<20 }},
		{"limits", []string{"MAILGATE_LIMITS_CONNECTION_RATE_PER_IP=0.5", "MAILGATE_LIMITS_IPV6_PREFIX=48",
			"MAILGATE_LIMITS_EXEMPT_NETWORKS=192.0.2.10/32, 2001:db8::/64", "MAILGATE_LIMITS_MAX_PRELOGIN_CONNECTIONS=300"},
			func(c *Config) bool {
				return c.Limits.ConnectionRatePerIP == 0.5 && c.Limits.IPv6Prefix == 48 && c.Limits.MaxPreloginConnections == 300 &&
					reflect.DeepEqual(c.Limits.ExemptNetworks, []string{"192.0.2.10/32", "2001:db8::/64"})
			}},
		{"empty string disables listener", []string{"MAILGATE_IMAP_LISTEN_STARTTLS="},
			func(c *Config) bool { return c.IMAP.ListenStartTLS == "" }},
		{"certificates as yaml", []string{"MAILGATE_TLS_CERTIFICATES=[{cert_file: a.pem, key_file: a.key}]"},
			func(c *Config) bool { return reflect.DeepEqual(c.TLS.Certificates, []CertPair{{"a.pem", "a.key"}}) }},
		{"sender aliases as yaml", []string{`MAILGATE_SMTP_SENDER_ALIASES={"A@x.org": ["b@x.org"]}`},
			func(c *Config) bool {
				return reflect.DeepEqual(c.SMTP.SenderAliases, map[string][]string{"a@x.org": {"b@x.org"}})
			}},
		{"last entry wins", []string{"MAILGATE_LOG_LEVEL=warn", "MAILGATE_LOG_LEVEL=error"},
			func(c *Config) bool { return c.Log.Level == "error" }},
		{"unrelated variables ignored", []string{"PATH=/bin", "LOG_LEVEL=debug", "MAILGATE_CONFIG=/x"},
			func(c *Config) bool { return c.Log.Level == "info" && len(c.Warnings()) == 0 }},
		{"unknown MAILGATE variable noted", []string{"MAILGATE_OAUTH2_USERINFOURL=x"},
			func(c *Config) bool {
				return c.OAuth2.UserinfoURL == "" && hasWarning(c, "MAILGATE_OAUTH2_USERINFOURL")
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeFile(t, "c.yaml", file), nil, tt.env)
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if !tt.check(c) {
				t.Errorf("Load() = %+v", *c)
			}
		})
	}
}

func hasWarning(c *Config, sub string) bool {
	for _, w := range c.Warnings() {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

func TestLoadEnvErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []string
		want []string
	}{
		{"bad duration", []string{"MAILGATE_OAUTH2_TIMEOUT=5"}, []string{"MAILGATE_OAUTH2_TIMEOUT"}},
		{"bad bool", []string{"MAILGATE_SMTP_ENFORCE_SENDER=maybe"}, []string{"MAILGATE_SMTP_ENFORCE_SENDER"}},
		{"bad int", []string{"MAILGATE_LIMITS_MAX_CONNECTIONS=many"}, []string{"MAILGATE_LIMITS_MAX_CONNECTIONS"}},
		{"bad number", []string{"MAILGATE_LIMITS_CONNECTION_RATE_PER_IP=fast"}, []string{"MAILGATE_LIMITS_CONNECTION_RATE_PER_IP"}},
		{"bad yaml", []string{"MAILGATE_TLS_CERTIFICATES=[{cert: a}]"}, []string{"MAILGATE_TLS_CERTIFICATES"}},
		{"all reported", []string{"MAILGATE_OAUTH2_TIMEOUT=x", "MAILGATE_LIMITS_MAX_CONNECTIONS=y"},
			[]string{"MAILGATE_OAUTH2_TIMEOUT", "MAILGATE_LIMITS_MAX_CONNECTIONS"}},
		{"ENABLE_OAUTH2 not a boolean", []string{"ENABLE_OAUTH2=yes please"}, []string{"ENABLE_OAUTH2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("", nil, tt.env)
			if err == nil {
				t.Fatal("Load() = nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() error = %v, want it to mention %s", err, w)
				}
			}
		})
	}
}

func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, l := range leaves() {
		if prev, dup := seen[l.env()]; dup {
			t.Errorf("%s and %s share %s", prev, l.key, l.env())
		}
		seen[l.env()] = l.key
	}
	if len(seen) < 50 {
		t.Errorf("only %d keys found; the struct walk is broken", len(seen))
	}
}

func TestLoadFlags(t *testing.T) {
	file := writeFile(t, "c.yaml", "log:\n  level: warn\nhttp:\n  listen: \":1\"\n")
	for _, tt := range []struct {
		name  string
		args  []string
		env   []string
		check func(c *Config) bool
	}{
		{"file beats default", nil, nil, func(c *Config) bool { return c.Log.Level == "warn" }},
		{"env beats file", nil, []string{"MAILGATE_LOG_LEVEL=error"}, func(c *Config) bool { return c.Log.Level == "error" }},
		{"flag beats env", []string{"--log-level=debug"}, []string{"MAILGATE_LOG_LEVEL=error"},
			func(c *Config) bool { return c.Log.Level == "debug" }},
		{"unset flag changes nothing", []string{"--mode=jwt"}, nil,
			func(c *Config) bool { return c.Log.Level == "warn" && c.HTTP.Listen == ":1" && c.OAuth2.Mode == "jwt" }},
		{"flag set to empty", []string{"--http-listen="}, nil, func(c *Config) bool { return c.HTTP.Listen == "" }},
		{"every flag", []string{"--imap-backend=i:143", "--smtp-backend=s:587", "--userinfo-url=https://u/",
			"--issuer=https://i/", "--master-user=m", "--tls-cert=c.pem", "--tls-key=k.pem", "--mode=auto"}, nil,
			func(c *Config) bool {
				return c.IMAP.Backend.Address == "i:143" && c.SMTP.Backend.Address == "s:587" &&
					c.OAuth2.UserinfoURL == "https://u/" && c.OAuth2.Issuer == "https://i/" && c.Master.User == "m" &&
					c.TLS.CertFile == "c.pem" && c.TLS.KeyFile == "k.pem" && c.OAuth2.Mode == "auto"
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("Parse(%q) = %v", tt.args, err)
			}
			c, err := Load(file, fs, tt.env)
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if !tt.check(c) {
				t.Errorf("Load() = %+v", *c)
			}
		})
	}
}

func TestFlagKeysExist(t *testing.T) {
	for _, fk := range flagKeys {
		if _, ok := leafByKey(fk.key); !ok {
			t.Errorf("--%s maps to unknown key %s", fk.name, fk.key)
		}
	}
}

func TestLoadMasterPasswordFileFlag(t *testing.T) {
	pw := writeFile(t, "pw", "from-flag\r\n")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--master-password-file", pw}); err != nil {
		t.Fatal(err)
	}
	c, err := Load("", fs, nil)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if c.Master.Password != "from-flag" {
		t.Errorf("Master.Password = %q, want %q", c.Master.Password, "from-flag")
	}
}

func TestAliases(t *testing.T) {
	file := writeFile(t, "c.yaml", "oauth2:\n  mode: jwt\n  issuer: https://idp/\n")
	for _, tt := range []struct {
		name     string
		env      []string
		mode     string
		userinfo string
		warning  string
	}{
		{"introspection url is userinfo", []string{"OAUTH2_INTROSPECTION_URL=https://idp/userinfo"},
			"userinfo", "https://idp/userinfo", "OAUTH2_INTROSPECTION_URL"},
		{"MAILGATE userinfo wins", []string{"OAUTH2_INTROSPECTION_URL=https://dms/", "MAILGATE_OAUTH2_USERINFO_URL=https://mg/"},
			"jwt", "https://mg/", "OAUTH2_INTROSPECTION_URL ignored"},
		{"MAILGATE mode wins", []string{"OAUTH2_INTROSPECTION_URL=https://dms/", "MAILGATE_OAUTH2_MODE=auto"},
			"auto", "https://dms/", "OAUTH2_INTROSPECTION_URL"},
		{"empty alias ignored", []string{"OAUTH2_INTROSPECTION_URL="}, "jwt", "", ""},
		{"ENABLE_OAUTH2=1", []string{"ENABLE_OAUTH2=1"}, "jwt", "", ""},
		{"ENABLE_OAUTH2=0 noted", []string{"ENABLE_OAUTH2=0"}, "jwt", "", "ENABLE_OAUTH2=0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(file, nil, tt.env)
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if c.OAuth2.Mode != tt.mode || c.OAuth2.UserinfoURL != tt.userinfo {
				t.Errorf("mode, userinfo_url = %q, %q; want %q, %q", c.OAuth2.Mode, c.OAuth2.UserinfoURL, tt.mode, tt.userinfo)
			}
			if tt.warning != "" && !hasWarning(c, tt.warning) {
				t.Errorf("Warnings() = %q, want one about %q", c.Warnings(), tt.warning)
			}
			if tt.warning == "" && len(c.Warnings()) > 1 { // jwt without audiences warns once
				t.Errorf("Warnings() = %q", c.Warnings())
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	pw := writeFile(t, "pw", "master-pw\n")
	cs := writeFile(t, "cs", "client-secret")
	empty := writeFile(t, "empty", "\n")
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tt := range []struct {
		name    string
		yaml    string
		env     []string
		wantErr string
		check   func(c *Config) bool
	}{
		{"files read and trimmed", "master:\n  password_file: " + pw + "\noauth2:\n  client_secret_file: " + cs + "\n", nil, "",
			func(c *Config) bool {
				return c.Master.Password == "master-pw" && c.OAuth2.ClientSecret == "client-secret"
			}},
		{"file from env", "", []string{"MAILGATE_MASTER_PASSWORD_FILE=" + pw}, "",
			func(c *Config) bool { return c.Master.Password == "master-pw" }},
		{"plain value", "master:\n  password: inline\n", nil, "", func(c *Config) bool { return c.Master.Password == "inline" }},
		{"both in file", "master:\n  password: inline\n  password_file: " + pw + "\n", nil, "master.password_file: master.password is set too", nil},
		{"value from env, file from file", "oauth2:\n  client_secret_file: " + cs + "\n", []string{"MAILGATE_OAUTH2_CLIENT_SECRET=x"},
			"oauth2.client_secret_file: oauth2.client_secret is set too", nil},
		{"missing file", "master:\n  password_file: " + missing + "\n", nil, "master.password_file: cannot read " + missing + ": no such file", nil},
		{"empty file", "master:\n  password_file: " + empty + "\n", nil, "is empty", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeFile(t, "c.yaml", tt.yaml), nil, tt.env)
			if tt.wantErr != "" {
				// Load goes on; Validate reports the problem with the others.
				if err != nil {
					t.Fatalf("Load() = %v, want the problem left to Validate", err)
				}
				err = c.Validate()
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "master-pw") || strings.Contains(err.Error(), "inline") {
					t.Errorf("error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if !tt.check(c) {
				t.Errorf("Load() = %+v", *c)
			}
		})
	}
	c, err := Load(writeFile(t, "c.yaml", "master:\n  password: a\n  password_file: "+pw+"\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); !errors.Is(err, ErrSecretConflict) {
		t.Errorf("errors.Is(%v, ErrSecretConflict) = false", err)
	}
}

func TestLoadPath(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatalf(`Load("") = %v`, err)
	}
	if !reflect.DeepEqual(*c, Default()) {
		t.Errorf(`Load("") = %+v, want Default()`, *c)
	}
	if _, err := Load(writeFile(t, "big.yaml", "# "+strings.Repeat("x", maxConfigBytes)), nil, nil); err == nil {
		t.Error("Load(oversized file) = nil error")
	}
}
