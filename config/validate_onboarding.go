package config

import (
	"fmt"
	"net"
	"strings"
)

// validateClients checks the clients entries: each names a client id, and
// names and ids are unique.
func (c *Config) validateClients(p *problems) {
	names, ids := map[string]bool{}, map[string]bool{}
	for i, cl := range c.Clients {
		key := fmt.Sprintf("clients[%d]", i)
		switch {
		case cl.Name == "":
			p.add(key+".name", "required: a label such as thunderbird or roundcube")
		case names[cl.Name]:
			p.add(key+".name", "%q is used twice", cl.Name)
		}
		switch {
		case cl.ClientID == "":
			p.add(key+".client_id", "required: the client id registered at the provider")
		case ids[cl.ClientID]:
			p.add(key+".client_id", "%q is used twice", cl.ClientID)
		}
		for _, s := range cl.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\"\\") {
				p.add(key+".scopes", "%q is not a scope token", s)
			}
		}
		p.url(key+".issuer", cl.Issuer)
		if m := c.OAuth2.Mode; cl.Issuer != "" && cl.Issuer != c.OAuth2.Issuer && (m == ModeJWT || m == ModeAuto) {
			p.add(key+".issuer", "differs from oauth2.issuer, whose tokens alone oauth2.mode %s verifies: this client's tokens would be refused (use mode userinfo or introspection, or one issuer)", m)
		}
		names[cl.Name], ids[cl.ClientID] = true, true
	}
}

// domain checks a mail domain (not an address, URL or host:port).
func (p *problems) domain(key, d string) {
	if d == "" || strings.ContainsAny(d, "@/: ") {
		p.add(key, "%q: want a domain such as example.com", d)
	}
}

// validateDiscovery checks the discovery listener: what it publishes must be
// known (domains, the published client).
func (c *Config) validateDiscovery(p *problems) {
	d := &c.Discovery
	p.listen("discovery.listen", d.Listen)
	for _, dom := range d.Domains {
		p.domain("discovery.domains", dom)
	}
	if strings.ContainsAny(d.Hostname, "/:@ ") {
		p.add("discovery.hostname", "%q: want a host name such as mail.example.com", d.Hostname)
	}
	if d.Client != "" {
		cl, ok := c.PublishedClient()
		switch {
		case !ok:
			p.add("discovery.client", "%q names no clients entry", d.Client)
		case !cl.Public:
			p.add("discovery.client", "%q is not a public client: mail apps cannot keep a secret (set public: true, with PKCE at the provider)", d.Client)
		}
	}
	if d.Listen == "" {
		return
	}
	if len(c.DiscoveryDomains()) == 0 {
		p.add("discovery.domains", "required with discovery.listen (or set oauth2.allowed_domains): the mail domains to publish")
	}
}

// onboardingWarnings are remarks on what the onboarding documents will say
// and on the shared state.
func (c *Config) onboardingWarnings() []string {
	var w []string
	if r := c.Cluster.Redis; r.Address != "" && r.Password == "" {
		w = append(w, "cluster.redis: no password: whoever can write to Redis can make every replica accept any token (cached answers live there); set password_file, and tls across hosts")
	}
	if c.AppPasswords.Page() && !c.AppPasswords.TLS {
		w = append(w, "app_passwords.tls: false serves the page over plain HTTP; put a reverse proxy with TLS in front of it (page_url is what browsers see)")
	}
	if c.Discovery.Listen == "" {
		return w
	}
	if _, ok := c.PublishedClient(); !ok {
		w = append(w, "discovery.client: no public OAuth client to publish (add one to clients with public: true, or name it here); the documents offer passwords only")
	} else if cl, _ := c.PublishedClient(); cl.IssuerOr(c.OAuth2.Issuer) == "" {
		w = append(w, "oauth2.issuer: empty (and no clients issuer), so the documents cannot name the provider's endpoints and offer passwords only")
	}
	if !c.Discovery.TLS {
		w = append(w, "discovery.tls: false serves plain HTTP; put a reverse proxy with TLS in front of it")
	}
	return w
}

// validateCluster checks the shared state and the drain delay.
func (c *Config) validateCluster(p *problems) {
	r := &c.Cluster.Redis
	if c.Cluster.DrainDelay < 0 {
		p.add("cluster.drain_delay", "must be >= 0 (0 = the listeners close at once on SIGTERM)")
	}
	if r.Address == "" {
		return
	}
	for _, a := range r.Addresses() {
		if _, port, err := net.SplitHostPort(a); err != nil || !validPort(port, 1) {
			p.add("cluster.redis.address", "%q: want host:port, e.g. redis:6379 (several, comma-separated, for a Redis Cluster)", a)
		}
	}
	p.positive("cluster.redis.timeout", r.Timeout)
	p.oneOf("cluster.redis.when_down", r.WhenDown, RedisLocal, RedisRefuse)
	p.file("cluster.redis.ca_file", r.CAFile)
	if (r.CAFile != "" || r.ServerName != "") && !r.TLS {
		p.add("cluster.redis.tls", "cluster.redis.ca_file or server_name is set but tls is false")
	}
}
