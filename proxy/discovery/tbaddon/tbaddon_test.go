package tbaddon

import (
	"encoding/json"
	"testing"

	"github.com/mailgate/mailgate/proxy/discovery"
)

// testSite is a site with two host names (one in upper case, one repeated)
// and a Keycloak-like provider.
func testSite() discovery.Site {
	return discovery.Site{
		Domains:     []string{"example.org", "example.net"},
		DisplayName: "Example Mail",
		Servers: []discovery.Server{
			{Protocol: discovery.IMAP, Host: "mail.example.org", Port: 993, Security: discovery.ImplicitTLS},
			{Protocol: discovery.SMTP, Host: "mail.example.org", Port: 465, Security: discovery.ImplicitTLS},
			{Protocol: discovery.SMTP, Host: "SMTP.example.org", Port: 587, Security: discovery.StartTLS},
		},
		OAuth: &discovery.OAuth{
			Issuer:   "https://id.example.org/realms/mail",
			AuthURL:  "https://id.example.org/realms/mail/protocol/openid-connect/auth",
			TokenURL: "https://id.example.org/realms/mail/protocol/openid-connect/token",
			ClientID: "thunderbird",
			Scopes:   []string{"openid", "email", "offline_access"},
		},
	}
}

// decode returns the manifest both typed and as a generic map (to see
// which keys are present).
func decode(t *testing.T, b []byte) (manifest, map[string]any) {
	t.Helper()
	var m manifest
	var raw map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("json.Unmarshal(manifest) = %v\n%s", err, b)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("json.Unmarshal(manifest) = %v", err)
	}
	return m, raw
}

func mustManifest(t *testing.T, site discovery.Site, opts Options) []byte {
	t.Helper()
	b, err := Manifest(site, opts)
	if err != nil {
		t.Fatalf("Manifest() = %v", err)
	}
	return b
}
