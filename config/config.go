// Package config is mailgate's configuration: plain data, loading (YAML file,
// MAILGATE_* environment variables, flags, *_file secrets, docker-mailserver
// aliases) and validation. It imports nothing of mailgate's own.
//
// The file format and the meaning of every key are those of
// mailgate.example.yaml. Precedence, highest first: a flag that was set on the
// command line, an environment variable, the file, [Default].
//
// A Config is a plain value: loading builds a new one, and a reload builds
// another one and swaps it; nothing in here changes a Config after Load.
package config

import (
	"slices"
	"strings"
	"time"
)

// Config is the whole configuration. The YAML keys are the mapstructure tags;
// every key can be overridden by MAILGATE_<SECTION>_<KEY> (see [Load]).
type Config struct {
	Log    Log    `mapstructure:"log"`
	TLS    TLS    `mapstructure:"tls"`
	Master Master `mapstructure:"master"`
	IMAP   IMAP   `mapstructure:"imap"`
	SMTP   SMTP   `mapstructure:"smtp"`
	POP3   POP3   `mapstructure:"pop3"`
	Sieve  Sieve  `mapstructure:"sieve"`
	OAuth2 OAuth2 `mapstructure:"oauth2"`
	Auth   Auth   `mapstructure:"auth"`

	AppPasswords AppPasswords `mapstructure:"app_passwords"`

	Limits Limits `mapstructure:"limits"`
	HTTP   HTTP   `mapstructure:"http"`

	Clients   []Client  `mapstructure:"clients"`
	Discovery Discovery `mapstructure:"discovery"`
	Cluster   Cluster   `mapstructure:"cluster"`

	ProxyProtocol ProxyProtocol `mapstructure:"proxy_protocol"`

	// notes are remarks made while loading (aliases used, unknown
	// MAILGATE_* variables); see Warnings.
	notes []string
	// loadProblems are problems found while loading that do not stop it
	// (unknown keys in the file, unreadable *_file secrets), so that
	// Validate reports them with all the others.
	loadProblems []error
}

// Log configures the process logger.
type Log struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // text | json
}

// CertPair is one PEM certificate chain and its private key.
type CertPair struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// TLS is what clients see. CertFile/KeyFile is the default certificate; the
// Certificates are more pairs chosen by SNI. Files are re-read when they
// change and on SIGHUP.
type TLS struct {
	CertFile     string     `mapstructure:"cert_file"`
	KeyFile      string     `mapstructure:"key_file"`
	Certificates []CertPair `mapstructure:"certificates"`
	MinVersion   string     `mapstructure:"min_version"` // "1.2" | "1.3"
}

// Master is the Dovecot master user mailgate logs in as. After Load,
// Password holds the contents of PasswordFile when that was set.
type Master struct {
	User         string `mapstructure:"user"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	// CheckMailbox is an existing mailbox the start-up check logs in as, so
	// that wrong master credentials show before any user logs in.
	CheckMailbox string `mapstructure:"check_mailbox"`
}

// Backend is how mailgate reaches Dovecot (IMAP) or Postfix (submission).
type Backend struct {
	Address string `mapstructure:"address"` // host:port, required when the protocol has a listener
	TLS     string `mapstructure:"tls"`     // none | starttls | implicit
	// CAFile is a PEM bundle that verifies the backend's certificate
	// ("" = the system roots).
	CAFile             string `mapstructure:"ca_file"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
	// ServerName overrides the name checked in the backend's certificate
	// (default: the host part of Address).
	ServerName string `mapstructure:"server_name"`
	ClientIP   string `mapstructure:"client_ip"` // IMAP: none | id | proxy; SMTP: none | xclient | proxy
	Login      string `mapstructure:"login"`     // SMTP only: master | xclient ("" for IMAP)
}

