package auth

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxMailbox is the longest mailbox name accepted (RFC 5321 path limit).
const maxMailbox = 254

// Mailbox length limits of RFC 5321 §4.5.3.1.
const (
	maxLocalPart = 64
	maxDomain    = 253
)

// ParseMailbox takes a mailbox address strictly, as it came from a token
// claim or a SASL user name, and returns it with ASCII letters lower-cased
// (A-Z only: nothing else is folded or normalised). It is refused, with an
// error wrapping ErrInvalidCredentials that says why, unless it is exactly
// one address: valid UTF-8; no white space, control or format characters
// anywhere (Unicode Cc, Cf, Zs, Zl, Zp: tab, CR, LF, U+00A0, U+200B, U+2028,
// U+FEFF...), so neither surrounding nor embedded ones; exactly one "@"
// with a non-empty local part (at most 64 bytes) and domain (at most 253
// bytes, no empty label); at most 254 bytes; and SafeMailbox.
//
// Strictness is the point: a claim "alice@example.test" followed by a
// no-break space is not alice, and must not be made into her by trimming.
func ParseMailbox(s string) (string, error) {
	if why := mailboxProblem(s); why != "" {
		return "", fmt.Errorf("%w: %s", ErrInvalidCredentials, why)
	}
	return ASCIILower(s), nil
}

// mailboxProblem returns why s is not a mailbox address taken strictly, or "".
func mailboxProblem(s string) string {
	if why := unsafeMailbox(s); why != "" {
		return why
	}
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case !ok:
		return `has no "@"`
	case strings.Contains(domain, "@"):
		return `has more than one "@"`
	case local == "":
		return "has an empty local part"
	case domain == "":
		return "has an empty domain"
	case len(local) > maxLocalPart:
		return fmt.Sprintf("has a local part longer than %d bytes", maxLocalPart)
	case len(domain) > maxDomain:
		return fmt.Sprintf("has a domain longer than %d bytes", maxDomain)
	case strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, ".."):
		return "has an empty domain label"
	}
	return ""
}

// SafeMailbox reports whether s can be put on an IMAP or SMTP line as is:
// non-empty, at most 254 bytes, valid UTF-8, and free of white space,
// control and format characters (Unicode Cc, Cf, Zs, Zl, Zp: CR, LF, NUL,
// tab, DEL, U+00A0, U+200B, U+2028, U+FEFF included) and of the characters
// " \ ( ) { } % *. It does not require an "@" (see ParseMailbox).
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
	for i, r := range s {
		if why := forbiddenRune(r); why != "" {
			return fmt.Sprintf("contains %s at byte %d", why, i)
		}
	}
	return ""
}

// forbiddenRune says what r is when it may not appear in a mailbox, or "".
func forbiddenRune(r rune) string {
	switch {
	case unicode.Is(unicode.Cc, r):
		return fmt.Sprintf("a control character (%U)", r)
	case unicode.Is(unicode.Cf, r):
		return fmt.Sprintf("an invisible format character (%U)", r)
	case unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp) || unicode.IsSpace(r):
		return fmt.Sprintf("a space (%U)", r)
	case strings.ContainsRune(`"\(){}%*`, r):
		return fmt.Sprintf("%q", r)
	}
	return ""
}

// ASCIILower lower-cases the ASCII letters A-Z of s and nothing else
// (strings.ToLower would also fold, say, "K" KELVIN SIGN into "k").
func ASCIILower(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// sameMailbox reports whether a and b are one address: equal once ASCII
// letters are folded, byte for byte otherwise.
func sameMailbox(a, b string) bool {
	return ASCIILower(a) == ASCIILower(b)
}
