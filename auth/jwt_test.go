package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Crypto and claim checks of JWTValidator, with keys of our own served by
// a stub provider (Hydra signs only RS256 and never sends a bad token).
func TestJWTValidatorChecks(t *testing.T) {
	idp := newStubIdP(t)
	now := time.Now().Truncate(time.Second)
	clock := newFakeClock(now)
	rs := newTestKey(t, jose.RS256, "rs1", 0)
	ps := newTestKey(t, jose.PS256, "ps1", 1)
	es := newTestKey(t, jose.ES256, "es1", 0)
	es5 := newTestKey(t, jose.ES512, "es5", 0)
	ed := newTestKey(t, jose.EdDSA, "ed1", 0)
	idp.publish(rs, ps, es, es5, ed)
	impostor := newTestKey(t, jose.RS256, "rs1", 2) // same kid, unpublished key
	hs := newTestKey(t, jose.HS256, "", 0)

	v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Audiences: []string{"mailgate", "thunderbird"}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	with := func(changes map[string]any) map[string]any {
		c := goodClaims(idp.Issuer, now)
		for k, val := range changes {
			if val == nil {
				delete(c, k)
			} else {
				c[k] = val
			}
		}
		return c
	}
	good := goodClaims(idp.Issuer, now)
	tampered := func() string {
		parts := strings.Split(rs.sign(t, good, "JWT", nil), ".")
		c, _ := json.Marshal(with(map[string]any{"email": "mallory@example.test"}))
		parts[1] = base64.RawURLEncoding.EncodeToString(c)
		return strings.Join(parts, ".")
	}()
	noKid := &testKey{alg: jose.RS256, priv: rs.priv}

	tests := []struct {
		name  string
		token string
		want  string // "" = accepted; else a substring of the ErrInvalidCredentials error
	}{
		{"RS256 typ JWT", rs.sign(t, good, "JWT", nil), ""},
		{"typ at+jwt", rs.sign(t, good, "at+jwt", nil), ""},
		{"typ application/at+jwt", rs.sign(t, good, "application/at+jwt", nil), ""},
		{"no typ", rs.sign(t, good, "", nil), ""},
		{"no kid: any key of the alg", noKid.sign(t, good, "JWT", nil), ""},
		{"PS256", ps.sign(t, good, "JWT", nil), ""},
		{"ES256", es.sign(t, good, "JWT", nil), ""},
		{"ES512", es5.sign(t, good, "JWT", nil), ""},
		{"EdDSA", ed.sign(t, good, "JWT", nil), ""},
		{"aud as a string", rs.sign(t, with(map[string]any{"aud": "thunderbird"}), "JWT", nil), ""},
		{"azp instead of aud", rs.sign(t, with(map[string]any{"aud": nil, "azp": "thunderbird"}), "JWT", nil), ""},
		{"client_id instead of aud", rs.sign(t, with(map[string]any{"aud": "account", "client_id": "mailgate"}), "JWT", nil), ""},
		{"expired within skew", rs.sign(t, with(map[string]any{"exp": now.Add(-10 * time.Second).Unix()}), "JWT", nil), ""},
		{"nbf within skew", rs.sign(t, with(map[string]any{"nbf": now.Add(10 * time.Second).Unix()}), "JWT", nil), ""},
		{"no nbf no iat", rs.sign(t, with(map[string]any{"nbf": nil, "iat": nil}), "JWT", nil), ""},

		{"alg none unsigned", rawJWT(map[string]any{"alg": "none", "typ": "JWT"}, good, ""), "not a JWT: empty header, payload or signature"},
		{"alg none with a signature", rawJWT(map[string]any{"alg": "none"}, good, "AAAA"), `algorithm "none" not allowed`},
		{"HS256 without a secret", hs.sign(t, good, "JWT", nil), `algorithm "HS256" not allowed`},
		{"HS256 keyed with the RSA public key", func() string {
			pub := rs.priv.Public().(*rsa.PublicKey)
			k := &testKey{alg: jose.HS256, hmac: pub.N.Bytes()}
			return k.sign(t, good, "JWT", map[string]any{"kid": "rs1"})
		}(), `algorithm "HS256" not allowed`},
		{"typ JWE", rs.sign(t, good, "dpop+jwt", nil), `header typ "dpop+jwt" is not an access token type`},
		{"crit header", rs.sign(t, good, "JWT", map[string]any{"crit": []string{"exp"}, "exp": 1}), `"crit"`},
		{"other issuer", rs.sign(t, with(map[string]any{"iss": "https://evil.example/"}), "JWT", nil), `issuer "https://evil.example/" is not "` + idp.Issuer + `"`},
		{"issuer without the trailing slash", rs.sign(t, with(map[string]any{"iss": strings.TrimSuffix(idp.Issuer, "/")}), "JWT", nil), "is not"},
		{"tampered payload", tampered, `signature invalid (RS256, kid "rs1")`},
		{"signed by an unpublished key with a known kid", impostor.sign(t, good, "JWT", nil), "signature invalid"},
		{"alg does not fit the key", func() string {
			h := map[string]any{"alg": "ES256", "kid": "rs1"}
			return rawJWT(h, good, base64.RawURLEncoding.EncodeToString(make([]byte, 64)))
		}(), `unknown signing key: kid "rs1" (ES256)`},
		{"expired", rs.sign(t, with(map[string]any{"exp": now.Add(-31 * time.Second).Unix()}), "JWT", nil), "token expired at " + now.Add(-31*time.Second).UTC().Format(time.RFC3339) + " (31s ago)"},
		{"no exp", rs.sign(t, with(map[string]any{"exp": nil}), "JWT", nil), `no "exp" claim`},
		{"exp a string", rs.sign(t, with(map[string]any{"exp": "tomorrow"}), "JWT", nil), `"exp" is not a number`},
		{"nbf in the future", rs.sign(t, with(map[string]any{"nbf": now.Add(time.Minute).Unix()}), "JWT", nil), "not valid before"},
		{"iat in the future", rs.sign(t, with(map[string]any{"iat": now.Add(time.Minute).Unix()}), "JWT", nil), "issued in the future"},
		{"wrong audience", rs.sign(t, with(map[string]any{"aud": []string{"other"}, "azp": "web"}), "JWT", nil),
			`wrong audience: audience ["other"] (azp "web") not in ["mailgate" "thunderbird"]`},
		{"no audience at all", rs.sign(t, with(map[string]any{"aud": nil}), "JWT", nil), "wrong audience: audience []"},
		{"aud not strings", rs.sign(t, with(map[string]any{"aud": []any{1}}), "JWT", nil), `"aud" is neither`},
		{"opaque token", "ory_at_abcdefghijklmnop", "not a JWT"},
		{"JWE (five parts)", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "not a JWT"},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".e30.AAAA", "header is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Validate(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if e, _ := c.String("email"); e == "" {
					t.Errorf("claims without email: %v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) || c != nil {
				t.Fatalf("Validate = %v, %v; want ErrInvalidCredentials", c, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("error contains the token")
			}
		})
	}
	if n := idp.jwksReqs.Load(); n > 3 {
		t.Errorf("%d JWKS requests for %d tokens (unknown kids are rate-limited)", n, len(tests))
	}
}