// IMAP configures the IMAP listeners. An empty listen address disables that
// listener.
type IMAP struct {
	ListenTLS      string  `mapstructure:"listen_tls"`      // implicit TLS (993)
	ListenStartTLS string  `mapstructure:"listen_starttls"` // STARTTLS required before AUTHENTICATE (143)
	Backend        Backend `mapstructure:"backend"`
}

// SMTP configures the submission listeners. An empty listen address disables
// that listener.
type SMTP struct {
	ListenTLS      string `mapstructure:"listen_tls"`      // submissions, implicit TLS (465)
	ListenStartTLS string `mapstructure:"listen_starttls"` // submission, STARTTLS required before AUTH (587)
	// Hostname is the name in the greeting and EHLO reply ("" = decided by
	// the caller, typically os.Hostname).
	Hostname string `mapstructure:"hostname"`
	// MaxMessageBytes is the SIZE limit; 0 takes SIZE from the backend's EHLO.
	MaxMessageBytes int64 `mapstructure:"max_message_bytes"`
	// EnforceSender requires MAIL FROM to be the verified address or one of
	// its SenderAliases.
	EnforceSender bool `mapstructure:"enforce_sender"`
	// SenderAliases maps a verified address to the extra MAIL FROM addresses
	// it may use when EnforceSender is on ("*@domain" allowed on the right).
	// The keys are lower-cased by Load.
	SenderAliases map[string][]string `mapstructure:"sender_aliases"`
	Backend       Backend             `mapstructure:"backend"`
}

// POP3 configures the POP3 listeners. POP3 is served only when
// Backend.Address is set (DMS: ENABLE_POP3=1); an empty listen address then
// disables that listener.
type POP3 struct {
	ListenTLS      string  `mapstructure:"listen_tls"`      // POP3S, implicit TLS (995)
	ListenStartTLS string  `mapstructure:"listen_starttls"` // POP3, STLS required before authentication (110)
	Backend        Backend `mapstructure:"backend"`
}

// Sieve configures the ManageSieve listener (RFC 5804: Sieve filters and
// vacation replies). It is served only when Backend.Address is set (DMS:
// ENABLE_MANAGESIEVE=1); an empty listen address then disables it.
type Sieve struct {
	Listen  string  `mapstructure:"listen"` // STARTTLS required before AUTHENTICATE (4190)
	Backend Backend `mapstructure:"backend"`
}

// On reports which protocols are served: a listener is set (and, for POP3
// and ManageSieve, a backend address).
func (c *Config) On(proto string) bool {
	switch proto {
	case ProtoIMAP:
		return c.IMAP.ListenTLS != "" || c.IMAP.ListenStartTLS != ""
	case ProtoSMTP:
		return c.SMTP.ListenTLS != "" || c.SMTP.ListenStartTLS != ""
	case ProtoPOP3:
		return c.POP3.Backend.Address != "" && (c.POP3.ListenTLS != "" || c.POP3.ListenStartTLS != "")
	case ProtoSieve:
		return c.Sieve.Backend.Address != "" && c.Sieve.Listen != ""
	}
	return false
}

