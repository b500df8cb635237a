package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy/discovery"
)

// autoconfigDoc is what the tests read of a clientConfig.
type autoconfigDoc struct {
	Provider struct {
		Domains  []string `xml:"domain"`
		Incoming []struct {
			Type     string   `xml:"type,attr"`
			Hostname string   `xml:"hostname"`
			Port     int      `xml:"port"`
			Socket   string   `xml:"socketType"`
			Auth     []string `xml:"authentication"`
		} `xml:"incomingServer"`
		Outgoing []struct {
			Port   int      `xml:"port"`
			Socket string   `xml:"socketType"`
			Auth   []string `xml:"authentication"`
		} `xml:"outgoingServer"`
	} `xml:"emailProvider"`
	OAuth2 *struct {
		Issuer   string `xml:"issuer"`
		Scope    string `xml:"scope"`
		AuthURL  string `xml:"authURL"`
		TokenURL string `xml:"tokenURL"`
		ClientID string `xml:"clientID"`
	} `xml:"oAuth2"`
}

// onboardingConfig publishes the Thunderbird client at the real provider.
func onboardingConfig(h *testenv.Hydra) func(*config.Config) {
	return func(c *config.Config) {
		c.OAuth2.Issuer = h.Issuer
		c.Clients = []config.Client{{Name: "roundcube", ClientID: "roundcube"}, {Name: "thunderbird", ClientID: "thunderbird-desktop", Public: true}}
		c.Discovery.Listen, c.Discovery.Domains, c.Discovery.Hostname = "127.0.0.1:0", []string{"example.test"}, "mail.example.test"
		c.Auth.PasswordPassthrough, c.Auth.PasswordPassthroughProtocols = true, []string{"imap"}
	}
}

