package imap

import (
	"strings"
	"unicode/utf8"
)

// RFC 2971 limits: at most 30 field-value pairs, fields up to 30 bytes,
// values up to 1024 bytes.
const (
	idMaxPairs    = 30
	idMaxFieldLen = 30
	idMaxValueLen = 1024
	// idMaxKept bounds what is kept of the client's ID fields for the
	// backend; it counts against the pre-login byte budget.
	idMaxKept = 2048
)

// handleID answers ID and keeps the client's fields, so they can be passed on
// to the backend next to mailgate's own x-originating-* fields.
func (c *conn) handleID(cmd *command) error {
	if len(cmd.Args) != 1 || !(cmd.Args[0].isNIL() || cmd.Args[0].Kind == argList) {
		return c.bad(cmd, "ID expects NIL or a parenthesized list")
	}
	c.clientID = sanitizeClientID(cmd.Args[0].List)
	c.r.kept = 0
	for _, f := range c.clientID {
		c.r.kept += len(f)
	}
	c.writeLine(`* ID ("name" "mailgate")`)
	return c.writeLine("%s OK ID completed.", cmd.Tag)
}

// sanitizeClientID keeps the well-formed pairs of the client's ID list. Fields
// starting with "x-" are dropped: x-originating-ip and friends are trusted by
// Dovecot from mailgate, so a client must never be able to set them.
func sanitizeClientID(list []argument) []string {
	var out []string
	kept := 0
	for i := 0; i+1 < len(list) && len(out) < 2*idMaxPairs; i += 2 {
		k, v := list[i], list[i+1]
		if k.Kind != argString || v.Kind == argList || v.isNIL() {
			continue
		}
		if len(k.Value) == 0 || len(k.Value) > idMaxFieldLen || len(v.Value) > idMaxValueLen {
			continue
		}
		if strings.HasPrefix(strings.ToLower(k.Value), "x-") || !safeQuotable(k.Value) || !safeQuotable(v.Value) {
			continue
		}
		if kept += len(k.Value) + len(v.Value); kept > idMaxKept {
			break
		}
		out = append(out, k.Value, v.Value)
	}
	return out
}

// safeQuotable reports whether s can go into an IMAP quoted string: valid
// UTF-8 without CR, LF, NUL or other control characters.
func safeQuotable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// quote returns s as an IMAP quoted string. s must be safeQuotable.
func quote(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	sb.WriteByte('"')
	return sb.String()
}