func TestJWTValidatorHMAC(t *testing.T) {
	idp := newStubIdP(t)
	rs := newTestKey(t, jose.RS256, "rs1", 0)
	idp.publish(rs)
	hs := newTestKey(t, jose.HS256, "", 0)
	v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, HMACSecret: hs.hmac})
	if err != nil {
		t.Fatal(err)
	}
	good := goodClaims(idp.Issuer, time.Now())
	if _, err := v.Validate(context.Background(), hs.sign(t, good, "JWT", nil)); err != nil {
		t.Errorf("HS256 with the secret: %v", err)
	}
	if _, err := v.Validate(context.Background(), rs.sign(t, good, "JWT", nil)); err != nil {
		t.Errorf("RS256 next to HMAC: %v", err)
	}
	other := &testKey{alg: jose.HS512, hmac: []byte("another secret, long enough for HS512 use: 0123456789012345678901234567")}
	if _, err := v.Validate(context.Background(), other.sign(t, good, "JWT", nil)); !errors.Is(err, ErrInvalidCredentials) ||
		!strings.Contains(err.Error(), "signature invalid (HS512 with the configured secret)") {
		t.Errorf("HS512 with another secret: %v", err)
	}
	if n := idp.discoveryReqs.Load(); n != 1 {
		t.Errorf("discovery requests = %d, want 1 (HMAC needs no keys)", n)
	}
}

