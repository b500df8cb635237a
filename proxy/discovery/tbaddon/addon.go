package tbaddon

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mailgate/mailgate/proxy/discovery"
)

// idRE is the add-on id pattern of Gecko's XPIProvider (gIDTest).
var idRE = regexp.MustCompile(`(?i)^(\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}|[a-z0-9._-]*@[a-z0-9._-]+)$`)

// addonVersionRE: 1 to 4 numbers, as addons.thunderbird.net accepts.
var addonVersionRE = regexp.MustCompile(`^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$`)

func addonID(site discovery.Site, opts Options) (string, error) {
	id := opts.ID
	if id == "" {
		if len(site.Domains) == 0 {
			return "", fmt.Errorf("%w: no ID, and no domain to derive it from", ErrInvalid)
		}
		id = "mailgate-oauth@" + strings.ToLower(site.Domains[0])
	}
	if !idRE.MatchString(id) {
		return "", fmt.Errorf("%w: ID %q is neither name@domain nor {uuid}", ErrInvalid, id)
	}
	return id, nil
}

func addonVersion(opts Options) (string, error) {
	v := opts.Version
	if v == "" {
		v = DefaultVersion
	}
	if !addonVersionRE.MatchString(v) {
		return "", fmt.Errorf("%w: Version %q is not 1 to 4 dot-separated numbers", ErrInvalid, v)
	}
	return v, nil
}

// addonName falls back to the DisplayName, the first domain, then the first
// host name.
func addonName(site discovery.Site, opts Options, hosts []string) string {
	if opts.Name != "" {
		return opts.Name
	}
	for _, s := range []string{site.DisplayName, first(site.Domains), first(hosts)} {
		if s != "" {
			return s + " OAuth"
		}
	}
	return "mailgate OAuth"
}

// hostnames returns opts.Hostnames or the Site's server hosts, lower case,
// without duplicates, each checked.
func hostnames(site discovery.Site, opts Options) ([]string, error) {
	hosts := opts.Hostnames
	if len(hosts) == 0 {
		for _, s := range site.Servers {
			hosts = append(hosts, s.Host)
		}
	}
	hosts = distinct(hosts)
	if len(hosts) == 0 {
		return nil, ErrNoHostnames
	}
	for _, h := range hosts {
		if err := checkHostname(h); err != nil {
			return nil, err
		}
	}
	return hosts, nil
}

var hostnameRE = regexp.MustCompile(`^[a-z0-9_-]+(\.[a-z0-9_-]+)+$`)

// checkHostname rejects what Thunderbird can never match: it looks a server
// up by its name and then by each parent domain while the name has a dot.
func checkHostname(h string) error {
	if len(h) > 253 || !hostnameRE.MatchString(h) {
		return fmt.Errorf("%w: host name %q (want a DNS name with a dot, no port)", ErrInvalid, h)
	}
	return nil
}

// distinct lower-cases ss and drops empty strings and repeats, keeping order.
func distinct(ss []string) []string {
	var out []string
	seen := make(map[string]bool)
	for _, s := range ss {
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func first(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}
