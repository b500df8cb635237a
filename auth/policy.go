package auth

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultUsernameClaim is the claim used when Policy.UsernameClaim is empty.
const DefaultUsernameClaim = "email"

// maxMailbox is the longest mailbox name accepted (RFC 5321 path limit).
const maxMailbox = 254

// Policy turns validated token claims into a mailbox name. The zero Policy
// uses the "email" claim and checks nothing else.
type Policy struct {
	// UsernameClaim names the claim holding the mailbox. Empty: "email".
	UsernameClaim string
	// RequireEmailVerified refuses tokens whose "email_verified" claim is
	// not true (bool true or the string "true").
	RequireEmailVerified bool
	// AllowedDomains, when non-empty, lists the domains (the part after the
	// last "@", compared case-insensitively) that may log in.
	AllowedDomains []string
	// RequiredScopes must all be granted, in "scope" (space-separated) or
	// "scp" (array or space-separated string).
	RequiredScopes []string
}

// Mailbox returns the lower-cased mailbox the claims prove, or an error
// wrapping ErrInvalidCredentials whose text says why (for logs only).
func (p Policy) Mailbox(c Claims) (string, error) {
	name := p.UsernameClaim
	if name == "" {
		name = DefaultUsernameClaim
	}
	raw, present := c[name]
	if !present || raw == nil {
		return "", refuse("claim %q missing", name)
	}
	s, ok := raw.(string)
	if !ok {
		return "", refuse("claim %q is not a string", name)
	}
	mbox := strings.ToLower(strings.TrimSpace(s))
	if why := unsafeMailbox(mbox); why != "" {
		return "", refuse("claim %q %s", name, why)
	}
	if p.RequireEmailVerified {
		switch v := c["email_verified"].(type) {
		case bool:
			if !v {
				return "", refuse("email not verified (email_verified=false)")
			}
		case string:
			if v != "true" {
				return "", refuse("email not verified (email_verified=%q)", v)
			}
		case nil:
			return "", refuse("claim \"email_verified\" missing")
		default:
			return "", refuse("claim \"email_verified\" is not a boolean")
		}
	}
	if len(p.AllowedDomains) > 0 {
		at := strings.LastIndexByte(mbox, '@')
		if at < 0 {
			return "", refuse("mailbox %q has no domain", mbox)
		}
		if domain := mbox[at+1:]; !p.domainAllowed(domain) {
			return "", refuse("domain %q not allowed", domain)
		}
	}
	if missing := p.missingScopes(c); len(missing) > 0 {
		return "", refuse("scope not granted: %s", strings.Join(missing, " "))
	}
	return mbox, nil
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCredentials, fmt.Sprintf(format, args...))
}

func (p Policy) domainAllowed(domain string) bool {
	for _, d := range p.AllowedDomains {
		if strings.EqualFold(strings.TrimPrefix(strings.TrimSpace(d), "@"), domain) {
			return true
		}
	}
	return false
}

// missingScopes returns the RequiredScopes not found in "scope" or "scp".
func (p Policy) missingScopes(c Claims) []string {
	if len(p.RequiredScopes) == 0 {
		return nil
	}
	granted := map[string]bool{}
	for _, name := range []string{"scope", "scp"} {
		vals, _ := c.Strings(name)
		for _, v := range vals {
			for _, sc := range strings.Fields(v) {
				granted[sc] = true
			}
		}
	}
	var missing []string
	for _, want := range p.RequiredScopes {
		if !granted[want] {
			missing = append(missing, want)
		}
	}
	return missing
}

// SafeMailbox reports whether s can be put on an IMAP or SMTP line as is:
// non-empty, at most 254 bytes, valid UTF-8, and free of spaces, control
// characters (CR, LF, NUL, tab, DEL included) and the characters
// " \ ( ) { } % *.
func SafeMailbox(s string) bool {
	return unsafeMailbox(s) == ""
}

// unsafeMailbox returns why s is not a safe mailbox, or "".
func unsafeMailbox(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > maxMailbox:
		return fmt.Sprintf("is longer than %d bytes", maxMailbox)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return "contains a control character"
		case unicode.IsSpace(r):
			return "contains a space"
		case strings.ContainsRune(`"\(){}%*`, r):
			return fmt.Sprintf("contains %q", r)
		}
	}
	return ""
}
