package tbaddon

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/proxy/discovery"
)

// TestManifestGolden pins the zero-Options manifest: the configuration
// verified with Thunderbird 153.8 ESR (internal window, https://localhost,
// public PKCE client).
func TestManifestGolden(t *testing.T) {
	want := `{
  "manifest_version": 2,
  "name": "Example Mail OAuth",
  "version": "1.0",
  "description": "Lets Thunderbird log in with OAuth 2.0 at mail.example.org, smtp.example.org.",
  "browser_specific_settings": {
    "gecko": {
      "id": "mailgate-oauth@example.org",
      "strict_min_version": "140.0"
    }
  },
  "oauth_provider": {
    "issuer": "id.example.org",
    "clientId": "thunderbird",
    "authorizationEndpoint": "https://id.example.org/realms/mail/protocol/openid-connect/auth",
    "tokenEndpoint": "https://id.example.org/realms/mail/protocol/openid-connect/token",
    "redirectionEndpoint": "https://localhost",
    "usePKCE": true,
    "hostnames": [
      "mail.example.org",
      "smtp.example.org"
    ],
    "scopes": "openid email offline_access"
  }
}
`
	if got := string(mustManifest(t, testSite(), Options{})); got != want {
		t.Errorf("Manifest() =\n%s\nwant\n%s", got, want)
	}
}

// TestManifestSchema validates oauth_provider against the schema of the
// oldest Thunderbird the add-on allows, and of newer ones.
func TestManifestSchema(t *testing.T) {
	all := Options{MinVersion: "155.0", Redirect: ExternalBrowser, IssuerIdentifier: true, EmailDomains: true}
	for _, tt := range []struct {
		name   string
		opts   Options
		schema string
	}{
		{"zero/140", Options{}, "oauth_provider.tb140.json"},
		{"zero/153", Options{}, "oauth_provider.json"},
		{"zero/155", Options{}, "oauth_provider.tb155.json"},
		{"external/153", Options{MinVersion: "153.0", Redirect: ExternalBrowser}, "oauth_provider.json"},
		{"iss/153", Options{MinVersion: "153.0", IssuerIdentifier: true}, "oauth_provider.json"},
		{"all/155", all, "oauth_provider.tb155.json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, raw := decode(t, mustManifest(t, testSite(), tt.opts))
			s := loadProviderSchema(t, tt.schema)
			if probs := validate(s, raw["oauth_provider"], "oauth_provider"); len(probs) > 0 {
				t.Errorf("schema %s: %v", tt.schema, probs)
			}
		})
	}
}

// TestSchemaRejectsLaterKeys shows why MinVersion gates keys: an older
// Thunderbird's schema refuses them.
func TestSchemaRejectsLaterKeys(t *testing.T) {
	for _, tt := range []struct {
		opts   Options
		schema string
		keys   []string
	}{
		{Options{MinVersion: "153.0", Redirect: ExternalBrowser, IssuerIdentifier: true},
			"oauth_provider.tb140.json", []string{"useExternalBrowser", "issuerIdentifier"}},
		{Options{MinVersion: "155.0", EmailDomains: true}, "oauth_provider.json", []string{"emailDomains"}},
	} {
		_, raw := decode(t, mustManifest(t, testSite(), tt.opts))
		probs := strings.Join(validate(loadProviderSchema(t, tt.schema), raw["oauth_provider"], "p"), "\n")
		for _, k := range tt.keys {
			if !strings.Contains(probs, "p."+k+": unexpected property") {
				t.Errorf("schema %s accepted %s; problems: %s", tt.schema, k, probs)
			}
		}
	}
}

// TestValidatorRejects proves the validator can fail.
func TestValidatorRejects(t *testing.T) {
	s := loadProviderSchema(t, "oauth_provider.json")
	for _, tt := range []struct {
		name   string
		change func(p map[string]any)
		want   string
	}{
		{"wrong type boolean", func(p map[string]any) { p["usePKCE"] = "true" }, "p.usePKCE: "},
		{"wrong type string", func(p map[string]any) { p["scopes"] = []any{"openid"} }, "p.scopes: "},
		{"unknown key", func(p map[string]any) { p["clientSecrets"] = "x" }, "p.clientSecrets: unexpected property"},
		{"missing key", func(p map[string]any) { delete(p, "clientId") }, "p.clientId: missing"},
		{"empty array", func(p map[string]any) { p["hostnames"] = []any{} }, "p.hostnames: 0 items"},
		{"item type", func(p map[string]any) { p["hostnames"] = []any{1.0} }, "p.hostnames[0]: "},
		{"not a url", func(p map[string]any) { p["tokenEndpoint"] = "/token" }, "p.tokenEndpoint: "},
		{"empty object", func(p map[string]any) { clear(p) }, "p.issuer: missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, raw := decode(t, mustManifest(t, testSite(), Options{}))
			p := raw["oauth_provider"].(map[string]any)
			tt.change(p)
			probs := validate(s, p, "p")
			if !slices.ContainsFunc(probs, func(s string) bool { return strings.HasPrefix(s, tt.want) }) {
				t.Errorf("validate() = %q, want a problem starting %q", probs, tt.want)
			}
		})
	}
	if probs := validate(s, "x", "p"); len(probs) != 1 {
		t.Errorf("validate(string) = %q, want one problem", probs)
	}
}

