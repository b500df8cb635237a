package tbaddon

import (
	"errors"
	"testing"

	"github.com/mailgate/mailgate/proxy/discovery"
)

func TestManifestErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(s *discovery.Site, o *Options)
		want   error
	}{
		{"no OAuth", func(s *discovery.Site, o *Options) { s.OAuth = nil }, ErrNoOAuth},
		{"no AuthURL", func(s *discovery.Site, o *Options) { s.OAuth.AuthURL = "" }, ErrIncompleteOAuth},
		{"no TokenURL", func(s *discovery.Site, o *Options) { s.OAuth.TokenURL = "" }, ErrIncompleteOAuth},
		{"relative TokenURL", func(s *discovery.Site, o *Options) { s.OAuth.TokenURL = "/token" }, ErrIncompleteOAuth},
		{"ftp AuthURL", func(s *discovery.Site, o *Options) { s.OAuth.AuthURL = "ftp://id.example.org/auth" }, ErrIncompleteOAuth},
		{"no ClientID", func(s *discovery.Site, o *Options) { s.OAuth.ClientID = "" }, ErrIncompleteOAuth},
		{"iss without Issuer", func(s *discovery.Site, o *Options) {
			s.OAuth.Issuer = ""
			*o = Options{MinVersion: "153.0", IssuerIdentifier: true}
		}, ErrIncompleteOAuth},
		{"no servers", func(s *discovery.Site, o *Options) { s.Servers = nil }, ErrNoHostnames},
		{"empty Hostnames", func(s *discovery.Site, o *Options) { s.Servers = nil; o.Hostnames = []string{""} }, ErrNoHostnames},
		{"dotless host", func(s *discovery.Site, o *Options) { o.Hostnames = []string{"localhost"} }, ErrInvalid},
		{"host with port", func(s *discovery.Site, o *Options) { o.Hostnames = []string{"mail.example.org:993"} }, ErrInvalid},
		{"host URL", func(s *discovery.Site, o *Options) { o.Hostnames = []string{"https://mail.example.org"} }, ErrInvalid},
		{"no ID, no domain", func(s *discovery.Site, o *Options) { s.Domains = nil }, ErrInvalid},
		{"bad ID", func(s *discovery.Site, o *Options) { o.ID = "mailgate oauth" }, ErrInvalid},
		{"bad Version", func(s *discovery.Site, o *Options) { o.Version = "1.0-beta" }, ErrInvalid},
		{"bad Redirect", func(s *discovery.Site, o *Options) { o.Redirect = 7 }, ErrInvalid},
		{"EmailDomains, no domains", func(s *discovery.Site, o *Options) {
			s.Domains = nil
			*o = Options{ID: "x@example.org", MinVersion: "155.0", EmailDomains: true}
		}, ErrInvalid},
		{"MinVersion 128", func(s *discovery.Site, o *Options) { o.MinVersion = "128.0" }, ErrTooOld},
	} {
		t.Run(tt.name, func(t *testing.T) {
			site, opts := testSite(), Options{}
			tt.change(&site, &opts)
			b, err := Manifest(site, opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Manifest() = %s, %v; want error %v", b, err, tt.want)
			}
			t.Log(err)
		})
	}
}