// OAuth2 configures bearer-token validation.
type OAuth2 struct {
	Mode                 string        `mapstructure:"mode"` // userinfo | introspection | jwt | auto
	UserinfoURL          string        `mapstructure:"userinfo_url"`
	IntrospectionURL     string        `mapstructure:"introspection_url"`
	IntrospectionAuth    string        `mapstructure:"introspection_auth"` // client_secret_basic | client_secret_post
	ClientID             string        `mapstructure:"client_id"`          // introspection client credentials
	ClientSecret         string        `mapstructure:"client_secret"`      // after Load: contents of ClientSecretFile when set
	ClientSecretFile     string        `mapstructure:"client_secret_file"`
	Issuer               string        `mapstructure:"issuer"`
	Audiences            []string      `mapstructure:"audiences"` // accepted aud/azp values; empty = not checked
	RequiredScopes       []string      `mapstructure:"required_scopes"`
	UsernameClaim        string        `mapstructure:"username_claim"` // claim that names the mailbox
	RequireEmailVerified bool          `mapstructure:"require_email_verified"`
	AllowedDomains       []string      `mapstructure:"allowed_domains"`    // empty = any
	CacheTTL             time.Duration `mapstructure:"cache_ttl"`          // 0 = no cache; never beyond the token's exp
	NegativeCacheTTL     time.Duration `mapstructure:"negative_cache_ttl"` // 0 = failures are not cached
	Timeout              time.Duration `mapstructure:"timeout"`            // per IdP request
	CAFile               string        `mapstructure:"ca_file"`            // "" = the system roots
	SessionLifetime      string        `mapstructure:"session_lifetime"`   // none | token | revalidate
	RevalidateEvery      time.Duration `mapstructure:"revalidate_every"`   // used when SessionLifetime is revalidate
	// XOAUTH2ErrorStatus is the "status" of the XOAUTH2 error challenge
	// after a refused token: "400" (Google's; K-9 Mail / Thunderbird for
	// Android then fetch a fresh token and retry) or "401".
	XOAUTH2ErrorStatus string `mapstructure:"xoauth2_error_status"`
}

// Auth holds authentication options that are not OAuth2.
type Auth struct {
	// PasswordPassthrough also accepts LOGIN/PLAIN (after TLS) and passes
	// the user's own password to the backend, for the protocols listed in
	// PasswordPassthroughProtocols.
	PasswordPassthrough bool `mapstructure:"password_passthrough"`
	// PasswordPassthroughProtocols are the protocols (ProtoIMAP, ProtoSMTP)
	// that passthrough applies to when PasswordPassthrough is on.
	PasswordPassthroughProtocols []string `mapstructure:"password_passthrough_protocols"`
}

// PasswordPassthroughFor reports whether password passthrough is on for
// proto (ProtoIMAP or ProtoSMTP).
func (a Auth) PasswordPassthroughFor(proto string) bool {
	if !a.PasswordPassthrough {
		return false
	}
	for _, p := range a.PasswordPassthroughProtocols {
		if p == proto {
			return true
		}
	}
	return false
}

// AppPasswords are random passwords a user makes for a mail client that
// cannot do OAuth: a login with one opens the backend session as the
// master user on behalf of its mailbox, like a token.
type AppPasswords struct {
	// Enabled accepts LOGIN/PLAIN (after TLS) with an app password on the
	// Protocols, even when password passthrough is off.
	Enabled bool `mapstructure:"enabled"`
	// Database is the store's URL: sqlite:///path, sqlite:relative/path or
	// postgres://... (see package apppass).
	Database string `mapstructure:"database"`
	// Protocols are those app passwords may be made for and used with
	// (ProtoIMAP, ProtoSMTP, ProtoPOP3, ProtoSieve).
	Protocols []string `mapstructure:"protocols"`
	// MaxPerUser bounds a user's usable app passwords (0: no bound).
	MaxPerUser int `mapstructure:"max_per_user"`
	// DefaultExpiry is the lifetime of one made without one (0: MaxExpiry).
	DefaultExpiry time.Duration `mapstructure:"default_expiry"`
	// MaxExpiry bounds the lifetime of one (0: none).
	MaxExpiry time.Duration `mapstructure:"max_expiry"`
	// KeyFile holds the 32-byte key that seals the users' refresh tokens
	// (openssl rand -hex 32). Empty: no provider links. Required by the page.
	KeyFile string `mapstructure:"key_file"`

	// Listen is the self-service page's listener. "" disables the page.
	Listen string `mapstructure:"listen"`
	// TLS serves the page over HTTPS with the tls.* certificates; false
	// serves plain HTTP, for a reverse proxy that terminates TLS.
	TLS bool `mapstructure:"tls"`
	// PageURL is the page's public https URL, as users' browsers see it
	// (behind a proxy: the proxy's). Its path is the page's root; the
	// provider must accept PageURL + "callback" as a redirect URI.
	PageURL string `mapstructure:"page_url"`
	// OIDCClientID is the confidential client the page signs in with
	// (authorization code with PKCE, scope "openid offline_access" and
	// oauth2.required_scopes); its id is an accepted audience.
	OIDCClientID string `mapstructure:"oidc_client_id"`
	// OIDCClientSecret holds the contents of OIDCClientSecretFile.
	OIDCClientSecret     string `mapstructure:"oidc_client_secret"`
	OIDCClientSecretFile string `mapstructure:"oidc_client_secret_file"`
	// RecheckInterval is how often each open session of an app password
	// checks that it is still valid (not revoked, expired or suspended);
	// one that is not ends. 0: sessions are not checked.
	RecheckInterval time.Duration `mapstructure:"recheck_interval"`
	// RevalidateInterval is how often a user's refresh token is refreshed
	// at the provider; a refusal suspends the user's app passwords.
	RevalidateInterval time.Duration `mapstructure:"revalidate_interval"`
}

