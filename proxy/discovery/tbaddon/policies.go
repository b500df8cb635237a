package tbaddon

import (
	"fmt"
	"net/url"

	"github.com/mailgate/mailgate/proxy/discovery"
)

type policies struct {
	Policies struct {
		ExtensionSettings map[string]extensionSetting `json:"ExtensionSettings"`
	} `json:"policies"`
}

type extensionSetting struct {
	InstallationMode string `json:"installation_mode"`
	InstallURL       string `json:"install_url"`
}

// Policies returns a Thunderbird policies.json that installs the add-on for
// every user, who cannot remove or disable it (ExtensionSettings,
// installation_mode force_installed). It checks the whole add-on as
// [Manifest] does and needs opts.InstallURL.
func Policies(site discovery.Site, opts Options) ([]byte, error) {
	m, err := buildManifest(site, opts)
	if err != nil {
		return nil, err
	}
	if err := checkInstallURL(opts.InstallURL); err != nil {
		return nil, err
	}
	var p policies
	p.Policies.ExtensionSettings = map[string]extensionSetting{
		m.Settings.Gecko.ID: {InstallationMode: "force_installed", InstallURL: opts.InstallURL},
	}
	return marshal(p)
}

// checkInstallURL accepts https:// and file:/// URLs. Plain http is refused:
// whoever can change the download could run code in every Thunderbird.
func checkInstallURL(s string) error {
	if s == "" {
		return ErrNoInstallURL
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%w: InstallURL %q: %v", ErrInvalid, s, err)
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "file" && u.Path != "":
		return nil
	}
	return fmt.Errorf("%w: InstallURL %q is not an https:// or file:/// URL", ErrInvalid, s)
}
