package proxytest

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// UnsafeClaims are email claims (or user names) that would inject
// something if they reached a protocol line as they are.
var UnsafeClaims = map[string]string{
	"CRLF":         "alice@example.test\r\nINJECTED DELETE INBOX",
	"LF":           "alice@example.test\nINJECTED DELETE INBOX",
	"CR":           "alice@example.test\rINJECTED DELETE INBOX",
	"NUL":          "alice@example.test\x00INJECTED\x00master",
	"quote":        `alice@example.test" "x-originating-ip" "INJECTED`,
	"backslash":    `alice@example.test\INJECTED`,
	"space":        "alice@example.test INJECTED",
	"literal":      "alice@example.test{8}INJECTED",
	"tab":          "alice@example.test\tINJECTED",
	"DEL":          "alice@example.test\x7fINJECTED",
	"NEL":          "alice@example.test\u0085INJECTED",
	"LINE SEP":     "alice@example.test\u2028INJECTED",
	"paren":        "alice@example.test)INJECTED",
	"percent star": "alice@example.test%*INJECTED",
}

// CheckBackendLines fails t if a line a backend received, or the decoded
// SASL PLAIN message on it, holds bad (or its INJECTED part).
func CheckBackendLines(t *testing.T, proto string, lines []string, bad string) {
	t.Helper()
	needle := "INJECTED"
	if !strings.Contains(bad, needle) {
		needle = bad
	}
	for _, l := range lines {
		if strings.Contains(l, needle) {
			t.Errorf("%s backend received %q", proto, l)
		}
		f := strings.Fields(l)
		for _, w := range f {
			if raw, err := base64.StdEncoding.DecodeString(w); err == nil && len(raw) > 2 && bytes.Contains(raw, []byte(needle)) {
				t.Errorf("%s backend received a SASL message holding %q: %q", proto, needle, raw)
			}
		}
	}
}