// Page reports whether the self-service page is on.
func (a AppPasswords) Page() bool { return a.Enabled && a.Listen != "" }

// For reports whether app passwords are accepted on proto.
func (a AppPasswords) For(proto string) bool {
	return a.Enabled && slices.Contains(a.Protocols, proto)
}

// Limits bound resource use. A cap on connections, sessions or failures of
// 0 means no limit; the other keys have the ranges checked by Validate.
//
// Connections are in two pools: pre-login (not logged in yet) and logged-in
// (relayed). The per-IP caps and the connection rate count client networks:
// addresses grouped by IPv4Prefix and IPv6Prefix.
type Limits struct {
	MaxConnections      int `mapstructure:"max_connections"`        // logged-in sessions, all listeners
	MaxConnectionsPerIP int `mapstructure:"max_connections_per_ip"` // logged-in sessions per client network
	// MaxPreloginConnections caps connections not logged in yet, all
	// listeners; when full, the oldest one of the busiest network is closed.
	MaxPreloginConnections int `mapstructure:"max_prelogin_connections"`
	MaxPreloginPerIP       int `mapstructure:"max_prelogin_per_ip"` // over it a new connection is refused
	IPv4Prefix             int `mapstructure:"ipv4_prefix"`         // 8..32
	IPv6Prefix             int `mapstructure:"ipv6_prefix"`         // 16..128
	// ConnectionRatePerIP is new connections per second per client network
	// (0 = no rate limit), with bursts up to ConnectionBurstPerIP.
	ConnectionRatePerIP  float64 `mapstructure:"connection_rate_per_ip"`
	ConnectionBurstPerIP int     `mapstructure:"connection_burst_per_ip"`
	// ExemptNetworks (CIDR) are clients no per-network cap or rate applies
	// to (a webmail server); the totals still do.
	ExemptNetworks    []string      `mapstructure:"exempt_networks"`
	AuthFailuresPerIP int           `mapstructure:"auth_failures_per_ip"` // per minute, then a growing delay
	PreauthTimeout    time.Duration `mapstructure:"preauth_timeout"`      // until authentication succeeds
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`         // after login; IMAP IDLE needs > 29m

	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"` // one TLS handshake
	CommandTimeout   time.Duration `mapstructure:"command_timeout"`   // one pre-auth command; one SMTP command
	// DummyReplyTimeout bounds the wait for the client's reply to the RFC
	// 7628 error challenge after a refused token (less than CommandTimeout).
	DummyReplyTimeout time.Duration `mapstructure:"dummy_reply_timeout"`
	DataTimeout       time.Duration `mapstructure:"data_timeout"`      // SMTP DATA/BDAT without a byte from the client
	MaxLineBytes      int           `mapstructure:"max_line_bytes"`    // one command line or SASL response
	MaxLiteralBytes   int           `mapstructure:"max_literal_bytes"` // one IMAP literal before login
	// MaxPreloginBytes is what a client can make mailgate hold before login:
	// one command with its literals and SASL responses, plus what the
	// connection keeps (IMAP ID fields). At least MaxLineBytes.
	MaxPreloginBytes int `mapstructure:"max_prelogin_bytes"`
	MaxAuthAttempts  int `mapstructure:"max_auth_attempts"` // failed logins per connection
}