func TestNewJWTValidatorOptions(t *testing.T) {
	for _, o := range []JWTOptions{
		{},
		{Issuer: "https://idp/", Algorithms: []string{"HS256"}},
		{Issuer: "https://idp/", Algorithms: []string{"none"}},
		{Issuer: "https://idp/", Algorithms: []string{"NONE"}},
		{Issuer: "https://idp/", Algorithms: []string{"RS1"}},
	} {
		if _, err := NewJWTValidator(o); err == nil {
			t.Errorf("NewJWTValidator(%+v) succeeded", o)
		}
	}
	v, err := NewJWTValidator(JWTOptions{Issuer: "https://idp/", Algorithms: []string{"ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	rs := newTestKey(t, jose.RS256, "k", 0)
	_, err = v.Validate(context.Background(), rs.sign(t, goodClaims("https://idp/", time.Now()), "JWT", nil))
	if !strings.Contains(err.Error(), `algorithm "RS256" not allowed (allowed: ES256)`) {
		t.Errorf("restricted algorithms: %v", err)
	}
}

// Provider faults while fetching discovery or the JWKS: the validator says
// ErrUnavailable, quickly, and does not hammer the provider.
func TestJWTValidatorFaults(t *testing.T) {
	rs := newTestKey(t, jose.RS256, "rs1", 0)
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	unusable, _ := json.Marshal(map[string]any{"keys": []any{
		jose.JSONWebKey{Key: rs.priv.Public(), KeyID: "rs1", Use: "enc"},
		jose.JSONWebKey{Key: smallRSA.Public(), KeyID: "rs1"},
		jose.JSONWebKey{Key: []byte("symmetric"), KeyID: "rs1"},
		map[string]any{"kty": "XYZ", "kid": "rs1"},
	}})
	tests := []struct {
		name      string
		discovery string // overrides the discovery issuer
		jwks      http.HandlerFunc
		want      string
	}{
		{"issuer mismatch", "https://other.example/", nil, "they must match exactly"},
		{"JWKS 500", "", status(500, "oops"), "HTTP 500"},
		{"JWKS invalid JSON", "", status(200, `{"keys":[`), "not valid JSON"},
		{"JWKS huge", "", status(200, `{"keys":[],"pad":"`+strings.Repeat("x", maxJWKSBody)+`"}`), "larger than"},
		{"JWKS without usable keys", "", func(w http.ResponseWriter, r *http.Request) { w.Write(unusable) }, "no usable signature key"},
		{"JWKS slow", "", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newStubIdP(t)
			idp.publish(rs)
			idp.discoveryIssuer = tt.discovery
			idp.setJWKSHandler(tt.jwks)
			clock := newFakeClock(time.Now())
			v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Timeout: 200 * time.Millisecond, Now: clock.Now,
				Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			tok := rs.sign(t, goodClaims(idp.Issuer, clock.Now()), "JWT", nil)
			start := time.Now()
			for range 3 {
				_, err = v.Validate(context.Background(), tok)
				if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Validate: %v; want ErrUnavailable with %q", err, tt.want)
				}
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("three validations took %v", el)
			}
			if n := idp.discoveryReqs.Load() + idp.jwksReqs.Load(); n > 2 {
				t.Errorf("%d requests for three validations within the retry backoff", n)
			}
			clock.Advance(jwksRetryAfterFailure)
			v.Validate(context.Background(), tok)
			if n := idp.discoveryReqs.Load(); n != 2 {
				t.Errorf("discovery requests after the backoff = %d, want 2", n)
			}
			if err := v.Refresh(context.Background()); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Refresh: %v", err)
			}
		})
	}
}

