package auth

import (
	"fmt"
	"strings"
)

// DefaultUsernameClaim is the claim used when Policy.UsernameClaim is empty.
const DefaultUsernameClaim = "email"

// Policy turns validated token claims into a mailbox name. The zero Policy
// uses the "email" claim and checks nothing else.
type Policy struct {
	// UsernameClaim names the claim holding the mailbox. Empty: "email".
	UsernameClaim string
	// RequireEmailVerified refuses tokens whose "email_verified" claim is
	// not true (bool true or the string "true").
	RequireEmailVerified bool
	// AllowedDomains, when non-empty, lists the domains (the part after the
	// "@", compared ignoring ASCII case only) that may log in.
	AllowedDomains []string
	// RequiredScopes must all be granted, in "scope" (space-separated) or
	// "scp" (array or space-separated string).
	RequiredScopes []string
}

// Mailbox returns the mailbox the claims prove, or an error wrapping
// ErrInvalidCredentials whose text says why (for logs and "mailgate token",
// never for the client). The claim is taken strictly (see ParseMailbox):
// only its ASCII letters are lower-cased; a value with white space, control
// or format characters anywhere, or that is not one address, is refused,
// not trimmed or normalised.
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
	if why := mailboxProblem(s); why != "" {
		if strings.HasPrefix(why, "contains") {
			why += " (claims are taken as they are, never trimmed or normalised)"
		}
		return "", refuse("claim %q %s", name, why)
	}
	mbox := ASCIILower(s)
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
		at := strings.IndexByte(mbox, '@') // ParseMailbox rules: exactly one
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
		if sameMailbox(strings.TrimPrefix(strings.TrimSpace(d), "@"), domain) { // ASCII case only
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
