package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validConfig is Default() completed with what has no default; the files
// exist (Validate checks only that they can be opened).
func validConfig(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.TLS.CertFile = writeFile(t, "cert.pem", "cert")
	c.TLS.KeyFile = writeFile(t, "key.pem", "key")
	c.Master.Password = "pw"
	c.IMAP.Backend.Address = "mailserver:143"
	c.SMTP.Backend.Address = "mailserver:587"
	c.OAuth2.UserinfoURL = "https://auth.example.com/userinfo"
	return c
}

func TestValidateOK(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(c *Config)
	}{
		{"defaults completed", func(c *Config) {}},
		{"imap only", func(c *Config) { c.SMTP.ListenTLS, c.SMTP.ListenStartTLS, c.SMTP.Backend.Address = "", "", "" }},
		{"smtp xclient needs no master", func(c *Config) {
			c.IMAP.ListenTLS, c.IMAP.ListenStartTLS, c.IMAP.Backend.Address = "", "", ""
			c.SMTP.Backend.Login, c.Master.Password = "xclient", ""
		}},
		{"introspection", func(c *Config) {
			c.OAuth2.Mode, c.OAuth2.IntrospectionURL, c.OAuth2.ClientID, c.OAuth2.ClientSecret = "introspection", "https://idp/introspect", "mailgate", "s"
		}},
		{"jwt", func(c *Config) { c.OAuth2.Mode, c.OAuth2.Issuer = "jwt", "https://idp/" }},
		{"auto", func(c *Config) { c.OAuth2.Mode, c.OAuth2.Issuer = "auto", "https://idp/" }},
		{"port 0 for tests", func(c *Config) { c.IMAP.ListenTLS = "127.0.0.1:0" }},
		{"pop3 and sieve", func(c *Config) {
			c.POP3.Backend.Address, c.Sieve.Backend.Address = "mailserver:110", "mailserver:4190"
			c.Auth.PasswordPassthrough, c.Auth.PasswordPassthroughProtocols = true, []string{"pop3", "sieve"}
		}},
		{"sieve only", func(c *Config) {
			c.IMAP.ListenTLS, c.IMAP.ListenStartTLS, c.SMTP.ListenTLS, c.SMTP.ListenStartTLS = "", "", "", ""
			c.Sieve.Backend = Backend{Address: "mailserver:4190", TLS: "none", ClientIP: "proxy"}
		}},
		{"http disabled", func(c *Config) { c.HTTP.Listen = "" }},
		{"limits off", func(c *Config) {
			c.Limits.MaxConnections, c.Limits.MaxConnectionsPerIP, c.Limits.MaxPreloginConnections, c.Limits.MaxPreloginPerIP = 0, 0, 0, 0
			c.Limits.ConnectionRatePerIP, c.Limits.ConnectionBurstPerIP = 0, 0
		}},
		{"networks", func(c *Config) {
			c.Limits.IPv4Prefix, c.Limits.IPv6Prefix = 24, 48
			c.Limits.ExemptNetworks = []string{"192.0.2.10/32", "2001:db8::/64"}
			c.Limits.ConnectionRatePerIP = 0.5
		}},
		{"small budget", func(c *Config) { c.Limits.MaxLineBytes, c.Limits.MaxPreloginBytes = 8<<10, 8<<10 }},
		{"audiences in userinfo mode warn only", func(c *Config) { c.OAuth2.Audiences = []string{"roundcube"} }},
		{"extra certificate", func(c *Config) {
			c.TLS.Certificates = []CertPair{{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestValidateProblems(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tt := range []struct {
		name   string
		mutate func(c *Config)
		key    string // the FieldError key expected
		words  string // and a word of its message
	}{
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", "debug"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "json"},
		{"no listener", func(c *Config) {
			c.IMAP.ListenTLS, c.IMAP.ListenStartTLS, c.SMTP.ListenTLS, c.SMTP.ListenStartTLS = "", "", "", ""
		}, "imap.listen_tls", "at least one"},
		{"bad listen", func(c *Config) { c.SMTP.ListenTLS = "465" }, "smtp.listen_tls", "port"},
		{"bad http listen", func(c *Config) { c.HTTP.Listen = "localhost" }, "http.listen", "port"},
		{"imap backend missing", func(c *Config) { c.IMAP.Backend.Address = "" }, "imap.backend.address", "mailserver:143"},
		{"smtp backend no port", func(c *Config) { c.SMTP.Backend.Address = "mailserver" }, "smtp.backend.address", "host:port"},
		{"backend tls", func(c *Config) { c.IMAP.Backend.TLS = "ssl" }, "imap.backend.tls", "implicit"},
		{"imap client_ip", func(c *Config) { c.IMAP.Backend.ClientIP = "xclient" }, "imap.backend.client_ip", "id"},
		{"smtp client_ip", func(c *Config) { c.SMTP.Backend.ClientIP = "id" }, "smtp.backend.client_ip", "xclient"},
		{"smtp login", func(c *Config) { c.SMTP.Backend.Login = "plain" }, "smtp.backend.login", "master"},
		{"imap login", func(c *Config) { c.IMAP.Backend.Login = "master" }, "imap.backend.login", "SMTP"},
		{"pop3 client_ip", func(c *Config) { c.POP3.Backend.Address, c.POP3.Backend.ClientIP = "mailserver:110", "id" }, "pop3.backend.client_ip", "xclient"},
		{"sieve backend no port", func(c *Config) { c.Sieve.Backend.Address = "mailserver" }, "sieve.backend.address", "host:port"},
		{"sieve login", func(c *Config) { c.Sieve.Backend.Address, c.Sieve.Backend.Login = "mailserver:4190", "master" }, "sieve.backend.login", "SMTP"},
		{"passthrough protocol", func(c *Config) { c.Auth.PasswordPassthroughProtocols = []string{"pop"} }, "auth.password_passthrough_protocols", "pop3"},
		{"no listener but pop3 without backend", func(c *Config) {
			c.IMAP.ListenTLS, c.IMAP.ListenStartTLS, c.SMTP.ListenTLS, c.SMTP.ListenStartTLS = "", "", "", ""
		}, "imap.listen_tls", "at least one"},
		{"backend ca", func(c *Config) { c.SMTP.Backend.CAFile = missing }, "smtp.backend.ca_file", "cannot read"},
		{"min version", func(c *Config) { c.TLS.MinVersion = "1.1" }, "tls.min_version", "1.2"},
		{"no cert", func(c *Config) { c.TLS.CertFile = "" }, "tls.cert_file", "required"},
		{"no key", func(c *Config) { c.TLS.KeyFile = "" }, "tls.key_file", "required"},
		{"key without cert", func(c *Config) {
			c.IMAP.ListenTLS, c.IMAP.ListenStartTLS, c.SMTP.ListenTLS, c.SMTP.ListenStartTLS = "", "", "", ""
			c.TLS.CertFile = ""
		}, "tls.cert_file", "with tls.key_file"},
		{"cert unreadable", func(c *Config) { c.TLS.CertFile = missing }, "tls.cert_file", "cannot read"},
		{"cert is dir", func(c *Config) { c.TLS.KeyFile = t.TempDir() }, "tls.key_file", "directory"},
		{"extra pair half", func(c *Config) { c.TLS.Certificates = []CertPair{{CertFile: c.TLS.CertFile}} },
			"tls.certificates[0].key_file", "required"},
		{"master user", func(c *Config) { c.Master.User = "" }, "master.user", "required"},
		{"master password", func(c *Config) { c.Master.Password = "" }, "master.password", "master.password_file"},
		{"mode", func(c *Config) { c.OAuth2.Mode = "oidc" }, "oauth2.mode", "userinfo"},
		{"userinfo url needed", func(c *Config) { c.OAuth2.UserinfoURL = "" }, "oauth2.userinfo_url", "required"},
		{"userinfo url scheme", func(c *Config) { c.OAuth2.UserinfoURL = "ftp://idp/x" }, "oauth2.userinfo_url", "http(s)"},
		{"userinfo url host", func(c *Config) { c.OAuth2.UserinfoURL = "https:///x" }, "oauth2.userinfo_url", "host"},
		{"introspection url", func(c *Config) { c.OAuth2.Mode = "introspection" }, "oauth2.introspection_url", "required"},
		{"introspection client", func(c *Config) { c.OAuth2.Mode, c.OAuth2.IntrospectionURL = "introspection", "https://idp/i" },
			"oauth2.client_id", "required"},
		{"introspection secret", func(c *Config) {
			c.OAuth2.Mode, c.OAuth2.IntrospectionURL, c.OAuth2.ClientID = "introspection", "https://idp/i", "mg"
		}, "oauth2.client_secret", "client_secret_file"},
		{"jwt issuer", func(c *Config) { c.OAuth2.Mode = "jwt" }, "oauth2.issuer", "required"},
		{"auto issuer", func(c *Config) { c.OAuth2.Mode = "auto" }, "oauth2.issuer", "required"},
		{"auto needs an endpoint", func(c *Config) { c.OAuth2.Mode, c.OAuth2.Issuer, c.OAuth2.UserinfoURL = "auto", "https://idp/", "" },
			"oauth2.userinfo_url", "introspection_url"},
		{"introspection auth", func(c *Config) { c.OAuth2.IntrospectionAuth = "basic" }, "oauth2.introspection_auth", "client_secret_post"},
		{"username claim", func(c *Config) { c.OAuth2.UsernameClaim = "" }, "oauth2.username_claim", "email"},
		{"allowed domain", func(c *Config) { c.OAuth2.AllowedDomains = []string{"a@b.c"} }, "oauth2.allowed_domains", "domain"},
		{"cache ttl", func(c *Config) { c.OAuth2.CacheTTL = -time.Second }, "oauth2.cache_ttl", ">= 0"},
		{"timeout", func(c *Config) { c.OAuth2.Timeout = 0 }, "oauth2.timeout", "positive"},
		{"session lifetime", func(c *Config) { c.OAuth2.SessionLifetime = "forever" }, "oauth2.session_lifetime", "revalidate"},
		{"revalidate every", func(c *Config) { c.OAuth2.SessionLifetime, c.OAuth2.RevalidateEvery = "revalidate", 0 },
			"oauth2.revalidate_every", "positive"},
		{"oauth ca", func(c *Config) { c.OAuth2.CAFile = missing }, "oauth2.ca_file", "cannot read"},
		{"xoauth2 error status", func(c *Config) { c.OAuth2.XOAUTH2ErrorStatus = "403" }, "oauth2.xoauth2_error_status", "400 or 401"},
		{"xoauth2 error status empty", func(c *Config) { c.OAuth2.XOAUTH2ErrorStatus = "" }, "oauth2.xoauth2_error_status", "400 or 401"},
		{"dummy reply timeout zero", func(c *Config) { c.Limits.DummyReplyTimeout = 0 }, "limits.dummy_reply_timeout", "less than limits.command_timeout"},
		{"dummy reply timeout over command timeout", func(c *Config) { c.Limits.DummyReplyTimeout = 30 * time.Second },
			"limits.dummy_reply_timeout", "less than limits.command_timeout (30s)"},
		{"limits", func(c *Config) { c.Limits.MaxConnectionsPerIP = -1 }, "limits.max_connections_per_ip", ">= 0"},
		{"prelogin", func(c *Config) { c.Limits.MaxPreloginConnections = -1 }, "limits.max_prelogin_connections", ">= 0"},
		{"prelogin per ip", func(c *Config) { c.Limits.MaxPreloginPerIP = -5 }, "limits.max_prelogin_per_ip", ">= 0"},
		{"ipv4 prefix", func(c *Config) { c.Limits.IPv4Prefix = 33 }, "limits.ipv4_prefix", "between 8 and 32"},
		{"ipv4 prefix zero", func(c *Config) { c.Limits.IPv4Prefix = 0 }, "limits.ipv4_prefix", "between 8 and 32"},
		{"ipv6 prefix", func(c *Config) { c.Limits.IPv6Prefix = 8 }, "limits.ipv6_prefix", "between 16 and 128"},
		{"connection rate", func(c *Config) { c.Limits.ConnectionRatePerIP = -1 }, "limits.connection_rate_per_ip", ">= 0"},
		{"connection burst", func(c *Config) { c.Limits.ConnectionBurstPerIP = 0 }, "limits.connection_burst_per_ip", "at least 1"},
		{"exempt network", func(c *Config) { c.Limits.ExemptNetworks = []string{"10.0.0.0/8", "webmail"} },
			"limits.exempt_networks", `"webmail"`},
		{"exempt bare address", func(c *Config) { c.Limits.ExemptNetworks = []string{"192.0.2.10"} },
			"limits.exempt_networks", `"192.0.2.10" is not a CIDR`},
		{"prelogin bytes", func(c *Config) { c.Limits.MaxPreloginBytes = 1024 }, "limits.max_prelogin_bytes", "between 4096"},
		{"line over prelogin bytes", func(c *Config) { c.Limits.MaxLineBytes, c.Limits.MaxPreloginBytes = 128<<10, 64<<10 },
			"limits.max_prelogin_bytes", "max_line_bytes"},
		{"preauth", func(c *Config) { c.Limits.PreauthTimeout = 0 }, "limits.preauth_timeout", "positive"},
		{"idle", func(c *Config) { c.Limits.IdleTimeout = 30 * time.Second }, "limits.idle_timeout", "29m"},
		{"max message bytes", func(c *Config) { c.SMTP.MaxMessageBytes = -1 }, "smtp.max_message_bytes", ">= 0"},
		{"sender alias", func(c *Config) { c.SMTP.SenderAliases = map[string][]string{"a@x": {"nobody"}} }, "smtp.sender_aliases", "nobody"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil")
			}
			var found bool
			for _, fe := range fieldErrors(err) {
				if fe.Key == tt.key && strings.Contains(fe.Problem, tt.words) {
					found = true
				}
			}
			if !found {
				t.Errorf("Validate() = %v\nwant a %s error mentioning %q", err, tt.key, tt.words)
			}
		})
	}
}

// fieldErrors unpacks the errors.Join of Validate.
func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return nil
	}
	for _, e := range j.Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	return out
}

func TestValidateReportsAll(t *testing.T) {
	c := validConfig(t)
	c.Log.Level = "loud"
	c.IMAP.Backend.Address = ""
	c.OAuth2.UserinfoURL = ""
	c.Limits.IdleTimeout = 0
	c.TLS.KeyFile = ""
	err := c.Validate()
	keys := map[string]bool{}
	for _, fe := range fieldErrors(err) {
		keys[fe.Key] = true
	}
	for _, k := range []string{"log.level", "imap.backend.address", "oauth2.userinfo_url", "limits.idle_timeout", "tls.key_file"} {
		if !keys[k] {
			t.Errorf("Validate() = %v\nmissing a problem for %s", err, k)
		}
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(err.Error(), "\n") {
		if seen[line] {
			t.Errorf("reported twice: %s", line)
		}
		seen[line] = true
		if !strings.Contains(line, ": ") || len(line) > 200 {
			t.Errorf("message %q: want short \"key: problem\"", line)
		}
	}
}

func TestWarnings(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(c *Config)
		want   string // "" = no warning at all
	}{
		{"none", func(c *Config) {}, ""},
		{"short idle", func(c *Config) { c.Limits.IdleTimeout = 10 * time.Minute }, "limits.idle_timeout"},
		{"cleartext master", func(c *Config) { c.IMAP.Backend.TLS = "none" }, "imap.backend.tls"},
		{"xclient login over none is fine", func(c *Config) {
			c.IMAP.ListenTLS, c.IMAP.ListenStartTLS = "", ""
			c.SMTP.Backend.TLS, c.SMTP.Backend.Login = "none", "xclient"
		}, ""},
		{"skip verify", func(c *Config) { c.SMTP.Backend.InsecureSkipVerify = true }, "smtp.backend.insecure_skip_verify"},
		{"http idp", func(c *Config) { c.OAuth2.UserinfoURL = "http://idp.example/userinfo" }, "oauth2.userinfo_url"},
		{"http loopback idp", func(c *Config) { c.OAuth2.UserinfoURL = "http://127.0.0.1:8080/userinfo" }, ""},
		{"jwt without audience", func(c *Config) { c.OAuth2.Mode, c.OAuth2.Issuer = "jwt", "https://idp/" }, "oauth2.audiences"},
		{"audiences in userinfo mode", func(c *Config) { c.OAuth2.Audiences = []string{"roundcube"} }, "oauth2.audiences"},
		{"audiences in introspection mode", func(c *Config) {
			c.OAuth2.Mode, c.OAuth2.IntrospectionURL, c.OAuth2.ClientID, c.OAuth2.ClientSecret = "introspection", "https://idp/i", "mg", "s"
			c.OAuth2.Audiences = []string{"roundcube"}
		}, ""},
		{"literal over prelogin budget", func(c *Config) { c.Limits.MaxLiteralBytes, c.Limits.MaxPreloginBytes = 1<<20, 64<<10 },
			"limits.max_literal_bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			w := c.Warnings()
			if tt.want == "" {
				if len(w) != 0 {
					t.Errorf("Warnings() = %q, want none", w)
				}
				return
			}
			if !hasWarning(&c, tt.want) {
				t.Errorf("Warnings() = %q, want one about %s", w, tt.want)
			}
		})
	}
}

// wantProblems checks the error of Validate: none when want is empty,
// else one naming every "key: substring" of want. It returns whether
// there is an error to check further.
func wantProblems(t *testing.T, err error, want []string) bool {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("Validate: %v", err)
		}
		return false
	}
	if err == nil {
		t.Fatalf("Validate passed, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("problems lack %q:\n%v", w, err)
		}
	}
	return true
}
