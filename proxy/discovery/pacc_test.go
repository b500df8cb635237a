package discovery

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func decodePACC(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("json.Unmarshal(PACC) = %v\n%s", err, b)
	}
	return m
}

func TestPACCDocument(t *testing.T) {
	for _, tt := range []struct {
		name string
		site Site
		want string
	}{
		{"oauth site", oauthSite(), `{
			"protocols": {"imap": {"host": "mail.example.com"}, "pop3": {"host": "mail.example.com"},
				"submit": {"host": "smtp.example.com"}},
			"authentication": {"oauth-public": {"issuer": "https://id.example.com/realms/mail"}, "password": true},
			"info": {"provider": {"name": "Example Mail"}}}`},
		{"password site", passwordSite(), `{
			"protocols": {"imap": {"host": "mail.example.com"}, "pop3": {"host": "mail.example.com"},
				"submit": {"host": "smtp.example.com"}},
			"authentication": {"password": true},
			"info": {"provider": {"name": "example.com"}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := decodePACC(t, must(paccDocument(tt.site)))
			want := decodePACC(t, []byte(tt.want))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("PACC = %v\nwant %v", got, want)
			}
		})
	}
}

// TestPACCDirectTLSOnly: PACC names hosts on the protocols' direct-TLS
// ports only; a server elsewhere, or that nobody can log in to, is left out.
func TestPACCDirectTLSOnly(t *testing.T) {
	site := oauthSite()
	site.OAuth = nil // POP3 and SMTP take no password: unusable
	got := decodePACC(t, must(paccDocument(site)))
	want := map[string]any{"imap": map[string]any{"host": "mail.example.com"}}
	if !reflect.DeepEqual(got["protocols"], want) {
		t.Errorf("protocols = %v, want %v", got["protocols"], want)
	}
	site.Servers = []Server{
		{Protocol: IMAP, Host: "mail.example.com", Port: 143, Security: StartTLS, Passwords: true},
		{Protocol: IMAP, Host: "mail.example.com", Port: 1993, Security: ImplicitTLS, Passwords: true},
		{Protocol: Sieve, Host: "mail.example.com", Port: 4190, Security: StartTLS, Passwords: true},
	}
	if _, err := paccDocument(site); !errors.Is(err, errNoPACCServer) {
		t.Errorf("no direct-TLS server: err = %v", err)
	}
}

func TestPACCProviderName(t *testing.T) {
	site := passwordSite()
	site.DisplayName = strings.Repeat("é", 70)
	name := decodePACC(t, must(paccDocument(site)))["info"].(map[string]any)["provider"].(map[string]any)["name"]
	if name != strings.Repeat("é", paccMaxName) {
		t.Errorf("name = %q, want 60 characters", name)
	}
}

func TestPACCDigestRecord(t *testing.T) {
	body := must(paccDocument(oauthSite()))
	sum := sha256.Sum256(body)
	want := "v=UAAC1; a=sha256; d=" + base64.StdEncoding.EncodeToString(sum[:])
	if got := paccDigestRecord(body); got != want {
		t.Errorf("paccDigestRecord = %q, want %q", got, want)
	}
	if again := must(paccDocument(oauthSite())); string(again) != string(body) {
		t.Error("the document is not deterministic")
	}
}