func TestManifestDefaults(t *testing.T) {
	noName := testSite()
	noName.DisplayName = ""
	noScopes := testSite()
	noScopes.OAuth.Scopes = nil
	id := func(m manifest) string { return m.Settings.Gecko.ID }
	name := func(m manifest) string { return m.Name }
	version := func(m manifest) string { return m.Version }
	minV := func(m manifest) string { return m.Settings.Gecko.StrictMinVersion }
	redirect := func(m manifest) string { return m.OAuthProvider.RedirectionEndpoint }
	hosts := func(m manifest) string { return strings.Join(m.OAuthProvider.Hostnames, " ") }
	issuer := func(m manifest) string { return m.OAuthProvider.Issuer }
	for _, tt := range []struct {
		name string
		site discovery.Site
		opts Options
		got  func(m manifest) string
		want string
	}{
		{"ID", testSite(), Options{}, id, "mailgate-oauth@example.org"},
		{"ID set", testSite(), Options{ID: "{12345678-abcd-4bcd-8bcd-1234567890ab}"}, id, "{12345678-abcd-4bcd-8bcd-1234567890ab}"},
		{"Name", testSite(), Options{}, name, "Example Mail OAuth"},
		{"Name from domain", noName, Options{}, name, "example.org OAuth"},
		{"Name set", testSite(), Options{Name: "Mail login"}, name, "Mail login"},
		{"Version", testSite(), Options{}, version, "1.0"},
		{"Version set", testSite(), Options{Version: "2.0.1"}, version, "2.0.1"},
		{"MinVersion", testSite(), Options{}, minV, "140.0"},
		{"MinVersion set", testSite(), Options{MinVersion: "153"}, minV, "153"},
		{"Redirect", testSite(), Options{}, redirect, "https://localhost"},
		{"Redirect external", testSite(), Options{MinVersion: "153.0", Redirect: ExternalBrowser}, redirect, "http://127.0.0.1"},
		{"Hostnames", testSite(), Options{}, hosts, "mail.example.org smtp.example.org"},
		{"Hostnames set", testSite(), Options{Hostnames: []string{"IMAP.example.org", "autoconfig.example.org"}}, hosts, "imap.example.org autoconfig.example.org"},
		{"Provider", testSite(), Options{}, issuer, "id.example.org"},
		{"Provider set", testSite(), Options{Provider: "mailgate.example.org"}, issuer, "mailgate.example.org"},
		{"Scopes", noScopes, Options{}, func(m manifest) string { return m.OAuthProvider.Scopes }, "openid email offline_access"},
		{"PKCE", testSite(), Options{}, func(m manifest) string { return fmt.Sprint(m.OAuthProvider.UsePKCE) }, "true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := decode(t, mustManifest(t, tt.site, tt.opts))
			if got := tt.got(m); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestManifestGating: later keys appear only when asked for and allowed.
func TestManifestGating(t *testing.T) {
	for _, tt := range []struct {
		name    string
		opts    Options
		wantErr error
		present []string
	}{
		{"140 zero", Options{}, nil, nil},
		{"153 zero", Options{MinVersion: "153.0"}, nil, nil},
		{"140 external", Options{Redirect: ExternalBrowser}, ErrTooOld, nil},
		{"152 external", Options{MinVersion: "152.0", Redirect: ExternalBrowser}, ErrTooOld, nil},
		{"153 external", Options{MinVersion: "153.0", Redirect: ExternalBrowser}, nil, []string{"useExternalBrowser"}},
		{"140 iss", Options{IssuerIdentifier: true}, ErrTooOld, nil},
		{"153.8 iss", Options{MinVersion: "153.8", IssuerIdentifier: true}, nil, []string{"issuerIdentifier"}},
		{"153 domains", Options{MinVersion: "153.0", EmailDomains: true}, ErrTooOld, nil},
		{"155 domains", Options{MinVersion: "155.0", EmailDomains: true}, nil, []string{"emailDomains"}},
		{"139", Options{MinVersion: "139.0"}, ErrTooOld, nil},
		{"not a version", Options{MinVersion: "140.0esr"}, ErrInvalid, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Manifest(testSite(), tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Manifest() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			_, raw := decode(t, b)
			p := raw["oauth_provider"].(map[string]any)
			for _, k := range []string{"useExternalBrowser", "issuerIdentifier", "emailDomains"} {
				if _, ok := p[k]; ok != slices.Contains(tt.present, k) {
					t.Errorf("key %s present = %v, want %v", k, ok, !ok)
				}
			}
		})
	}
}

func TestManifestValues(t *testing.T) {
	opts := Options{MinVersion: "155.0", IssuerIdentifier: true, EmailDomains: true, Redirect: ExternalBrowser}
	m, _ := decode(t, mustManifest(t, testSite(), opts))
	p := m.OAuthProvider
	if p.IssuerIdentifier != "https://id.example.org/realms/mail" {
		t.Errorf("issuerIdentifier = %q, want Site.OAuth.Issuer", p.IssuerIdentifier)
	}
	if !slices.Equal(p.EmailDomains, []string{"example.org", "example.net"}) {
		t.Errorf("emailDomains = %q, want the Site's domains", p.EmailDomains)
	}
	if !p.UseExternalBrowser || p.RedirectionEndpoint != "http://127.0.0.1" {
		t.Errorf("useExternalBrowser, redirectionEndpoint = %v, %q", p.UseExternalBrowser, p.RedirectionEndpoint)
	}
}
