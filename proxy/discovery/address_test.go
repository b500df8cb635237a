package discovery

import (
	"strings"
	"testing"
)

func TestSiteAddress(t *testing.T) {
	site := oauthSite()
	for _, tt := range []struct {
		in   string
		want string // "" when refused
	}{
		{"fred@example.com", "fred@example.com"},
		{"Fred.Smith+tag@EXAMPLE.ORG", "Fred.Smith+tag@example.org"},
		{"fred@example.com.", "fred@example.com"},
		{"jürgen@example.com", "jürgen@example.com"},
		{"fred@example.net", ""},
		{"fred@sub.example.com", ""},
		{"fred", ""},
		{"@example.com", ""},
		{"fred@", ""},
		{"a@b@example.com", ""},
		{"fred smith@example.com", ""},
		{"\"fred\"@example.com", ""},
		{"<fred>@example.com", ""},
		{"fred\r\n@example.com", ""},
		{"fred\x00@example.com", ""},
		{".fred@example.com", ""},
		{"fr..ed@example.com", ""},
		{"fred\u202e@example.com", ""}, // bidi override
		{"fred\u00a0@example.com", ""}, // no-break space
		{"\xff@example.com", ""},
		{strings.Repeat("a", 250) + "@example.com", ""},
	} {
		a, ok := site.address(tt.in)
		if got := a.String(); ok != (tt.want != "") || (ok && got != tt.want) {
			t.Errorf("address(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestSiteHostDomain(t *testing.T) {
	site := oauthSite()
	for _, tt := range []struct{ host, want string }{
		{"autoconfig.example.org", "example.org"},
		{"AUTOCONFIG.Example.ORG:443", "example.org"},
		{"example.org", "example.org"},
		{"example.org.", "example.org"},
		{"ua-auto-config.example.org", "example.com"}, // not this route's prefix
		{"autoconfig.example.net", "example.com"},
		{"127.0.0.1:8080", "example.com"},
		{"[::1]:443", "example.com"},
		{"", "example.com"},
	} {
		if got, ok := site.hostDomain(tt.host, "autoconfig."); !ok || got != tt.want {
			t.Errorf("hostDomain(%q) = %q, %v; want %q", tt.host, got, ok, tt.want)
		}
	}
	if _, ok := (Site{}).hostDomain("example.org", "autoconfig."); ok {
		t.Error("hostDomain with no domains: ok")
	}
}
