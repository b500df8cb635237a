package auth

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPolicyMailbox(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		claims  string // JSON
		want    string // "" = want ErrInvalidCredentials
		wantMsg string // substring of the error
	}{
		{"default email", Policy{}, `{"email":"Alice@Example.COM"}`, "alice@example.com", ""},
		{"not trimmed", Policy{}, `{"email":"  alice@example.com\t"}`, "", "contains a space (U+0020) at byte 0"},
		{"other claim", Policy{UsernameClaim: "preferred_username"}, `{"preferred_username":"Alice@x.y","email":"x@y"}`, "alice@x.y", ""},
		{"other claim not an address", Policy{UsernameClaim: "preferred_username"}, `{"preferred_username":"alice","email":"x@y"}`, "", `claim "preferred_username" has no "@"`},
		{"non-ASCII not folded", Policy{}, `{"email":"J\u00dcRGEN@Example.test"}`, "j\u00dcrgen@example.test", ""},
		{"two @", Policy{}, `{"email":"a@evil.org@example.com"}`, "", `has more than one "@"`},
		{"empty local part", Policy{}, `{"email":"@example.com"}`, "", "empty local part"},
		{"empty domain", Policy{}, `{"email":"a@"}`, "", "empty domain"},
		{"empty domain label", Policy{}, `{"email":"a@example..com"}`, "", "empty domain label"},
		{"local part too long", Policy{}, `{"email":"` + strings.Repeat("a", 65) + `@b.cd"}`, "", "local part longer than 64"},
		{"missing", Policy{}, `{"sub":"123"}`, "", `claim "email" missing`},
		{"null", Policy{}, `{"email":null}`, "", `claim "email" missing`},
		{"missing other claim", Policy{UsernameClaim: "upn"}, `{"email":"a@b"}`, "", `claim "upn" missing`},
		{"not a string", Policy{}, `{"email":["a@b"]}`, "", `claim "email" is not a string`},
		{"number", Policy{}, `{"email":42}`, "", `is not a string`},
		{"empty", Policy{}, `{"email":""}`, "", `claim "email" is empty`},
		{"space inside", Policy{}, `{"email":"a b@c"}`, "", "contains a space"},
		{"CRLF", Policy{}, `{"email":"a@b\r\nA1 LOGOUT"}`, "", "control character"},
		{"quote", Policy{}, `{"email":"a\"@b"}`, "", `contains '"'`},
		{"too long", Policy{}, `{"email":"` + strings.Repeat("a", 250) + `@b.cd"}`, "", "longer than 254"},

		{"verified bool", Policy{RequireEmailVerified: true}, `{"email":"a@b","email_verified":true}`, "a@b", ""},
		{"verified string", Policy{RequireEmailVerified: true}, `{"email":"a@b","email_verified":"true"}`, "a@b", ""},
		{"not verified", Policy{RequireEmailVerified: true}, `{"email":"a@b","email_verified":false}`, "", "email not verified (email_verified=false)"},
		{"not verified string", Policy{RequireEmailVerified: true}, `{"email":"a@b","email_verified":"false"}`, "", `email_verified="false"`},
		{"verified missing", Policy{RequireEmailVerified: true}, `{"email":"a@b"}`, "", `claim "email_verified" missing`},
		{"verified number", Policy{RequireEmailVerified: true}, `{"email":"a@b","email_verified":1}`, "", "not a boolean"},
		{"verified not required", Policy{}, `{"email":"a@b","email_verified":false}`, "a@b", ""},

		{"domain allowed", Policy{AllowedDomains: []string{"other.org", "Example.com"}}, `{"email":"a@EXAMPLE.com"}`, "a@example.com", ""},
		{"domain with @ in config", Policy{AllowedDomains: []string{"@example.com"}}, `{"email":"a@example.com"}`, "a@example.com", ""},
		{"two @ with an allowed domain", Policy{AllowedDomains: []string{"example.com"}}, `{"email":"a@evil.org@example.com"}`, "", `more than one "@"`},
		{"domain compared in ASCII case only", Policy{AllowedDomains: []string{"example.com"}}, `{"email":"a@example.\u212aom"}`, "", "not allowed"},
		{"domain refused", Policy{AllowedDomains: []string{"example.com"}}, `{"email":"a@example.com.evil.org"}`, "", `domain "example.com.evil.org" not allowed`},
		{"subdomain refused", Policy{AllowedDomains: []string{"example.com"}}, `{"email":"a@sub.example.com"}`, "", "not allowed"},
		{"no domain", Policy{AllowedDomains: []string{"example.com"}}, `{"email":"alice"}`, "", `claim "email" has no "@"`},

		{"scope string", Policy{RequiredScopes: []string{"mail"}}, `{"email":"a@b","scope":"openid mail email"}`, "a@b", ""},
		{"scp array", Policy{RequiredScopes: []string{"mail", "imap"}}, `{"email":"a@b","scp":["imap","mail"]}`, "a@b", ""},
		{"scp string", Policy{RequiredScopes: []string{"mail"}}, `{"email":"a@b","scp":"mail openid"}`, "a@b", ""},
		{"scope and scp", Policy{RequiredScopes: []string{"mail", "imap"}}, `{"email":"a@b","scope":"mail","scp":["imap"]}`, "a@b", ""},
		{"scope missing", Policy{RequiredScopes: []string{"mail", "imap"}}, `{"email":"a@b","scope":"openid imap"}`, "", "scope not granted: mail"},
		{"no scope claim", Policy{RequiredScopes: []string{"mail", "imap"}}, `{"email":"a@b"}`, "", "scope not granted: mail imap"},
		{"scope prefix is not scope", Policy{RequiredScopes: []string{"mail"}}, `{"email":"a@b","scope":"mailx"}`, "", "scope not granted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Claims
			if err := json.Unmarshal([]byte(tt.claims), &c); err != nil {
				t.Fatalf("bad test JSON: %v", err)
			}
			got, err := tt.policy.Mailbox(c)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("Mailbox = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Mailbox = %q, %v; want ErrInvalidCredentials with %q", got, err, tt.wantMsg)
			}
			if got != "" {
				t.Errorf("Mailbox returned %q with an error", got)
			}
		})
	}
}

