package apppass

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailgate/mailgate/auth"
)

// Protocol is a protocol an app password may be used with.
type Protocol string

// The protocols. Their names are stored in the database: never rename one.
const (
	IMAP        Protocol = "imap"
	SMTP        Protocol = "smtp"
	POP3        Protocol = "pop3"
	ManageSieve Protocol = "sieve"
)

// allProtocols lists every protocol, in the order used everywhere.
var allProtocols = []Protocol{IMAP, SMTP, POP3, ManageSieve}

// AllProtocols returns every protocol: imap, smtp, pop3, sieve.
func AllProtocols() []Protocol { return slices.Clone(allProtocols) }

// ParseProtocol returns the Protocol named s ("imap", "smtp", "pop3",
// "sieve"; any case).
func ParseProtocol(s string) (Protocol, error) {
	p := Protocol(auth.ASCIILower(s))
	if !slices.Contains(allProtocols, p) {
		return "", fmt.Errorf("apppass: unknown protocol %q (want imap, smtp, pop3 or sieve)", s)
	}
	return p, nil
}

// Defaults of Policy.
const (
	// DefaultMaxPerUser bounds a user's usable app passwords.
	DefaultMaxPerUser = 10
	// maxNameLen bounds the name of an app password, in bytes.
	maxNameLen = 100
)

// Policy is what users may create and use. The zero value allows every
// protocol, DefaultMaxPerUser passwords per user, and no expiry.
type Policy struct {
	// MaxPerUser bounds a user's usable (unrevoked, unexpired) app
	// passwords. Zero: DefaultMaxPerUser. Negative: no bound.
	MaxPerUser int
	// Protocols is what app passwords may be used with. It bounds what
	// Create accepts, and Verify enforces it too, so that removing a
	// protocol here disables it for existing passwords. Empty: all.
	Protocols []Protocol
	// DefaultExpiry is the lifetime of a password created without one.
	// Zero: MaxExpiry (so no expiry when MaxExpiry is zero too).
	DefaultExpiry time.Duration
	// MaxExpiry bounds the lifetime Create accepts. Zero: no bound.
	MaxExpiry time.Duration
}

// maxPerUser returns the bound on a user's passwords (0: none).
func (p Policy) maxPerUser() int {
	switch {
	case p.MaxPerUser == 0:
		return DefaultMaxPerUser
	case p.MaxPerUser < 0:
		return 0
	}
	return p.MaxPerUser
}

// allows reports whether the policy allows proto.
func (p Policy) allows(proto Protocol) bool {
	return len(p.Protocols) == 0 || slices.Contains(p.Protocols, proto)
}

// scope returns the protocols of a new password: the requested ones
// (sorted, without duplicates) or, when none is given, all that the
// policy allows.
func (p Policy) scope(requested []Protocol) ([]Protocol, error) {
	if len(requested) == 0 {
		return slices.DeleteFunc(slices.Clone(allProtocols), func(x Protocol) bool { return !p.allows(x) }), nil
	}
	var out []Protocol
	for _, x := range allProtocols {
		if !slices.Contains(requested, x) {
			continue
		}
		if !p.allows(x) {
			return nil, fmt.Errorf("%w: protocol %s", ErrNotAllowed, x)
		}
		out = append(out, x)
	}
	for _, x := range requested {
		if !slices.Contains(allProtocols, x) {
			return nil, fmt.Errorf("%w: unknown protocol %q", ErrNotAllowed, x)
		}
	}
	return out, nil
}

// lifetime returns the lifetime of a new password (0: none) for the
// requested one (0: the default).
func (p Policy) lifetime(requested time.Duration) (time.Duration, error) {
	d := requested
	if d == 0 {
		d = p.DefaultExpiry
	}
	if d == 0 {
		d = p.MaxExpiry
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("%w: negative expiry %v", ErrNotAllowed, d)
	case p.MaxExpiry > 0 && d > p.MaxExpiry:
		return 0, fmt.Errorf("%w: expiry %v is beyond the maximum %v", ErrNotAllowed, d, p.MaxExpiry)
	}
	return d, nil
}

// checkName refuses an empty or too long name, invalid UTF-8, and control
// or format characters (the name is shown on a page and in a terminal).
func checkName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrBadName, maxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not UTF-8", ErrBadName)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }) >= 0:
		return fmt.Errorf("%w: has control characters", ErrBadName)
	}
	return nil
}

// joinProtocols is the stored form of a scope: "imap,smtp".
func joinProtocols(ps []Protocol) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

// splitProtocols reads the stored form of a scope; unknown names (from a
// newer mailgate) are kept, and so never match.
func splitProtocols(s string) []Protocol {
	if s == "" {
		return nil
	}
	var out []Protocol
	for _, x := range strings.Split(s, ",") {
		out = append(out, Protocol(x))
	}
	return out
}
