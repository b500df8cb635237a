package tbaddon

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/mailgate/mailgate/proxy/discovery"
)

// provider builds the oauth_provider key from site.OAuth and opts.
func provider(site discovery.Site, opts Options) (*oauthProvider, error) {
	o := site.OAuth
	if o == nil {
		return nil, ErrNoOAuth
	}
	authURL, err := endpoint("authorization endpoint (AuthURL)", o.AuthURL)
	if err != nil {
		return nil, err
	}
	if _, err := endpoint("token endpoint (TokenURL)", o.TokenURL); err != nil {
		return nil, err
	}
	if o.ClientID == "" {
		return nil, fmt.Errorf("%w: no client id (ClientID)", ErrIncompleteOAuth)
	}
	if opts.Redirect != InternalWindow && opts.Redirect != ExternalBrowser {
		return nil, fmt.Errorf("%w: Redirect %d", ErrInvalid, opts.Redirect)
	}
	p := &oauthProvider{
		Issuer:                opts.Provider,
		ClientID:              o.ClientID,
		AuthorizationEndpoint: o.AuthURL,
		TokenEndpoint:         o.TokenURL,
		RedirectionEndpoint:   opts.Redirect.URI(),
		UsePKCE:               true,
		UseExternalBrowser:    opts.Redirect == ExternalBrowser,
		Scopes:                strings.Join(o.Scopes, " "),
	}
	if p.Issuer == "" {
		p.Issuer = strings.ToLower(authURL.Hostname())
	}
	if p.Scopes == "" {
		p.Scopes = DefaultScopes
	}
	return p, fillOptional(p, site, opts)
}

// fillOptional sets the keys that depend on opts: issuerIdentifier,
// hostnames and emailDomains.
func fillOptional(p *oauthProvider, site discovery.Site, opts Options) error {
	if opts.IssuerIdentifier {
		if site.OAuth.Issuer == "" {
			return fmt.Errorf("%w: IssuerIdentifier needs the issuer (Issuer)", ErrIncompleteOAuth)
		}
		p.IssuerIdentifier = site.OAuth.Issuer
	}
	var err error
	if p.Hostnames, err = hostnames(site, opts); err != nil {
		return err
	}
	if opts.EmailDomains {
		p.EmailDomains = distinct(site.Domains)
		if len(p.EmailDomains) == 0 {
			return fmt.Errorf("%w: EmailDomains needs the Site's domains", ErrInvalid)
		}
	}
	return nil
}

// endpoint checks that s is an absolute http or https URL with a host.
func endpoint(what, s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: no %s", ErrIncompleteOAuth, what)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: %s %q is not an absolute http(s) URL", ErrIncompleteOAuth, what, s)
	}
	return u, nil
}
