package tbaddon

// Redirect selects where Thunderbird shows the provider's login page, and so
// which redirect URI the provider must accept for the client.
type Redirect int

const (
	// InternalWindow is Thunderbird's own OAuth window (Thunderbird 140+).
	// Thunderbird catches the redirect to "https://localhost" in the window;
	// nothing needs to listen there. ("http://localhost" fails: Gecko
	// upgrades it to https and then no longer recognises it.)
	InternalWindow Redirect = iota
	// ExternalBrowser is the system browser (Thunderbird 153+). For each
	// login Thunderbird listens on a random free loopback port and sends
	// "http://127.0.0.1:<port>", so the provider must accept any port for
	// this loopback redirect (RFC 8252 section 7.3). If the user turned off
	// the preference mailnews.oauth.useExternalBrowser, Thunderbird uses its
	// window instead, with "http://127.0.0.1" (no port) as redirect URI; that
	// fails when the provider itself is on 127.0.0.1.
	ExternalBrowser
)

// URI returns the redirect URI to register for the client: the manifest's
// redirectionEndpoint. For ExternalBrowser, Thunderbird adds a port.
func (r Redirect) URI() string {
	if r == ExternalBrowser {
		return "http://127.0.0.1"
	}
	return "https://localhost"
}

// Defaults for the zero values of Options.
const (
	DefaultVersion    = "1.0"
	DefaultMinVersion = "140.0"
	// DefaultScopes is requested when Site.OAuth.Scopes is empty:
	// offline_access gets the refresh token Thunderbird keeps.
	DefaultScopes = "openid email offline_access"
)

// Options tailor the add-on. The zero value gives an add-on for Thunderbird
// 140 and later that logs in through Thunderbird's own window.
type Options struct {
	// ID is the add-on's id, an e-mail-like "name@domain" or a "{uuid}".
	// Thunderbird and the policy identify the add-on by it, so keep it
	// stable. Zero: "mailgate-oauth@" + the Site's first domain.
	ID string
	// Name is shown in the add-on manager. Zero: the Site's DisplayName (or
	// else its first domain) + " OAuth".
	Name string
	// Version is the add-on's version, 1 to 4 dot-separated numbers.
	// Thunderbird does not reinstall a version it already has: raise it
	// whenever the manifest changes. Zero: DefaultVersion.
	Version string
	// Redirect selects the login window. Zero: InternalWindow.
	Redirect Redirect
	// IssuerIdentifier makes Thunderbird require the provider's "iss"
	// parameter in the authorization response (RFC 9207) to equal
	// Site.OAuth.Issuer. Set it only if the provider sends "iss": otherwise
	// Thunderbird rejects every response. Needs MinVersion 153.
	IssuerIdentifier bool
	// EmailDomains restricts the provider to accounts whose user name is an
	// address in one of the Site's domains. Accounts with a user name that
	// is not an address then get no OAuth. Needs MinVersion 155.
	EmailDomains bool
	// MinVersion is the oldest Thunderbird the add-on installs in
	// (strict_min_version), at least 140. A feature above that needs a
	// newer Thunderbird is an error (ErrTooOld). Zero: DefaultMinVersion.
	MinVersion string
	// Hostnames are the server host names that use the provider (lower-cased
	// here). Thunderbird matches them and their subdomains, and never a name
	// without a dot. Zero: the distinct hosts of the Site's servers.
	Hostnames []string
	// Provider names the provider in Thunderbird (the manifest's issuer): it
	// keys Thunderbird's provider list and the saved refresh tokens, and
	// must not be the name of a built-in provider or another add-on's (e.g.
	// "accounts.google.com"). Zero: the host of the authorization endpoint.
	Provider string
	// InstallURL is where Thunderbird downloads the .xpi, https:// or
	// file:///; only Policies uses it. Thunderbird downloads an https URL
	// only once: serve a new version at a new URL.
	InstallURL string
}
