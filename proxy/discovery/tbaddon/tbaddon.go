// Package tbaddon builds a Thunderbird add-on that registers mailgate's OAuth
// provider for mailgate's host names, and the enterprise policy that installs
// it for every user.
//
// Thunderbird desktop offers OAuth (it then logs in with XOAUTH2) only for a
// host it knows a provider for: one from its built-in list, or one that an
// add-on registers with the oauth_provider manifest key (Thunderbird 140 and
// later). The add-on built here holds nothing but that manifest. It is not
// signed; Thunderbird installs unsigned add-ons.
//
// Typical usage:
//
//	opts := tbaddon.Options{InstallURL: "https://mail.example.com/mailgate-oauth.xpi"}
//	err := tbaddon.Build(w, site, opts)      // the .xpi to serve at InstallURL
//	pol, err := tbaddon.Policies(site, opts) // policies.json for the desktops
//
// The provider's client must be public (PKCE, no secret) and accept the
// redirect URI of the chosen [Redirect] mode ([Redirect.URI]).
//
// References: RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 8252 section 7.3
// (loopback redirect), RFC 9207 (iss in the authorization response); in
// Thunderbird's source, mail/components/extensions/schemas/oauth_provider.json
// and mailnews/base/src/OAuth2.sys.mjs; the ExtensionSettings policy in
// github.com/thunderbird/policy-templates.
package tbaddon

import "errors"

// Errors returned by [Manifest], [Build] and [Policies], wrapped with details;
// test them with errors.Is.
var (
	// ErrNoOAuth: the Site publishes no OAuth provider (Site.OAuth is nil).
	ErrNoOAuth = errors.New("tbaddon: site has no OAuth provider")
	// ErrIncompleteOAuth: the provider lacks an endpoint, the client id, or
	// (for Options.IssuerIdentifier) the issuer, or an endpoint is not an
	// absolute http(s) URL.
	ErrIncompleteOAuth = errors.New("tbaddon: OAuth provider incomplete")
	// ErrNoHostnames: neither Options.Hostnames nor the Site's servers name a
	// host.
	ErrNoHostnames = errors.New("tbaddon: no host names")
	// ErrTooOld: Options.MinVersion is older than Thunderbird 140, or older
	// than the release that introduced a feature the Options ask for.
	ErrTooOld = errors.New("tbaddon: MinVersion too old")
	// ErrInvalid: an Options field or a host name is malformed.
	ErrInvalid = errors.New("tbaddon: invalid option")
	// ErrNoInstallURL: Policies needs Options.InstallURL.
	ErrNoInstallURL = errors.New("tbaddon: no install URL")
)