// ProxyProtocol is the PROXY protocol (v1/v2) on the client listeners.
type ProxyProtocol struct {
	// TrustedNetworks (CIDR) must send a PROXY header, whose source address
	// is then taken as the client's; connections from anywhere else are taken
	// as they are. Empty: PROXY protocol off.
	TrustedNetworks []string `mapstructure:"trusted_networks"`
}

// HTTP is the operations endpoint (/metrics /healthz /readyz
// /dependencies).
type HTTP struct {
	Listen string `mapstructure:"listen"` // "" disables it
	// ReadyzDependencies puts the backends' and the provider's reachability
	// into /readyz's verdict. Off, they are only in /dependencies, its
	// metrics and a line of /readyz's body: a load balancer would take every
	// replica out at once for them.
	ReadyzDependencies bool `mapstructure:"readyz_dependencies"`
}

// Client is an OAuth client of the provider whose tokens mailgate accepts
// (Roundcube, Thunderbird, a mobile app). Its ClientID is accepted as a
// token's aud, azp or client_id, together with oauth2.audiences (see
// [Config.Audiences]); a Public client is what the onboarding documents and
// the Thunderbird add-on publish.
type Client struct {
	Name     string `mapstructure:"name"`      // label, e.g. "thunderbird"; unique
	ClientID string `mapstructure:"client_id"` // the provider's client id; unique
	// Public: a client with no secret that uses PKCE (desktop and mobile
	// apps). Only public clients are published.
	Public bool `mapstructure:"public"`
	// Scopes are what the client asks for. Empty: DefaultClientScopes.
	Scopes []string `mapstructure:"scopes"`
	// Issuer is the issuer this client logs in at, when it is not
	// oauth2.issuer (Authentik: every application has its own). Empty:
	// oauth2.issuer.
	Issuer string `mapstructure:"issuer"`
}

// IssuerOr returns the client's Issuer, or def when it has none.
func (c Client) IssuerOr(def string) string {
	if c.Issuer != "" {
		return c.Issuer
	}
	return def
}

// DefaultClientScopes are what a published client asks for when its Scopes
// are empty: an OIDC login with the address and a refresh token.
var DefaultClientScopes = []string{"openid", "email", "offline_access"}

// ScopesOrDefault returns Scopes, or DefaultClientScopes when empty.
func (c Client) ScopesOrDefault() []string {
	if len(c.Scopes) == 0 {
		return DefaultClientScopes
	}
	return c.Scopes
}

// Discovery is the public onboarding listener: Thunderbird autoconfig,
// Outlook Autodiscover, an Apple profile and the PACC document, for Domains.
// It is meant for the internet, unlike http.listen.
type Discovery struct {
	Listen string `mapstructure:"listen"` // "" disables it
	// TLS serves HTTPS with the tls.* certificates; false serves plain HTTP,
	// for a reverse proxy that terminates TLS in front of it.
	TLS bool `mapstructure:"tls"`
	// Domains are the mail domains published. Empty: oauth2.allowed_domains.
	Domains []string `mapstructure:"domains"`
	// Hostname is the name clients connect to for mail. Empty: smtp.hostname,
	// else the machine's host name.
	Hostname string `mapstructure:"hostname"`
	// DisplayName is the provider name clients show. Empty: the domain.
	DisplayName string `mapstructure:"display_name"`
	// Client names the clients entry published as the OAuth client. Empty:
	// the public client named "thunderbird", else the only public client.
	Client string `mapstructure:"client"`
}