// A token naming a kid that the JWKS does not hold: one refetch at once,
// then at most one per Refetch interval, however many such tokens come.
func TestJWTUnknownKidRefetchRateLimited(t *testing.T) {
	idp := newStubIdP(t)
	known := newTestKey(t, jose.RS256, "known", 0)
	rotated := newTestKey(t, jose.RS256, "rotated", 1)
	idp.publish(known)
	start := time.Now().Truncate(time.Second)
	clock := newFakeClock(start)
	v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := goodClaims(idp.Issuer, start.Add(-time.Minute)) // issued before any fetch
	if _, err := v.Validate(ctx, known.sign(t, old, "JWT", nil)); err != nil {
		t.Fatal(err)
	}
	if n := idp.jwksReqs.Load(); n != 1 {
		t.Fatalf("JWKS requests = %d, want 1", n)
	}

	// Forged kids: the first one is refetched, later ones within 30 s not.
	forged := &testKey{alg: jose.RS256, kid: "forged", priv: rotated.priv}
	for i := range 20 {
		_, err := v.Validate(ctx, forged.sign(t, old, "JWT", nil))
		if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), `unknown signing key: kid "forged"`) {
			t.Fatalf("forged kid #%d: %v", i, err)
		}
	}
	if n := idp.jwksReqs.Load(); n != 2 {
		t.Fatalf("JWKS requests after 20 forged kids = %d, want 2", n)
	}

	// Forged kids without "iat", or with an "iat" after the last fetch
	// (the forger chooses it): refused as invalid too, since the set was
	// fetched at most 30 s ago, so they are counted and cached.
	clock.Advance(10 * time.Second)
	for _, c := range []map[string]any{goodClaims(idp.Issuer, clock.Now()), func() map[string]any {
		c := goodClaims(idp.Issuer, clock.Now())
		delete(c, "iat")
		return c
	}()} {
		_, err := v.Validate(ctx, forged.sign(t, c, "JWT", nil))
		if !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `unknown signing key: kid "forged"`) {
			t.Fatalf("forged kid, iat %v: %v", c["iat"], err)
		}
	}
	if n := idp.jwksReqs.Load(); n != 2 {
		t.Fatalf("JWKS requests = %d, want 2", n)
	}

	// The documented cost: a key the provider starts signing with within
	// the refetch interval after an unknown-kid refetch is refused until
	// the next refetch.
	idp.publish(rotated)
	fresh := rotated.sign(t, goodClaims(idp.Issuer, clock.Now()), "JWT", nil)
	_, err = v.Validate(ctx, fresh)
	if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), `unknown signing key: kid "rotated"`) {
		t.Fatalf("new kid within the interval: %v", err)
	}
	clock.Advance(DefaultJWKSRefetch)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Validate(ctx, fresh)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("new kid after the interval: %v", err)
		}
	}
	if n := idp.jwksReqs.Load(); n != 3 {
		t.Errorf("JWKS requests = %d, want 3 (one refetch for 50 concurrent validations)", n)
	}
}

// An unknown kid while the provider fails: ErrUnavailable (not counted,
// not cached), both at once and while refetching is rate-limited.
func TestJWTUnknownKidProviderDown(t *testing.T) {
	idp := newStubIdP(t)
	known := newTestKey(t, jose.RS256, "known", 0)
	idp.publish(known)
	clock := newFakeClock(time.Now().Truncate(time.Second))
	v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	idp.setJWKSHandler(status(503, ""))
	clock.Advance(time.Minute)
	other := &testKey{alg: jose.RS256, kid: "other", priv: newTestKey(t, jose.RS256, "", 1).priv}
	tok := other.sign(t, goodClaims(idp.Issuer, clock.Now()), "JWT", nil)
	for i, advance := range []time.Duration{0, 0, jwksRetryAfterFailure, 5 * time.Second} {
		clock.Advance(advance)
		_, err := v.Validate(ctx, tok)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("attempt %d: %v, want ErrUnavailable", i, err)
		}
	}
	if n := idp.jwksReqs.Load(); n != 2 {
		t.Errorf("JWKS requests = %d, want 2 (the refresh and one refetch)", n)
	}
	// The provider is back: after the interval the kid is looked up again
	// and, still unknown, refused as invalid.
	idp.setJWKSHandler(nil)
	clock.Advance(DefaultJWKSRefetch)
	if _, err := v.Validate(ctx, tok); !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("provider back: %v", err)
	}
}

