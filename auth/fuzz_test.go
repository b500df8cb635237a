package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Seed corpora are also committed under testdata/fuzz/<FuzzName>/.

func FuzzDecodeXOAUTH2(f *testing.F) {
	for _, s := range []string{
		"user=alice@example.com\x01auth=Bearer tok\x01\x01",
		"user=a\x01auth=bearer tok\x01",
		"user=a\x01host=h\x01port=993\x01auth=Bearer tok\x01\x01",
		"user=\x01auth=Bearer t\x01\x01",
		"user=a\x01auth=Bearer \x01\x01",
		"\x01\x01",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		user, tok, err := DecodeXOAUTH2(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || user != "" || tok != "" {
				t.Fatalf("error %v with results %q %q", err, user, tok)
			}
			return
		}
		checkFields(t, len(msg), user, tok)
		u2, t2, err := DecodeXOAUTH2(EncodeXOAUTH2(user, tok))
		if err != nil || u2 != user || t2 != tok {
			t.Fatalf("re-encoding %q %q gave %q %q %v", user, tok, u2, t2, err)
		}
	})
}

func FuzzDecodeOAUTHBEARER(f *testing.F) {
	for _, s := range []string{
		"n,a=alice@example.com,\x01auth=Bearer tok\x01\x01",
		"n,a=alice@example.com,\x01host=127.0.0.1\x01port=143\x01auth=Bearer tok\x01\x01",
		"y,,\x01auth=bearer tok\x01\x01",
		"n,a=a=2Cb=3D,\x01auth=Bearer t\x01\x01",
		"p=tls-unique,,\x01auth=Bearer t\x01\x01",
		"n,,\x01\x01",
		"\x01",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		authz, tok, err := DecodeOAUTHBEARER(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || authz != "" || tok != "" {
				t.Fatalf("error %v with results %q %q", err, authz, tok)
			}
			return
		}
		checkFields(t, len(msg), authz, tok)
		if len(msg) < 2 || msg[0] == 'p' {
			t.Fatalf("accepted %q", msg)
		}
		a2, t2, err := DecodeOAUTHBEARER(EncodeOAUTHBEARER(authz, tok))
		if err != nil || a2 != authz || t2 != tok {
			t.Fatalf("re-encoding %q %q gave %q %q %v", authz, tok, a2, t2, err)
		}
	})
}

// checkFields checks what every successful OAuth decode guarantees.
func checkFields(t *testing.T, n int, user, tok string) {
	t.Helper()
	if n > MaxSASLMessage {
		t.Fatalf("accepted %d bytes", n)
	}
	if tok == "" || strings.ContainsAny(tok, " \t\x00\x01\r\n\x7f") {
		t.Fatalf("bad token %q", tok)
	}
	if strings.ContainsAny(user, "\x00\x01\r\n") {
		t.Fatalf("bad user %q", user)
	}
}

func FuzzDecodePLAIN(f *testing.F) {
	for _, s := range []string{
		"alice@example.com\x00master\x00secret",
		"\x00alice\x00pw",
		"\x00alice\x00",
		"a\x00b\x00c\x00d",
		"\x00\xff\x00pw",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		z, c, p, err := DecodePLAIN(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || z != "" || c != "" || p != "" {
				t.Fatalf("error %v with results %q %q %q", err, z, c, p)
			}
		} else {
			if c == "" || p == "" || strings.ContainsAny(z+c, "\r\n") {
				t.Fatalf("bad result %q %q %q", z, c, p)
			}
			// PLAIN is a bijection on the valid domain.
			if got := EncodePLAIN(z, c, p); string(got) != string(msg) {
				t.Fatalf("EncodePLAIN(DecodePLAIN(%q)) = %q", msg, got)
			}
		}
		// Any three fields of the message, encoded, decode to themselves or fail.
		parts := strings.SplitN(string(msg), "\x01", 3)
		for len(parts) < 3 {
			parts = append(parts, "x")
		}
		z2, c2, p2, err := DecodePLAIN(EncodePLAIN(parts[0], parts[1], parts[2]))
		if err == nil && (z2 != parts[0] || c2 != parts[1] || p2 != parts[2]) {
			t.Fatalf("DecodePLAIN(EncodePLAIN(%q)) = %q %q %q", parts, z2, c2, p2)
		}
	})
}