// Cluster is what several replicas behind a load balancer share and how
// one leaves the balancer.
type Cluster struct {
	Redis Redis `mapstructure:"redis"`
	// DrainDelay is how long /readyz answers 503 after SIGTERM before the
	// listeners close, so that the balancer's health check takes the replica
	// out first. 0: they close at once.
	DrainDelay time.Duration `mapstructure:"drain_delay"`
}

// Redis is the optional shared state (failure throttle, token cache) of the
// replicas. An empty Address: every replica keeps its own.
type Redis struct {
	// Address is the host:port of Redis or Valkey; several, comma-separated,
	// are the seed nodes of a Redis Cluster.
	Address      string `mapstructure:"address"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"` // after Load: contents of PasswordFile when set
	PasswordFile string `mapstructure:"password_file"`
	TLS          bool   `mapstructure:"tls"`
	CAFile       string `mapstructure:"ca_file"`     // "" = the system roots
	ServerName   string `mapstructure:"server_name"` // "" = the host of Address
	KeyPrefix    string `mapstructure:"key_prefix"`
	// Timeout bounds one Redis operation; a login never waits longer on
	// Redis, and falls back to the replica's own state.
	Timeout time.Duration `mapstructure:"timeout"`
	// WhenDown is what the throttle does while Redis is unreachable:
	// RedisLocal (each replica throttles on its own) or RedisRefuse (logins
	// get a temporary failure).
	WhenDown string `mapstructure:"when_down"`
}

