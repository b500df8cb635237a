package apppass

import (
	"crypto/rand"
	"encoding/base32"
	"strings"

	"github.com/mailgate/mailgate/auth"
)

// The password format (see the package doc):
//
//	mgp_<id>_<secret>
//
// id is idBytes random bytes and secret secretBytes random bytes, both in
// lower-case base32 without padding.
const (
	// Prefix starts every app password.
	Prefix = "mgp_"
	// idBytes is the size of the public lookup id: 80 bits, 16 characters.
	idBytes = 10
	// secretBytes is the size of the secret: 160 bits, 32 characters.
	secretBytes = 20
)

// alphabet is RFC 4648 base32 in lower case: no 0/O or 1/l/I to confuse,
// one case, and nothing an IMAP atom, a SASL PLAIN message or a shell
// would need quoted.
const alphabet = "abcdefghijklmnopqrstuvwxyz234567"

var encoding = base32.NewEncoding(alphabet).WithPadding(base32.NoPadding)

// Lengths of the encoded parts and of the whole password.
var (
	idLen       = encoding.EncodedLen(idBytes)        // 16
	secretLen   = encoding.EncodedLen(secretBytes)    // 32
	passwordLen = len(Prefix) + idLen + 1 + secretLen // 53
)

// password is a parsed app password.
type password struct {
	id    string // public lookup id
	value string // the whole password, normalised to lower case: what is hashed
}

// newPassword returns a fresh random password.
func newPassword() password {
	b := make([]byte, idBytes+secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	id := encoding.EncodeToString(b[:idBytes])
	return password{id: id, value: Prefix + id + "_" + encoding.EncodeToString(b[idBytes:])}
}

// parsePassword parses s, in any letter case, as an app password. ok is
// false when s does not have the form (then it was not made by this
// package and may be a user's password).
func parsePassword(s string) (p password, ok bool) {
	if len(s) != passwordLen {
		return password{}, false
	}
	s = auth.ASCIILower(s)
	id, secret, found := strings.Cut(strings.TrimPrefix(s, Prefix), "_")
	if !strings.HasPrefix(s, Prefix) || !found || len(id) != idLen || len(secret) != secretLen ||
		!inAlphabet(id) || !inAlphabet(secret) {
		return password{}, false
	}
	return password{id: id, value: s}, true
}

// IsPassword reports whether s has the form of an app password (any
// case), without touching a store: what Verify answers ErrNotAppPassword
// for is exactly what this refuses.
func IsPassword(s string) bool {
	_, ok := parsePassword(s)
	return ok
}

// validID reports whether s has the form of a lookup id.
func validID(s string) bool { return len(s) == idLen && inAlphabet(s) }

// inAlphabet reports whether every byte of s is in alphabet. Lengths are
// multiples of 8 characters, so every such string decodes exactly.
func inAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}
