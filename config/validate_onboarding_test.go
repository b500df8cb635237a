package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateClientsAndDiscovery(t *testing.T) {
	tb := Client{Name: "thunderbird", ClientID: "tb-desktop", Public: true}
	rc := Client{Name: "roundcube", ClientID: "roundcube"}
	for _, tt := range []struct {
		name   string
		mutate func(c *Config)
		want   []string // problems, each "key: substring"; none = valid
	}{
		{"clients and discovery", func(c *Config) {
			c.Clients = []Client{rc, tb}
			c.Discovery.Listen, c.Discovery.Domains = ":443", []string{"example.com"}
		}, nil},
		{"domains from allowed_domains", func(c *Config) {
			c.Discovery.Listen, c.OAuth2.AllowedDomains = ":443", []string{"example.com"}
		}, nil},
		{"no domains", func(c *Config) { c.Discovery.Listen = ":443" }, []string{"discovery.domains: required"}},
		{"bad listen", func(c *Config) { c.Discovery.Listen, c.Discovery.Domains = "443", []string{"example.com"} }, []string{"discovery.listen:"}},
		{"bad domain and hostname", func(c *Config) {
			c.Discovery.Domains, c.Discovery.Hostname = []string{"a@example.com"}, "https://mail.example.com"
		}, []string{"discovery.domains: \"a@example.com\"", "discovery.hostname:"}},
		{"client without id, twice named", func(c *Config) {
			c.Clients = []Client{{Name: "thunderbird"}, tb}
		}, []string{"clients[0].client_id: required", "clients[1].name: \"thunderbird\" is used twice"}},
		{"id twice, no name", func(c *Config) {
			c.Clients = []Client{tb, {ClientID: "tb-desktop"}}
		}, []string{"clients[1].name: required", "clients[1].client_id: \"tb-desktop\" is used twice"}},
		{"own issuer under jwt", func(c *Config) {
			c.OAuth2.Mode, c.OAuth2.Issuer = "jwt", "https://id.example.com/"
			c.Clients = []Client{{Name: "tb", ClientID: "tb", Public: true, Issuer: "https://id.example.com/app/tb/"}}
		}, []string{"clients[0].issuer: differs from oauth2.issuer"}},
		{"own issuer under userinfo", func(c *Config) {
			c.Clients = []Client{{Name: "tb", ClientID: "tb", Public: true, Issuer: "https://id.example.com/app/tb/"}}
		}, nil},
		{"bad scope", func(c *Config) { c.Clients = []Client{{Name: "x", ClientID: "x", Scopes: []string{"openid email"}}} },
			[]string{"clients[0].scopes:"}},
		{"unknown published client", func(c *Config) { c.Clients, c.Discovery.Client = []Client{tb}, "mobile" },
			[]string{"discovery.client: \"mobile\" names no clients entry"}},
		{"confidential published client", func(c *Config) { c.Clients, c.Discovery.Client = []Client{rc}, "roundcube" },
			[]string{"discovery.client: \"roundcube\" is not a public client"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if !wantProblems(t, err, tt.want) {
				return
			}
		})
	}
}

func TestAudiencesIncludeClients(t *testing.T) {
	c := Default()
	c.OAuth2.Audiences = []string{"mailgate", "roundcube"}
	c.Clients = []Client{{Name: "roundcube", ClientID: "roundcube"}, {Name: "thunderbird", ClientID: "tb", Public: true}}
	if got, want := c.Audiences(), []string{"mailgate", "roundcube", "tb"}; !slices.Equal(got, want) {
		t.Fatalf("Audiences() = %q, want %q", got, want)
	}
}

func TestPublishedClient(t *testing.T) {
	tb := Client{Name: "thunderbird", ClientID: "tb", Public: true}
	mobile := Client{Name: "mobile", ClientID: "m", Public: true}
	rc := Client{Name: "roundcube", ClientID: "rc"}
	for _, tt := range []struct {
		name    string
		clients []Client
		named   string
		want    string // client id; "" = none
	}{
		{"none", nil, "", ""},
		{"confidential only", []Client{rc}, "", ""},
		{"only public", []Client{rc, mobile}, "", "m"},
		{"thunderbird preferred", []Client{mobile, tb}, "", "tb"},
		{"two public, none thunderbird", []Client{mobile, {Name: "other", ClientID: "o", Public: true}}, "", ""},
		{"named", []Client{mobile, tb}, "mobile", "m"},
		{"named missing", []Client{tb}, "mobile", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Clients, c.Discovery.Client = tt.clients, tt.named
			got, ok := c.PublishedClient()
			if ok != (tt.want != "") || got.ClientID != tt.want {
				t.Fatalf("PublishedClient() = %+v, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestOnboardingWarnings(t *testing.T) {
	c := validConfig(t)
	c.Discovery.Listen, c.Discovery.Domains, c.Discovery.TLS = ":80", []string{"example.com"}, false
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"discovery.client: no public OAuth client", "discovery.tls: false"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	c.Clients = []Client{{Name: "thunderbird", ClientID: "tb", Public: true}}
	c.Cluster.Redis.Address = "redis:6379"
	w = strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"oauth2.issuer: empty", "cluster.redis: no password"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}

func TestValidateCluster(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"redis", func(c *Config) { c.Cluster.Redis.Address = "127.0.0.1:6379" }, nil},
		{"redis cluster seeds", func(c *Config) { c.Cluster.Redis.Address = "10.0.0.1:6379, 10.0.0.2:6379" }, nil},
		{"one bad seed", func(c *Config) { c.Cluster.Redis.Address = "10.0.0.1:6379,10.0.0.2" }, []string{"cluster.redis.address: \"10.0.0.2\""}},
		{"redis tls", func(c *Config) {
			c.Cluster.Redis.Address, c.Cluster.Redis.TLS, c.Cluster.Redis.ServerName = "redis:6380", true, "redis.internal"
		}, nil},
		{"everything wrong", func(c *Config) {
			c.Cluster.DrainDelay = -time.Second
			c.Cluster.Redis = Redis{Address: "redis", ServerName: "x", WhenDown: "open"}
		}, []string{"cluster.drain_delay:", "cluster.redis.address: \"redis\"", "cluster.redis.timeout:", "cluster.redis.when_down:", "cluster.redis.tls:"}},
		{"not checked without an address", func(c *Config) { c.Cluster.Redis.WhenDown = "open" }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if (err == nil) != (len(tt.want) == 0) {
				t.Fatalf("Validate = %v, want problems %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
		})
	}
}
