package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/mailgate/mailgate/proxy/discovery"
	"github.com/mailgate/mailgate/proxy/discovery/tbaddon"
)

const addonHelp = `Usage: mailgate thunderbird-addon --out FILE.xpi [flags]

Builds a Thunderbird add-on (140 and later) that registers the provider for
mailgate's host name, so that Thunderbird logs in to IMAP and SMTP with OAuth
(XOAUTH2) instead of a password. It publishes the public client that
"discovery.client" names (see "clients"); the provider's authorization and
token endpoints are read from its OpenID configuration now, so the provider
must be reachable.

Register at the provider, for that client: a public client (no secret) with
PKCE, grant types authorization_code and refresh_token, the scopes of the
clients entry (default: openid email offline_access) and the redirect URI
printed below (https://localhost; with --external-browser,
http://127.0.0.1 on any port).

Install it in Thunderbird (Add-ons and Themes, gear menu, Install Add-on
From File), or for every user with the enterprise policy that --policies
writes (the .xpi must then be served at --install-url).
`

func runThunderbirdAddon(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("thunderbird-addon", addonHelp, stdout, stderr).withConfig("oauth2", "log")
	out := cmd.fs.String("out", "", "where to write the .xpi (required)")
	policies := cmd.fs.String("policies", "", "also write Thunderbird's policies.json installing the add-on for every user (needs --install-url)")
	var opts tbaddon.Options
	cmd.fs.StringVar(&opts.InstallURL, "install-url", "", "https:// or file:/// URL the policy installs the .xpi from")
	external := cmd.fs.Bool("external-browser", false, "log in in the system browser with a loopback redirect (Thunderbird 153+)")
	cmd.fs.BoolVar(&opts.IssuerIdentifier, "issuer-identifier", false, "make Thunderbird check the provider's iss in the authorization response (RFC 9207; Thunderbird 153+; only if the provider sends it)")
	cmd.fs.BoolVar(&opts.EmailDomains, "email-domains", false, "use the provider only for addresses in the mail domains (Thunderbird 155+)")
	cmd.fs.StringVar(&opts.MinVersion, "min-version", "", "oldest Thunderbird the add-on installs in (default "+tbaddon.DefaultMinVersion+")")
	cmd.fs.StringVar(&opts.ID, "id", "", "add-on id (default mailgate-oauth@<first mail domain>); keep it stable")
	cmd.fs.StringVar(&opts.Version, "addon-version", "", "add-on version (default "+tbaddon.DefaultVersion+"); raise it whenever the add-on changes")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	if *out == "" || cmd.fs.NArg() > 0 {
		cmd.usageError("--out FILE.xpi is required, and nothing else may follow the flags")
		return 2
	}
	if *external {
		opts.Redirect = tbaddon.ExternalBrowser
	}
	_, site, code := onboardingSite(cmd)
	if code != 0 {
		return code
	}
	var xpi bytes.Buffer
	if err := tbaddon.Build(&xpi, site, opts); err != nil {
		return cmd.fail(1, "%v", err)
	}
	var pol []byte
	if *policies != "" {
		var err error
		if pol, err = tbaddon.Policies(site, opts); err != nil {
			return cmd.fail(1, "%v", err)
		}
	}
	if err := writeOutputs(map[string][]byte{*out: xpi.Bytes(), *policies: pol}); err != nil {
		return cmd.fail(1, "%v", err)
	}
	printAddonSummary(stdout, site, opts, *out, *policies)
	return 0
}

// writeOutputs writes each named file; an empty name is skipped.
func writeOutputs(files map[string][]byte) error {
	for name, b := range files {
		if name == "" {
			continue
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func printAddonSummary(w io.Writer, site discovery.Site, opts tbaddon.Options, out, policies string) {
	fmt.Fprintf(w, "wrote %s\n", out)
	if policies != "" {
		fmt.Fprintf(w, "wrote %s (install it as <Thunderbird's directory>/distribution/policies.json)\n", policies)
	}
	var hosts []string
	for _, s := range site.Servers {
		if !slices.Contains(hosts, s.Host) {
			hosts = append(hosts, s.Host)
		}
	}
	fmt.Fprintf(w, "mail servers: %s\n", strings.Join(hosts, ", "))
	fmt.Fprintf(w, "provider:     %s (client %s, scopes %s)\n", site.OAuth.Issuer, site.OAuth.ClientID, strings.Join(site.OAuth.Scopes, " "))
	redirect := opts.Redirect.URI()
	if opts.Redirect == tbaddon.ExternalBrowser {
		redirect += " on any port (RFC 8252 loopback redirect)"
	}
	fmt.Fprintf(w, "register at the provider for client %s: public client, PKCE (S256), redirect URI %s\n", site.OAuth.ClientID, redirect)
}
