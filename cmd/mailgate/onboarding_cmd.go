package main

import (
	"context"
	"fmt"
	"io"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy/discovery"
)

const onboardingHelp = `Usage: mailgate onboarding dns [flags]

Prints, as zone-file lines, the DNS records that let mail apps find
mailgate for every mail domain (discovery.domains): RFC 6186 SRV records for
each listener, the autoconfig, autodiscover and ua-auto-config names of the
discovery listener, Outlook's Autodiscover SRV record, and the PACC digest
of the document the discovery listener serves now. The provider's endpoints
are read from its OpenID configuration, so it must be reachable. Publish the
records again after the listeners, the provider or the clients change (the
PACC digest changes with them).
`

func runOnboarding(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("onboarding", onboardingHelp, stdout, stderr).withConfig("oauth2", "log")
	webHost := cmd.fs.String("web-host", "", "public host name of the discovery listener (default: discovery.hostname, else smtp.hostname)")
	webPort := cmd.fs.Int("web-port", 0, "public HTTPS port of the discovery listener (default: discovery.listen's port, 443 behind a reverse proxy)")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	if cmd.fs.NArg() != 1 || cmd.fs.Arg(0) != "dns" {
		cmd.usageError("want the subcommand dns")
		return 2
	}
	cfg, site, code := onboardingSite(cmd)
	if code != 0 {
		return code
	}
	web, err := webEndpoint(cfg, *webHost, *webPort)
	if err != nil {
		return cmd.fail(2, "%v", err)
	}
	if err := discovery.WriteZone(stdout, discovery.DNSRecords(site, web)); err != nil {
		return cmd.fail(1, "%v", err)
	}
	return 0
}

// webEndpoint is where clients reach the discovery listener: over HTTPS,
// at the given host and port or else the configured ones.
func webEndpoint(cfg *config.Config, host string, port int) (discovery.WebEndpoint, error) {
	var err error
	if host == "" {
		if host, err = publicHostname(cfg); err != nil {
			return discovery.WebEndpoint{}, err
		}
	}
	if port == 0 && cfg.Discovery.TLS && cfg.Discovery.Listen != "" {
		if port, err = portOf(cfg.Discovery.Listen); err != nil {
			return discovery.WebEndpoint{}, fmt.Errorf("discovery.listen: %w", err)
		}
	}
	return discovery.WebEndpoint{Host: host, Port: port}, nil
}

// onboardingSite loads and validates the configuration and builds the Site
// the documents publish, with the provider's endpoints. It fails when no
// OAuth client can be published: an add-on without one is useless.
func onboardingSite(cmd *command) (*config.Config, discovery.Site, int) {
	cfg, err := cmd.loadConfig()
	if err != nil {
		return nil, discovery.Site{}, cmd.fail(2, "%v", err)
	}
	if err := cfg.Validate(); err != nil {
		cmd.problems("the configuration has problems ("+cmd.source+")", err)
		return nil, discovery.Site{}, 2
	}
	if _, ok := cfg.PublishedClient(); !ok {
		return nil, discovery.Site{}, cmd.fail(2, "no OAuth client to publish: add one to clients with public: true (and name it in discovery.client if there are several)")
	}
	meta, err := providerMetadata(context.Background(), cfg)
	if err != nil {
		return nil, discovery.Site{}, cmd.fail(3, "reading the provider's configuration: %v", err)
	}
	if meta == nil {
		return nil, discovery.Site{}, cmd.fail(2, "oauth2.issuer (or the client's issuer) is required: the provider's endpoints come from its OpenID configuration")
	}
	site, err := siteFrom(cfg, meta, configAddr(cfg))
	if err != nil {
		return nil, discovery.Site{}, cmd.fail(2, "%v", err)
	}
	return cfg, site, 0
}
