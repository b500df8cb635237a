package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// errIssuerMismatch: the discovery document names another issuer (a
// configuration mistake, logged as such).
var errIssuerMismatch = errors.New("issuer mismatch")

// Metadata is what an issuer's OpenID configuration (OpenID Connect
// Discovery 1.0 §3) says about it, as far as mailgate uses it.
type Metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// FetchMetadata reads issuer's OpenID configuration at [DiscoveryURL]. The
// document's issuer must be exactly issuer. Errors wrap [ErrUnavailable].
func FetchMetadata(ctx context.Context, client *http.Client, issuer string) (Metadata, error) {
	s := &keySet{client: client}
	u := DiscoveryURL(issuer)
	body, err := s.get(ctx, u, "discovery")
	if err != nil {
		return Metadata{}, err
	}
	var m Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return Metadata{}, fmt.Errorf("%w: discovery document at %s is not valid JSON: %w", ErrUnavailable, u, err)
	}
	if m.Issuer != issuer {
		return Metadata{}, fmt.Errorf("%w: %w: discovery at %s names issuer %q, but oauth2.issuer is %q (they must match exactly, trailing slash included)",
			ErrUnavailable, errIssuerMismatch, u, m.Issuer, issuer)
	}
	return m, nil
}