func TestSafeMailbox(t *testing.T) {
	good := []string{"alice@example.com", "a+tag@example.com", "jürgen@例え.jp", "a]b@c", "user", strings.Repeat("a", 254)}
	bad := []string{"", strings.Repeat("a", 255), "a b", "a\tb", "a\rb", "a\nb", "a\x00b", "a\x7fb", "a\x1bb",
		`a"b`, `a\b`, "a(b", "a)b", "a{b", "a}b", "a%b", "a*b", "a\xffb", "a\u0085b", "a\u00a0b", "a\u2028b",
		"a\u200bb", "a\ufeffb", "a\u2029b", "a\u3000b", "a\u202eb", "a\u00adb"}
	for _, s := range good {
		if !SafeMailbox(s) {
			t.Errorf("SafeMailbox(%q) = false", s)
		}
	}
	for _, s := range bad {
		if SafeMailbox(s) {
			t.Errorf("SafeMailbox(%q) = true", s)
		}
	}
}

func TestClaimsHelpers(t *testing.T) {
	var c Claims
	if err := json.Unmarshal([]byte(`{"s":"x","n":5,"exp":1700000000.5,"aud":["a","b"],"aud1":"a","mixed":["a",1],"nan":"x"}`), &c); err != nil {
		t.Fatal(err)
	}
	if s, ok := c.String("s"); !ok || s != "x" {
		t.Errorf("String(s) = %q, %v", s, ok)
	}
	if _, ok := c.String("n"); ok {
		t.Error("String(n) ok for a number")
	}
	if tm, ok := c.Time("exp"); !ok || !tm.Equal(time.Unix(1700000000, 5e8)) {
		t.Errorf("Time(exp) = %v, %v", tm, ok)
	}
	for _, name := range []string{"s", "missing", "aud"} {
		if _, ok := c.Time(name); ok {
			t.Errorf("Time(%s) ok", name)
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(1), 1e300, json.Number("1e400"), json.Number("x")} {
		if _, ok := (Claims{"exp": v}).Time("exp"); ok {
			t.Errorf("Time(%v) ok", v)
		}
	}
	if tm, ok := (Claims{"exp": json.Number("1700000000")}).Time("exp"); !ok || tm.Unix() != 1700000000 {
		t.Errorf("Time(json.Number) = %v, %v", tm, ok)
	}
	if tm, ok := (Claims{"exp": int64(1700000000)}).Time("exp"); !ok || tm.Unix() != 1700000000 {
		t.Errorf("Time(int64) = %v, %v", tm, ok)
	}
	if got, ok := c.Strings("aud"); !ok || strings.Join(got, ",") != "a,b" {
		t.Errorf("Strings(aud) = %q, %v", got, ok)
	}
	if got, ok := c.Strings("aud1"); !ok || len(got) != 1 || got[0] != "a" {
		t.Errorf("Strings(aud1) = %q, %v", got, ok)
	}
	for _, name := range []string{"mixed", "n", "missing"} {
		if _, ok := c.Strings(name); ok {
			t.Errorf("Strings(%s) ok", name)
		}
	}
}

// TestSecurityClaimVariantsRefused: the mailbox claim is taken exactly.
// Before, it was trimmed and lower-cased, so "alice@example.test" followed by
// a no-break space logged in as alice, and a zero-width space passed.
func TestSecurityClaimVariantsRefused(t *testing.T) {
	for _, tt := range []struct{ name, email, why string }{
		{"trailing U+00A0", "alice@example.test\u00a0", "a space (U+00A0)"},
		{"embedded U+00A0", "alice\u00a0@example.test", "a space (U+00A0)"},
		{"U+200B", "ali\u200bce@example.test", "format character (U+200B)"},
		{"trailing U+200B", "alice@example.test\u200b", "format character (U+200B)"},
		{"leading space", " alice@example.test", "a space (U+0020) at byte 0"},
		{"trailing space", "alice@example.test ", "a space (U+0020)"},
		{"CRLF inside", "alice@example.test\r\nA1 LOGOUT", "control character (U+000D)"},
		{"LF inside", "alice\n@example.test", "control character (U+000A)"},
		{"tab", "alice@example.test\t", "control character (U+0009)"},
		{"U+2028", "alice@example.test\u2028", "a space (U+2028)"},
		{"U+FEFF", "\ufeffalice@example.test", "format character (U+FEFF)"},
		{"U+3000", "alice@example.test\u3000", "a space (U+3000)"},
		{"KELVIN SIGN is not k", "alice@example.te\u212a", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Policy{}.Mailbox(Claims{"email": tt.email})
			if tt.why == "" { // accepted as itself, never folded into another address
				if err == nil && got == "alice@example.tek" {
					t.Fatalf("Mailbox(%q) = %q", tt.email, got)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidCredentials) || got != "" {
				t.Fatalf("Mailbox(%q) = %q, %v; want a refusal", tt.email, got, err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %q lacks %q", err, tt.why)
			}
			if _, err := ParseMailbox(tt.email); !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("ParseMailbox(%q): %v", tt.email, err)
			}
		})
	}
	if got, err := (Policy{}).Mailbox(Claims{"email": "Alice@Example.test"}); err != nil || got != "alice@example.test" {
		t.Errorf("Alice@Example.test: %q, %v", got, err)
	}
}

func TestASCIILower(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "alice@example.test": "alice@example.test", "Alice@EXAMPLE.Test": "alice@example.test",
		"\u00c9LODIE@Example.test": "\u00c9lodie@example.test", "\u212a@x": "\u212a@x", "\u0130@x": "\u0130@x",
	} {
		if got := ASCIILower(in); got != want {
			t.Errorf("ASCIILower(%q) = %q, want %q", in, got, want)
		}
	}
	if !sameMailbox("Alice@Example.test", "alice@example.TEST") || sameMailbox("\u212a@x", "k@x") || sameMailbox("a@x", "a@x ") {
		t.Error("sameMailbox")
	}
}
