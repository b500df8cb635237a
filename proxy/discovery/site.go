// Package discovery builds and serves the documents that tell mail clients
// how to reach mailgate: Thunderbird autoconfig, Outlook Autodiscover (POX),
// an Apple configuration profile, the PACC document, and the DNS records an
// operator publishes so that clients find them. Package discovery/tbaddon
// builds a Thunderbird add-on from the same [Site].
//
// Everything here is built from a [Site], a plain value that cmd derives from
// the configuration; nothing here reads the configuration itself.
package discovery

// Site is what the documents publish.
type Site struct {
	// Domains are the mail domains served (lower case, no trailing dot).
	// A request for an address outside them is refused.
	Domains []string
	// DisplayName is the provider's name shown by clients. Empty: the first
	// domain.
	DisplayName string
	// Servers are the enabled client listeners as clients reach them, in
	// order of preference (implicit TLS before STARTTLS).
	Servers []Server
	// OAuth is the provider clients log in at. Nil: OAuth is not published
	// (only passwords, if any server accepts them).
	OAuth *OAuth
	// OAuthPending: OAuth is to be published but the provider's endpoints
	// are not known yet. The documents then go out uncached, so that no
	// client or cache keeps the incomplete ones.
	OAuthPending bool
}

// Protocol is a mail protocol mailgate serves.
type Protocol string

// The protocols.
const (
	IMAP  Protocol = "imap"
	SMTP  Protocol = "smtp"
	POP3  Protocol = "pop3"
	Sieve Protocol = "managesieve"
)

// Security is how a client secures a connection to a server.
type Security string

// The securities: implicit TLS (993, 465, 995) or STARTTLS on a plain
// connection (143, 587, 110, 4190). mailgate never offers a plain login.
const (
	ImplicitTLS Security = "tls"
	StartTLS    Security = "starttls"
)

// Server is one client listener.
type Server struct {
	Protocol Protocol
	Host     string // public host name clients connect to
	Port     int    // public port
	Security Security
	// Passwords: the listener also accepts a password (LOGIN/PLAIN), so
	// documents list password-cleartext after OAuth2.
	Passwords bool
}

// OAuth is an OAuth 2.0 / OIDC provider and the public client that mail
// clients use with it.
type OAuth struct {
	Issuer   string // OIDC issuer (the "iss" claim)
	AuthURL  string // authorization endpoint
	TokenURL string // token endpoint
	ClientID string // a public client (PKCE, no secret)
	Scopes   []string
}
