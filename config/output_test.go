package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestRedacted(t *testing.T) {
	const (
		pw     = "master-Pa55"
		secret = "client-S3cret"
		urlPw  = "url-pw-42"
	)
	c := Default()
	c.Master.Password = pw
	c.Master.PasswordFile = "/run/secrets/pw"
	c.OAuth2.ClientSecret = secret
	c.OAuth2.IntrospectionURL = "https://mg:" + urlPw + "@idp.example/introspect"
	c.OAuth2.UserinfoURL = "https://idp.example/userinfo"

	r := c.Redacted()
	out, err := r.YAML()
	if err != nil {
		t.Fatalf("YAML() = %v", err)
	}
	for _, s := range []string{pw, secret, urlPw} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("Redacted().YAML() shows %q:\n%s", s, out)
		}
	}
	if r.Master.Password != "REDACTED" || r.OAuth2.ClientSecret != "REDACTED" {
		t.Errorf("Redacted() secrets = %q, %q", r.Master.Password, r.OAuth2.ClientSecret)
	}
	if r.Master.PasswordFile != "/run/secrets/pw" || r.OAuth2.UserinfoURL != c.OAuth2.UserinfoURL {
		t.Errorf("Redacted() changed non-secrets: %+v", r)
	}
	if !strings.Contains(r.OAuth2.IntrospectionURL, "mg:REDACTED@idp.example") {
		t.Errorf("Redacted() introspection_url = %q", r.OAuth2.IntrospectionURL)
	}
	if c.Master.Password != pw {
		t.Error("Redacted() modified its receiver")
	}
	if e := Default().Redacted(); e.Master.Password != "" || e.OAuth2.ClientSecret != "" {
		t.Errorf("Redacted() of unset secrets = %q, %q; want empty", e.Master.Password, e.OAuth2.ClientSecret)
	}
}

// TestYAMLRoundTrip checks that YAML() writes every key in the file format:
// parsing the output gives the same Config back.
func TestYAMLRoundTrip(t *testing.T) {
	c := Default()
	c.IMAP.ListenStartTLS = ""
	c.TLS.Certificates = []CertPair{{CertFile: "a.pem", KeyFile: "a.key"}}
	c.SMTP.SenderAliases = map[string][]string{"jane.doe@example.com": {"*@example.org"}}
	c.OAuth2.Audiences = []string{"mail", "imap"}
	c.OAuth2.RequiredScopes = []string{}
	c.OAuth2.AllowedDomains = []string{}
	c.TLS.MinVersion = "1.3"
	c.SMTP.MaxMessageBytes = 1 << 20
	out, err := c.YAML()
	if err != nil {
		t.Fatalf("YAML() = %v", err)
	}
	for _, key := range []string{"min_version: \"1.3\"", "cache_ttl: 5m0s", "listen_starttls: \"\"", "insecure_skip_verify: false"} {
		if !bytes.Contains(out, []byte(key)) {
			t.Errorf("YAML() lacks %q:\n%s", key, out)
		}
	}
	back, err := Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("Parse(YAML()) = %v\n%s", err, out)
	}
	if !reflect.DeepEqual(*back, c) {
		t.Errorf("Parse(YAML()) =\n%+v\nwant\n%+v", *back, c)
	}
}
