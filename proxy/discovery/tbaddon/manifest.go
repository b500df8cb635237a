package tbaddon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mailgate/mailgate/proxy/discovery"
)

// manifest is manifest.json (manifest version 2, which Thunderbird 140
// supports fully).
type manifest struct {
	ManifestVersion int           `json:"manifest_version"`
	Name            string        `json:"name"`
	Version         string        `json:"version"`
	Description     string        `json:"description"`
	Settings        settings      `json:"browser_specific_settings"`
	OAuthProvider   oauthProvider `json:"oauth_provider"`
}

type settings struct {
	Gecko gecko `json:"gecko"`
}

type gecko struct {
	ID               string `json:"id"`
	StrictMinVersion string `json:"strict_min_version"`
}

// oauthProvider is the oauth_provider key; field comments name the first
// Thunderbird that knows the key, when it is later than 140.
type oauthProvider struct {
	Issuer                string   `json:"issuer"`
	ClientID              string   `json:"clientId"`
	IssuerIdentifier      string   `json:"issuerIdentifier,omitempty"` // 153
	AuthorizationEndpoint string   `json:"authorizationEndpoint"`
	TokenEndpoint         string   `json:"tokenEndpoint"`
	RedirectionEndpoint   string   `json:"redirectionEndpoint"`
	UsePKCE               bool     `json:"usePKCE"`
	UseExternalBrowser    bool     `json:"useExternalBrowser,omitempty"` // 153
	Hostnames             []string `json:"hostnames"`
	EmailDomains          []string `json:"emailDomains,omitempty"` // 155
	Scopes                string   `json:"scopes"`
}

// Manifest returns the add-on's manifest.json for site.
func Manifest(site discovery.Site, opts Options) ([]byte, error) {
	m, err := buildManifest(site, opts)
	if err != nil {
		return nil, err
	}
	return marshal(m)
}

func buildManifest(site discovery.Site, opts Options) (*manifest, error) {
	minV, major, err := minVersion(opts)
	if err != nil {
		return nil, err
	}
	if err := checkFeatures(opts, major); err != nil {
		return nil, err
	}
	p, err := provider(site, opts)
	if err != nil {
		return nil, err
	}
	m := &manifest{ManifestVersion: 2, OAuthProvider: *p}
	m.Settings.Gecko.StrictMinVersion = minV
	if m.Settings.Gecko.ID, err = addonID(site, opts); err != nil {
		return nil, err
	}
	if m.Version, err = addonVersion(opts); err != nil {
		return nil, err
	}
	m.Name = addonName(site, opts, p.Hostnames)
	m.Description = fmt.Sprintf("Lets Thunderbird log in with OAuth 2.0 at %s.",
		strings.Join(p.Hostnames, ", "))
	return m, nil
}

// marshal encodes v as indented JSON with a final newline, leaving & < >
// as they are.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("tbaddon: %w", err)
	}
	return buf.Bytes(), nil
}