// Addresses returns Address split at its commas, without blanks.
func (r Redis) Addresses() []string {
	var out []string
	for _, a := range strings.Split(r.Address, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Audiences returns the accepted aud/azp/client_id values: oauth2.audiences
// followed by every clients entry's client_id, without repeats.
func (c *Config) Audiences() []string {
	out := make([]string, 0, len(c.OAuth2.Audiences)+len(c.Clients))
	for _, a := range c.OAuth2.Audiences {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, cl := range c.Clients {
		if cl.ClientID != "" && !slices.Contains(out, cl.ClientID) {
			out = append(out, cl.ClientID)
		}
	}
	if id := c.AppPasswords.OIDCClientID; c.AppPasswords.Page() && id != "" && !slices.Contains(out, id) {
		out = append(out, id)
	}
	return out
}

// PublishedClient returns the clients entry named by discovery.client (see
// [Discovery.Client]); false when there is none.
func (c *Config) PublishedClient() (Client, bool) {
	var public []Client
	for _, cl := range c.Clients {
		if c.Discovery.Client != "" && cl.Name == c.Discovery.Client {
			return cl, true
		}
		if cl.Public {
			public = append(public, cl)
		}
	}
	if c.Discovery.Client != "" {
		return Client{}, false
	}
	for _, cl := range public {
		if cl.Name == "thunderbird" {
			return cl, true
		}
	}
	if len(public) == 1 {
		return public[0], true
	}
	return Client{}, false
}

// DiscoveryDomains returns discovery.domains, else oauth2.allowed_domains.
func (c *Config) DiscoveryDomains() []string {
	if len(c.Discovery.Domains) > 0 {
		return c.Discovery.Domains
	}
	return c.OAuth2.AllowedDomains
}

// Values of the enumerated keys.
const (
	ModeUserinfo      = "userinfo"
	ModeIntrospection = "introspection"
	ModeJWT           = "jwt"
	ModeAuto          = "auto"

	BackendTLSNone     = "none"
	BackendTLSStartTLS = "starttls"
	BackendTLSImplicit = "implicit"

	ClientIPNone    = "none"
	ClientIPID      = "id"      // IMAP only
	ClientIPXClient = "xclient" // SMTP only
	ClientIPProxy   = "proxy"

	LoginMaster  = "master"
	LoginXClient = "xclient"

	ProtoIMAP  = "imap"
	ProtoSMTP  = "smtp"
	ProtoPOP3  = "pop3"
	ProtoSieve = "sieve"

	SessionNone       = "none"
	SessionToken      = "token"
	SessionRevalidate = "revalidate"

	IntrospectionBasic = "client_secret_basic"
	IntrospectionPost  = "client_secret_post"

	XOAUTH2Status400 = "400"
	XOAUTH2Status401 = "401"

	RedisLocal  = "local"
	RedisRefuse = "refuse"
)

// Default returns the defaults of mailgate.example.yaml. Backend addresses,
// certificate files, the master password and the IdP URLs have no default.
func Default() Config {
	return Config{
		Log:    Log{Level: "info", Format: "text"},
		TLS:    TLS{MinVersion: "1.2"},
		Master: Master{User: "mailgate"},
		IMAP: IMAP{
			ListenTLS:      ":993",
			ListenStartTLS: ":143",
			Backend:        Backend{TLS: BackendTLSStartTLS, ClientIP: ClientIPID},
		},
		SMTP: SMTP{
			ListenTLS:      ":465",
			ListenStartTLS: ":587",
			EnforceSender:  true,
			Backend:        Backend{TLS: BackendTLSStartTLS, Login: LoginMaster, ClientIP: ClientIPNone},
		},
		POP3: POP3{
			ListenTLS:      ":995",
			ListenStartTLS: ":110",
			Backend:        Backend{TLS: BackendTLSStartTLS, ClientIP: ClientIPXClient},
		},
		Sieve: Sieve{
			Listen:  ":4190",
			Backend: Backend{TLS: BackendTLSStartTLS, ClientIP: ClientIPXClient},
		},
		OAuth2: OAuth2{
			Mode:                 ModeUserinfo,
			IntrospectionAuth:    IntrospectionBasic,
			UsernameClaim:        "email",
			RequireEmailVerified: true, // false in earlier versions (README: Changes)
			CacheTTL:             5 * time.Minute,
			NegativeCacheTTL:     30 * time.Second,
			Timeout:              5 * time.Second,
			SessionLifetime:      SessionNone,
			RevalidateEvery:      5 * time.Minute,
			XOAUTH2ErrorStatus:   XOAUTH2Status400,
		},
		Auth: Auth{PasswordPassthroughProtocols: []string{ProtoIMAP, ProtoSMTP}},
		AppPasswords: AppPasswords{
			Database:           "sqlite:///var/lib/mailgate/app-passwords.db",
			Protocols:          []string{ProtoIMAP, ProtoSMTP, ProtoPOP3, ProtoSieve},
			MaxPerUser:         10,
			TLS:                true,
			RevalidateInterval: time.Hour,
			RecheckInterval:    time.Minute,
		},
		Limits: Limits{
			MaxConnections:         10000,
			MaxConnectionsPerIP:    50,
			MaxPreloginConnections: 1000,
			MaxPreloginPerIP:       20,
			IPv4Prefix:             32,
			IPv6Prefix:             56,
			ConnectionRatePerIP:    20,
			ConnectionBurstPerIP:   100,
			ExemptNetworks:         []string{},
			AuthFailuresPerIP:      10,
			PreauthTimeout:         60 * time.Second,
			IdleTimeout:            31 * time.Minute,
			HandshakeTimeout:       15 * time.Second,
			CommandTimeout:         30 * time.Second,
			DummyReplyTimeout:      5 * time.Second,
			DataTimeout:            3 * time.Minute,
			MaxLineBytes:           64 << 10,
			MaxLiteralBytes:        64 << 10,
			MaxPreloginBytes:       64 << 10,
			MaxAuthAttempts:        3,
		},
		HTTP:      HTTP{Listen: "127.0.0.1:9090"},
		Clients:   []Client{},
		Discovery: Discovery{TLS: true, Domains: []string{}},
		Cluster: Cluster{
			Redis:      Redis{KeyPrefix: "mailgate:", Timeout: 250 * time.Millisecond, WhenDown: RedisLocal},
			DrainDelay: 5 * time.Second,
		},
		ProxyProtocol: ProxyProtocol{TrustedNetworks: []string{}},
	}
}