// TestJWTAccessTokensOnly: ID tokens and tokens without access-token
// claims are refused, locally signed in the shapes real providers use.
func TestJWTAccessTokensOnly(t *testing.T) {
	idp := newStubIdP(t)
	rs := newTestKey(t, jose.RS256, "rs1", 0)
	idp.publish(rs)
	now := time.Now().Truncate(time.Second)
	v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Audiences: []string{"roundcube", "mailgate"}, Now: newFakeClock(now).Now})
	if err != nil {
		t.Fatal(err)
	}
	base := func(changes map[string]any) map[string]any {
		c := map[string]any{"iss": idp.Issuer, "sub": "u1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
			"email": "alice@example.test", "email_verified": true}
		for k, val := range changes {
			c[k] = val
		}
		return c
	}
	const idToken = "this is an OpenID ID token, not an access token"
	tests := []struct {
		name   string
		typ    string
		claims map[string]any
		want   string // "" = accepted
	}{
		{"Hydra access token", "JWT", base(map[string]any{"aud": []string{"mailgate"}, "client_id": "mailgate", "scp": []string{"openid", "email"}}), ""},
		{"Keycloak access token", "JWT", base(map[string]any{"aud": "account", "azp": "roundcube", "typ": "Bearer", "scope": "openid email", "sid": "s"}), ""},
		{"RFC 9068 at+jwt", "at+jwt", base(map[string]any{"aud": "mailgate", "client_id": "roundcube"}), ""},
		{"RFC 9068 application/AT+JWT", "application/AT+JWT", base(map[string]any{"aud": "mailgate", "client_id": "roundcube", "scope": "mail"}), ""},
		{"at+jwt without scope or client_id", "at+jwt", base(map[string]any{"aud": "mailgate"}), ""},
		{"no typ, scope", "", base(map[string]any{"aud": "mailgate", "scope": "mail"}), ""},

		{"Hydra ID token", "JWT", base(map[string]any{"aud": []string{"mailgate"}, "at_hash": "x", "sid": "s", "rat": 1, "auth_time": 1}), idToken + `: it carries "at_hash"`},
		{"ID token with nonce", "JWT", base(map[string]any{"aud": "roundcube", "nonce": "n", "azp": "roundcube"}), idToken + `: it carries "nonce"`},
		{"ID token with c_hash", "", base(map[string]any{"aud": "roundcube", "c_hash": "c"}), idToken + `: it carries "c_hash"`},
		{"Keycloak ID token", "JWT", base(map[string]any{"aud": "roundcube", "azp": "roundcube", "typ": "ID", "sid": "s"}), idToken + `: its payload typ is "ID"`},
		{"ID token claims in an at+jwt", "at+jwt", base(map[string]any{"aud": "mailgate", "client_id": "x", "nonce": "n"}), idToken},
		{"Keycloak refresh token", "JWT", base(map[string]any{"aud": "mailgate", "typ": "Refresh", "scope": "openid"}), `not an access token: its payload typ is "Refresh"`},
		{"bare ID token (no markers at all)", "JWT", base(map[string]any{"aud": "roundcube"}), `none of the access-token claims "scope", "scp" or "client_id"`},
		{"bare, no typ", "", base(map[string]any{"aud": "roundcube", "azp": "roundcube"}), "none of the access-token claims"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Validate(context.Background(), rs.sign(t, tt.claims, tt.typ, nil))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v; want ErrInvalidCredentials with %q", err, tt.want)
			}
		})
	}
}

// Stale keys are refreshed in the background while validations go on with
// the cached ones; a failed refresh keeps them.
func TestJWTBackgroundRefresh(t *testing.T) {
	idp := newStubIdP(t)
	k := newTestKey(t, jose.ES256, "k1", 0)
	idp.publish(k)
	clock := newFakeClock(time.Now())
	v, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok := k.sign(t, goodClaims(idp.Issuer, clock.Now()), "JWT", nil)
	for range 5 {
		if _, err := v.Validate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := idp.jwksReqs.Load(); n != 1 {
		t.Fatalf("JWKS requests = %d, want 1", n)
	}
	idp.setJWKSHandler(status(503, ""))
	clock.Advance(DefaultJWKSRefresh)
	if _, err := v.Validate(context.Background(), tok); err != nil {
		t.Fatalf("with stale keys: %v", err)
	}
	waitFor(t, "a background JWKS refresh", func() bool { return idp.jwksReqs.Load() == 2 })
	waitFor(t, "the refresh to end", func() bool {
		v.keys.mu.Lock()
		defer v.keys.mu.Unlock()
		return !v.keys.bgPending
	})
	if _, err := v.Validate(context.Background(), tok); err != nil {
		t.Fatalf("after a failed refresh: %v", err)
	}
	if v.keys.lastErr == nil {
		t.Error("the failed refresh left no error")
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJWTFixedJWKSURL(t *testing.T) {
	idp := newStubIdP(t)
	k := newTestKey(t, jose.EdDSA, "e", 0)
	idp.publish(k)
	v, err := NewJWTValidator(JWTOptions{Issuer: "https://issuer.example/", JWKSURL: idp.srv.URL + "/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), k.sign(t, goodClaims("https://issuer.example/", time.Now()), "", nil)); err != nil {
		t.Fatal(err)
	}
	if idp.discoveryReqs.Load() != 0 {
		t.Error("discovery was fetched although JWKSURL is set")
	}
}

func TestKeyFitsAlg(t *testing.T) {
	rs := newTestKey(t, jose.RS256, "", 0).priv.Public()
	es := newTestKey(t, jose.ES384, "", 0).priv.Public()
	for _, tt := range []struct {
		key  any
		alg  string
		want bool
	}{
		{rs, "RS256", true}, {rs, "PS512", true}, {rs, "ES256", false}, {rs, "HS256", false},
		{es, "ES384", true}, {es, "ES256", false}, {es, "EdDSA", false},
		{big.NewInt(1), "RS256", false},
	} {
		if got := keyFitsAlg(tt.key, tt.alg); got != tt.want {
			t.Errorf("keyFitsAlg(%T, %s) = %v", tt.key, tt.alg, got)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
