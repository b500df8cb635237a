package discovery

import (
	"net"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxAddressLen caps an email address (RFC 5321: 64 octets of local part,
// 255 of domain, a path of 256 with the brackets).
const maxAddressLen = 254

// address is an email address that passed [Site.address]: its domain is one
// of the site's (lower case), its local part is plain text. It is the only
// piece of a request that documents repeat.
type address struct {
	Local  string
	Domain string
}

// String returns local@domain.
func (a address) String() string { return a.Local + "@" + a.Domain }

// address validates s: exactly one "@", a local part of printable
// characters without spaces, quotes or angle brackets, and a domain in
// s.Domains (compared case-insensitively). false otherwise.
func (s Site) address(raw string) (address, bool) {
	if len(raw) > maxAddressLen || !utf8.ValidString(raw) || strings.Count(raw, "@") != 1 {
		return address{}, false
	}
	local, dom, _ := strings.Cut(raw, "@")
	if !validLocal(local) {
		return address{}, false
	}
	d, ok := s.domain(dom)
	if !ok {
		return address{}, false
	}
	return address{Local: local, Domain: d}, true
}

// validLocal accepts RFC 5322 dot-atom text and, beyond ASCII, graphic
// characters (RFC 6532); it refuses the quoted-string form, controls,
// format characters (bidi overrides) and white space.
func validLocal(l string) bool {
	if l == "" || l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return false
	}
	for _, r := range l {
		switch {
		case r >= 0x80 && r != utf8.RuneError && unicode.IsGraphic(r) && !unicode.IsSpace(r):
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r):
		default:
			return false
		}
	}
	return true
}

// domain returns the entry of s.Domains that d names, ignoring case and a
// trailing dot; false when there is none.
func (s Site) domain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", false
	}
	for _, sd := range s.Domains {
		if strings.EqualFold(sd, d) {
			return strings.ToLower(sd), true
		}
	}
	return "", false
}

// hostDomain picks the mail domain a request's Host header names: the host
// itself, or the host after one of prefixes (autoconfig.example.com ->
// example.com). Any other host gets the first domain; false when the site
// has none.
func (s Site) hostDomain(host string, prefixes ...string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if d, ok := s.domain(host); ok {
		return d, true
	}
	for _, p := range prefixes {
		if rest, found := strings.CutPrefix(host, p); found {
			if d, ok := s.domain(rest); ok {
				return d, true
			}
		}
	}
	if len(s.Domains) == 0 {
		return "", false
	}
	return strings.ToLower(s.Domains[0]), true
}

// displayName is the provider name documents show: Site.DisplayName, else
// the first domain.
func (s Site) displayName() string {
	if s.DisplayName != "" || len(s.Domains) == 0 {
		return s.DisplayName
	}
	return s.Domains[0]
}