// TestIntegrationDiscoveryListener: serve starts the discovery listener
// over HTTPS with mailgate's certificate; its autoconfig names every
// listener with its bound port, OAuth2 first and passwords where they are
// accepted, and the provider's real endpoints once its OpenID configuration
// was read; the PACC document is served and a reload changes the documents.
func TestIntegrationDiscoveryListener(t *testing.T) {
	h := testenv.SharedHydra(t)
	ta := startTestApp(t, onboardingConfig(h))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ta.tls}, Timeout: 5 * time.Second}
	base := "https://" + ta.a.disco.ln.Addr().String()
	var doc autoconfigDoc
	deadline := time.Now().Add(10 * time.Second)
	for doc.OAuth2 == nil { // until the provider's configuration was read
		if time.Now().After(deadline) {
			t.Fatalf("autoconfig never carried the OAuth block\n%s", ta.logText())
		}
		doc = autoconfigDoc{}
		body := httpGet(t, client, base+"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.test", http.StatusOK)
		if err := xml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("autoconfig: %v\n%s", err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o := doc.OAuth2; o.Issuer != h.Issuer || o.AuthURL != h.AuthURL || o.TokenURL != h.TokenURL || o.ClientID != "thunderbird-desktop" || o.Scope != "openid email offline_access" {
		t.Errorf("oAuth2 block %+v; want hydra's endpoints and the thunderbird client", *o)
	}
	p := doc.Provider
	if len(p.Domains) != 1 || p.Domains[0] != "example.test" || len(p.Incoming) != 2 || len(p.Outgoing) != 2 {
		t.Fatalf("provider %+v", p)
	}
	for i, key := range []string{"imap.listen_tls", "imap.listen_starttls"} {
		in := p.Incoming[i]
		if in.Type != "imap" || in.Hostname != "mail.example.test" || strconv.Itoa(in.Port) != portString(ta.a.addr(key)) ||
			strings.Join(in.Auth, ",") != "OAuth2,password-cleartext" {
			t.Errorf("incoming %d = %+v; want %s's port, OAuth2 then password", i, in, key)
		}
	}
	for i, key := range []string{"smtp.listen_tls", "smtp.listen_starttls"} {
		out := p.Outgoing[i]
		if strconv.Itoa(out.Port) != portString(ta.a.addr(key)) || strings.Join(out.Auth, ",") != "OAuth2" {
			t.Errorf("outgoing %d = %+v; want %s's port, OAuth2 only (no SMTP passthrough)", i, out, key)
		}
	}
	if sock := p.Incoming[0].Socket + "," + p.Incoming[1].Socket; sock != "SSL,STARTTLS" {
		t.Errorf("socket types %s", sock)
	}
	// PACC names hosts only, for the standard implicit-TLS ports: none here.
	httpGet(t, client, base+"/.well-known/user-agent-configuration", http.StatusNotFound)
	httpGet(t, client, base+"/mail/config-v1.1.xml?emailaddress=alice@other.test", http.StatusNotFound)

	next := *ta.a.cfg
	next.Discovery.DisplayName = "Reloaded Mail"
	ta.a.reload(func() (*config.Config, error) { return &next, nil })
	if body := httpGet(t, client, base+"/mail/config-v1.1.xml", http.StatusOK); !bytes.Contains(body, []byte("Reloaded Mail")) {
		t.Errorf("display name not reloaded:\n%s", body)
	}
}

func httpGet(t *testing.T, c *http.Client, url string, want int) []byte {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	return b
}

func portString(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// fixedPortsConfig writes a configuration with fixed public ports (what the
// commands that do not serve read) and returns its path.
func fixedPortsConfig(t *testing.T, h *testenv.Hydra, edit func(*config.Config)) string {
	t.Helper()
	cfg := config.Default()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	cfg.Master.Password = "x"
	cfg.IMAP.Backend.Address, cfg.SMTP.Backend.Address = "mailserver:143", "mailserver:587"
	cfg.OAuth2.Mode, cfg.OAuth2.UserinfoURL = "userinfo", h.UserinfoURL
	cfg.SMTP.Hostname = "mail.example.test"
	onboardingConfig(h)(&cfg)
	cfg.Discovery.Listen = ":443"
	if edit != nil {
		edit(&cfg)
	}
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600)
	}
	y = bytes.ReplaceAll(y, []byte("/nonexistent/"), []byte(dir+"/"))
	path := filepath.Join(dir, "mailgate.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIntegrationThunderbirdAddonCommand: the command writes an .xpi whose
// manifest names the real provider's endpoints, the public client and
// mailgate's host name, the policy that installs it, and the redirect URI
// to register; without a public client, or with the provider down, it
// fails saying why.
func TestIntegrationThunderbirdAddonCommand(t *testing.T) {
	h := testenv.SharedHydra(t)
	dir := t.TempDir()
	xpi, pol := filepath.Join(dir, "a.xpi"), filepath.Join(dir, "policies.json")
	var out, errOut bytes.Buffer
	code := run([]string{"thunderbird-addon", "--config", fixedPortsConfig(t, h, nil), "--out", xpi,
		"--policies", pol, "--install-url", "https://mail.example.test/a.xpi"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "redirect URI https://localhost") {
		t.Errorf("no redirect URI to register in:\n%s", out.String())
	}
	zr, err := zip.OpenReader(xpi)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	f, err := zr.Open("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		OAuth struct {
			ClientID  string   `json:"clientId"`
			Auth      string   `json:"authorizationEndpoint"`
			Token     string   `json:"tokenEndpoint"`
			Redirect  string   `json:"redirectionEndpoint"`
			PKCE      bool     `json:"usePKCE"`
			Hostnames []string `json:"hostnames"`
			Scopes    string   `json:"scopes"`
		} `json:"oauth_provider"`
	}
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		t.Fatal(err)
	}
	o := m.OAuth
	if o.ClientID != "thunderbird-desktop" || o.Auth != h.AuthURL || o.Token != h.TokenURL || o.Redirect != "https://localhost" ||
		!o.PKCE || strings.Join(o.Hostnames, ",") != "mail.example.test" || o.Scopes != "openid email offline_access" {
		t.Errorf("manifest oauth_provider %+v", o)
	}
	if b, err := os.ReadFile(pol); err != nil || !bytes.Contains(b, []byte("force_installed")) || !bytes.Contains(b, []byte("https://mail.example.test/a.xpi")) {
		t.Errorf("policies.json: %s %v", b, err)
	}

	for _, tt := range []struct {
		name string
		edit func(*config.Config)
		code int
		want string
	}{
		{"no public client", func(c *config.Config) { c.Clients = c.Clients[:1] }, 2, "no OAuth client to publish"},
		{"provider down", func(c *config.Config) { c.OAuth2.Issuer = "http://127.0.0.1:1/" }, 3, "reading the provider's configuration"},
	} {
		errOut.Reset()
		if code := run([]string{"thunderbird-addon", "--config", fixedPortsConfig(t, h, tt.edit), "--out", xpi}, io.Discard, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%s: exit %d, %q; want %d and %q", tt.name, code, errOut.String(), tt.code, tt.want)
		}
	}
}

// TestIntegrationOnboardingDNS: the records name every listener's port,
// point autoconfig/autodiscover at the discovery host, and the PACC digest
// is the SHA-256 of the document the listener serves.
func TestIntegrationOnboardingDNS(t *testing.T) {
	h := testenv.SharedHydra(t)
	var out, errOut bytes.Buffer
	cfgPath := fixedPortsConfig(t, h, nil)
	if code := run([]string{"onboarding", "dns", "--config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	zone := out.String()
	for _, want := range []string{
		"_imaps._tcp.example.test.", "993 mail.example.test.", "_imap._tcp.example.test.", "143 mail.example.test.",
		"_submissions._tcp.example.test.", "465 mail.example.test.", "_submission._tcp.example.test.", "587 mail.example.test.",
		"autoconfig.example.test.", "autodiscover.example.test.", "_autodiscover._tcp.example.test.", "443 mail.example.test.",
		"_ua-auto-config.example.test.", "v=UAAC1; a=sha256; d=",
	} {
		if !strings.Contains(zone, want) {
			t.Errorf("zone lacks %q:\n%s", want, zone)
		}
	}

	// The digest is that of the document the discovery listener serves for
	// the same configuration (PACC needs the standard ports: served here
	// by the handler serve uses, on a test listener).
	cfg, err := config.Load(cfgPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := providerMetadata(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	site, err := siteFrom(cfg, meta, configAddr(cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(discovery.NewHandler(func() discovery.Site { return site }, discovery.HandlerOptions{}))
	defer srv.Close()
	body := httpGet(t, srv.Client(), srv.URL+"/.well-known/user-agent-configuration", http.StatusOK)
	sum := sha256.Sum256(body)
	if !json.Valid(body) || !strings.Contains(string(body), h.Issuer) || !strings.Contains(zone, "d="+base64.StdEncoding.EncodeToString(sum[:])) {
		t.Fatalf("no TXT record has the digest of the PACC document %s:\n%s", body, zone)
	}
}