// FuzzServer drives a Server with two client responses and an
// Authenticator whose outcome the fuzzer picks.
func FuzzServer(f *testing.F) {
	f.Add(uint8(0), true, EncodeXOAUTH2("alice@example.com", "tok"), []byte{}, uint8(0))
	f.Add(uint8(1), true, EncodeOAUTHBEARER("alice@example.com", "tok"), []byte{1}, uint8(1))
	f.Add(uint8(0), false, EncodeXOAUTH2("a", "tok"), []byte{}, uint8(2))
	f.Add(uint8(1), true, EncodeOAUTHBEARER("", "tok"), []byte("x"), uint8(3))
	f.Add(uint8(1), false, []byte("garbage"), []byte{}, uint8(4))
	f.Add(uint8(0), true, []byte{}, []byte{}, uint8(5))
	f.Fuzz(func(t *testing.T, mechSel uint8, withIR bool, first, second []byte, outcome uint8) {
		mech := MechXOAUTH2
		if mechSel%2 == 1 {
			mech = MechOAUTHBEARER
		}
		outcomes := []error{nil, ErrInvalidCredentials, ErrThrottled, ErrUnavailable, errors.New("other"), nil}
		calls := 0
		a := AuthenticatorFunc(func(_ context.Context, c Credentials) (Identity, error) {
			calls++
			if c.Mechanism != mech || c.Token == "" {
				t.Fatalf("bad credentials %+v", c)
			}
			err := outcomes[int(outcome)%len(outcomes)]
			if err != nil {
				return Identity{}, fmt.Errorf("fuzz: %w", err)
			}
			if int(outcome)%len(outcomes) == 5 {
				return Identity{}, nil // empty identity must fail closed
			}
			return Identity{User: "alice@example.com"}, nil
		})
		s, err := NewServer(context.Background(), mech, a, "127.0.0.1:1", ChallengeOptions{Scope: "mail"})
		if err != nil {
			t.Fatal(err)
		}
		responses := [][]byte{first, second, second}
		if !withIR {
			responses = [][]byte{nil, first, second, second}
		}
		finished := false
		for i, r := range responses {
			ch, done, err := s.Next(r)
			if finished {
				if !done || err == nil {
					t.Fatalf("Next after done = %v, %v", done, err)
				}
				continue
			}
			if !done {
				if err != nil {
					t.Fatalf("not done but error %v", err)
				}
				if (r == nil) != (len(ch) == 0) || len(ch) > 0 && !json.Valid(ch) {
					t.Fatalf("step %d: challenge %q", i, ch)
				}
			}
			finished = done
			id, ok := s.Identity()
			if ok != (done && err == nil) || ok && id.User == "" {
				t.Fatalf("Identity = %+v, %v after done=%v err=%v", id, ok, done, err)
			}
		}
		if !finished || calls > 1 {
			t.Fatalf("finished=%v calls=%d", finished, calls)
		}
	})
}

// FuzzParseJWT: the hand-rolled JWT splitter never panics, and what it
// accepts has an alg and object claims.
func FuzzParseJWT(f *testing.F) {
	for _, s := range []string{
		rawJWT(map[string]any{"alg": "RS256", "kid": "k", "typ": "JWT"}, map[string]any{"iss": "x", "exp": 1}, "c2ln"),
		rawJWT(map[string]any{"alg": "none"}, map[string]any{}, ""),
		rawJWT(map[string]any{"alg": 1}, map[string]any{}, "AA"),
		rawJWT(map[string]any{"alg": "HS256", "crit": []string{"b64"}}, map[string]any{"a": []any{1, "x"}}, "AA"),
		"eyJhbGciOiJSUzI1NiJ9.bnVsbA.AA",
		"eyJ.eyJ.eyJ",
		"a.b.c.d.e",
		"ory_at_opaque",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := parseJWT(tok)
		if err != nil {
			if p != nil {
				t.Fatal("result with an error")
			}
			if strings.Contains(err.Error(), tok) && len(tok) > 8 {
				t.Fatalf("error %q contains the token", err)
			}
			return
		}
		if p.Header.Alg == "" || p.Claims == nil || p.Header.Fields == nil {
			t.Fatalf("accepted %q as %+v", tok, p)
		}
		if strings.Count(tok, ".") != 2 {
			t.Fatalf("accepted %q", tok)
		}
	})
}

// FuzzJWTValidate: mutated tokens never panic the validator, are refused as
// invalid credentials, and are accepted only with the original claims.
func FuzzJWTValidate(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789abcdef0123456789")
	const iss = "https://idp.example/"
	v, err := NewJWTValidator(JWTOptions{Issuer: iss, HMACSecret: secret, Algorithms: []string{"HS256"}, JWKSURL: "http://127.0.0.1:1/jwks"})
	if err != nil {
		f.Fatal(err)
	}
	k := &testKey{alg: "HS256", hmac: secret}
	claims := goodClaims(iss, time.Now())
	good := k.sign(f, claims, "JWT", nil)
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(rawJWT(map[string]any{"alg": "HS256"}, claims, "AAAA"))
	f.Add(rawJWT(map[string]any{"alg": "RS256", "kid": "x"}, claims, "AAAA"))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Validate(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("error %v is not ErrInvalidCredentials", err)
			}
			return
		}
		if c["email"] != claims["email"] || c["iss"] != iss {
			t.Fatalf("accepted %q with claims %v", tok, c)
		}
	})
}

// FuzzParseMailbox: what ParseMailbox accepts is one safe address whose
// only change is ASCII lower-casing, and it is idempotent.
func FuzzParseMailbox(f *testing.F) {
	for _, s := range []string{
		"alice@example.test", "Alice@Example.test", "alice@example.test\u00a0", "ali\u200bce@example.test",
		" alice@example.test", "a@b\r\nA1 LOGOUT", "\ufeffa@b", "a@b\u2028", "j\u00fcrgen@\u4f8b\u3048.jp",
		"a@evil@example.test", "@x", "x@", "a@b..c", "\u212a@x", "a\xffb@c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseMailbox(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCredentials) || got != "" {
				t.Fatalf("ParseMailbox(%q) = %q, %v", s, got, err)
			}
			return
		}
		if len(got) != len(s) || !sameMailbox(got, s) || strings.Count(got, "@") != 1 || !SafeMailbox(got) {
			t.Fatalf("ParseMailbox(%q) = %q", s, got)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; got[i] != c && !('A' <= c && c <= 'Z' && got[i] == c+32) {
				t.Fatalf("ParseMailbox(%q) changed byte %d", s, i)
			}
		}
		if again, err := ParseMailbox(got); err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
		}
		if _, err := (Policy{}).Mailbox(Claims{"email": s}); err != nil {
			t.Fatalf("Policy refused what ParseMailbox accepts: %v", err)
		}
	})
}
