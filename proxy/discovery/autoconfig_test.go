package discovery

import (
	"encoding/xml"
	"slices"
	"testing"
)

// Test-side view of clientConfig 1.1, decoded independently of the writer.
type tbConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID          string     `xml:"id,attr"`
		Domains     []string   `xml:"domain"`
		DisplayName string     `xml:"displayName"`
		Incoming    []tbServer `xml:"incomingServer"`
		Outgoing    []tbServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
	OAuth2 *struct {
		Issuer   string `xml:"issuer"`
		Scope    string `xml:"scope"`
		AuthURL  string `xml:"authURL"`
		TokenURL string `xml:"tokenURL"`
		ClientID string `xml:"clientID"`
	} `xml:"oAuth2"`
}

type tbServer struct {
	Type   string   `xml:"type,attr"`
	Host   string   `xml:"hostname"`
	Port   int      `xml:"port"`
	Socket string   `xml:"socketType"`
	User   string   `xml:"username"`
	Auth   []string `xml:"authentication"`
}

func decodeAutoconfig(t *testing.T, b []byte) tbConfig {
	t.Helper()
	var c tbConfig
	if err := xml.Unmarshal(b, &c); err != nil {
		t.Fatalf("xml.Unmarshal(autoconfig) = %v\n%s", err, b)
	}
	return c
}

func TestAutoconfigOAuthSite(t *testing.T) {
	b, err := autoconfigDocument(oauthSite(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	c := decodeAutoconfig(t, b)
	p := c.Provider
	if c.Version != "1.1" || p.ID != "example.org" || p.DisplayName != "Example Mail" ||
		!slices.Equal(p.Domains, []string{"example.org"}) { // only the one asked about: not the other tenants
		t.Errorf("provider = %q %q %q %q", c.Version, p.ID, p.DisplayName, p.Domains)
	}
	both, oauth := []string{"OAuth2", "password-cleartext"}, []string{"OAuth2"}
	wantIn := []tbServer{
		{"imap", "mail.example.com", 993, "SSL", "%EMAILADDRESS%", both},
		{"imap", "mail.example.com", 143, "STARTTLS", "%EMAILADDRESS%", both},
		{"pop3", "mail.example.com", 995, "SSL", "%EMAILADDRESS%", oauth},
	}
	wantOut := []tbServer{
		{"smtp", "smtp.example.com", 465, "SSL", "%EMAILADDRESS%", oauth},
		{"smtp", "smtp.example.com", 587, "STARTTLS", "%EMAILADDRESS%", oauth},
	}
	checkServers(t, "incoming", p.Incoming, wantIn)
	checkServers(t, "outgoing", p.Outgoing, wantOut)
	o := c.OAuth2
	if o == nil {
		t.Fatal("no oAuth2 element")
	}
	if o.Issuer != "https://id.example.com/realms/mail" || o.Scope != "openid email offline_access" ||
		o.AuthURL != "https://id.example.com/realms/mail/auth" ||
		o.TokenURL != "https://id.example.com/realms/mail/token" || o.ClientID != "thunderbird" {
		t.Errorf("oAuth2 = %+v", *o)
	}
}

func TestAutoconfigPasswordSite(t *testing.T) {
	b, err := autoconfigDocument(passwordSite(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	c := decodeAutoconfig(t, b)
	if c.OAuth2 != nil {
		t.Errorf("oAuth2 published without OAuth: %+v", *c.OAuth2)
	}
	if c.Provider.DisplayName != "example.com" {
		t.Errorf("displayName = %q, want the first domain", c.Provider.DisplayName)
	}
	if len(c.Provider.Incoming) != 3 || len(c.Provider.Outgoing) != 2 {
		t.Fatalf("servers = %d in, %d out; want 3, 2 (no sieve)", len(c.Provider.Incoming), len(c.Provider.Outgoing))
	}
	for _, s := range append(c.Provider.Incoming, c.Provider.Outgoing...) {
		if !slices.Equal(s.Auth, []string{"password-cleartext"}) {
			t.Errorf("%s %d authentication = %q", s.Type, s.Port, s.Auth)
		}
	}
}

// TestAutoconfigUnusableServer: a server with no method to name is left out.
func TestAutoconfigUnusableServer(t *testing.T) {
	site := oauthSite()
	site.OAuth = nil // only IMAP takes passwords
	c := decodeAutoconfig(t, must(autoconfigDocument(site, "example.com")))
	if len(c.Provider.Incoming) != 2 || len(c.Provider.Outgoing) != 0 {
		t.Errorf("servers = %+v / %+v; want the two IMAP ones", c.Provider.Incoming, c.Provider.Outgoing)
	}
}

func checkServers(t *testing.T, what string, got, want []tbServer) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s servers = %+v\nwant %+v", what, got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Host != w.Host || g.Port != w.Port || g.Socket != w.Socket ||
			g.User != w.User || !slices.Equal(g.Auth, w.Auth) {
			t.Errorf("%s[%d] = %+v, want %+v", what, i, g, w)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
