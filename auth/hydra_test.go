package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// hydraToken describes a token minted by Hydra for the mode matrix.
type hydraToken struct {
	name  string
	email string
	opts  testenv.TokenOptions
}

// mintAll mints the tokens and returns them by name. One at a time: Hydra
// with its in-memory SQLite fails concurrent flows ("Unable to serialize
// access due to a concurrent update").
func mintAll(t *testing.T, h *testenv.Hydra, specs []hydraToken) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range specs {
		tok, err := h.Mint(context.Background(), s.email, s.opts)
		if err != nil {
			t.Fatalf("mint %s: %v", s.name, err)
		}
		out[s.name] = tok.AccessToken
	}
	return out
}

// TestModesAgainstHydra runs every mode against every kind of token Hydra
// mints, through TokenAuthenticator with a strict policy.
func TestModesAgainstHydra(t *testing.T) {
	h := testenv.SharedHydra(t)
	notVerified := false
	tokens := mintAll(t, h, []hydraToken{
		{"jwt", "alice@example.test", testenv.TokenOptions{}},
		{"opaque", "alice@example.test", testenv.TokenOptions{Opaque: true}},
		{"jwt revoked", "alice@example.test", testenv.TokenOptions{Revoked: true}},
		{"opaque revoked", "alice@example.test", testenv.TokenOptions{Opaque: true, Revoked: true}},
		{"jwt expired", "alice@example.test", testenv.TokenOptions{Expired: true}},
		{"opaque expired", "alice@example.test", testenv.TokenOptions{Opaque: true, Expired: true}},
		{"jwt wrong audience", "alice@example.test", testenv.TokenOptions{Audience: []string{"other-app"}}},
		{"opaque wrong audience", "alice@example.test", testenv.TokenOptions{Opaque: true, Audience: []string{"other-app"}}},
		{"jwt no aud, our client", "alice@example.test", testenv.TokenOptions{NoAudience: true}},
		{"jwt no email", "alice@example.test", testenv.TokenOptions{OmitEmail: true}},
		{"opaque no email", "alice@example.test", testenv.TokenOptions{Opaque: true, OmitEmail: true}},
		{"jwt email not verified", "alice@example.test", testenv.TokenOptions{EmailVerified: &notVerified}},
		{"opaque email not verified", "alice@example.test", testenv.TokenOptions{Opaque: true, EmailVerified: &notVerified}},
		{"jwt domain not allowed", "mallory@evil.test", testenv.TokenOptions{}},
	})

	aud := []string{h.Audience}
	userinfo := UserinfoValidator{URL: h.UserinfoURL}
	intro := IntrospectionValidator{URL: h.IntrospectionURL, ClientID: h.ClientID, ClientSecret: h.ClientSecret, Audiences: aud}
	// A 1 ms skew: Hydra's "expired" tokens are only a second or two past exp.
	jwtV, err := NewJWTValidator(JWTOptions{Issuer: h.Issuer, Audiences: aud, Skew: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		name string
		v    Validator
	}{
		{"userinfo", userinfo},
		{"introspection", intro},
		{"jwt", jwtV},
		{"auto+introspection", AutoValidator{JWT: jwtV, Fallback: intro}},
		{"auto+userinfo", AutoValidator{JWT: jwtV, Fallback: userinfo}},
	}
	const (
		uiRefused    = "userinfo: HTTP 401"
		inactive     = "introspection: token not active"
		notJWT       = "jwt: not a JWT"
		expired      = "jwt: token expired at"
		wrongAudJWT  = `jwt: wrong audience: audience ["other-app"]`
		wrongAudIntr = `introspection: wrong audience: audience ["other-app"]`
		noEmail      = `claim "email" missing`
		unverified   = "email not verified (email_verified=false)"
		domain       = `domain "evil.test" not allowed`
	)
	// want[token][mode]: "ok <source>" or a substring of the refusal.
	// Columns: userinfo, introspection, jwt, auto+introspection, auto+userinfo.
	want := map[string][5]string{
		"jwt":    {"ok userinfo", "ok introspection", "ok jwt", "ok jwt", "ok jwt"},
		"opaque": {"ok userinfo", "ok introspection", notJWT, "ok introspection", "ok userinfo"},
		// The documented trade-off: a revoked JWT stays valid locally until exp.
		"jwt revoked":    {uiRefused, inactive, "ok jwt", "ok jwt", "ok jwt"},
		"opaque revoked": {uiRefused, inactive, notJWT, inactive, uiRefused},
		"jwt expired":    {uiRefused, inactive, expired, expired, expired},
		"opaque expired": {uiRefused, inactive, notJWT, inactive, uiRefused},
		// userinfo cannot tell who a token was issued to (documented).
		"jwt wrong audience":    {"ok userinfo", wrongAudIntr, wrongAudJWT, wrongAudJWT, wrongAudJWT},
		"opaque wrong audience": {"ok userinfo", wrongAudIntr, notJWT, wrongAudIntr, "ok userinfo"},
		// No aud, but client_id is mailgate's own client.
		"jwt no aud, our client":    {"ok userinfo", "ok introspection", "ok jwt", "ok jwt", "ok jwt"},
		"jwt no email":              {noEmail, noEmail, noEmail, noEmail, noEmail},
		"opaque no email":           {noEmail, noEmail, notJWT, noEmail, noEmail},
		"jwt email not verified":    {unverified, unverified, unverified, unverified, unverified},
		"opaque email not verified": {unverified, unverified, notJWT, unverified, unverified},
		"jwt domain not allowed":    {domain, domain, domain, domain, domain},
	}
	policy := Policy{RequireEmailVerified: true, AllowedDomains: []string{"example.test"}}
	for name, tok := range tokens {
		for i, m := range modes {
			t.Run(name+"/"+m.name, func(t *testing.T) {
				a := TokenAuthenticator{Validator: m.v, Policy: policy, Logger: discardLogger()}
				id, err := a.Authenticate(context.Background(), Credentials{Mechanism: MechOAUTHBEARER, Token: tok, RemoteAddr: "127.0.0.1:1"})
				w := want[name][i]
				if src, ok := strings.CutPrefix(w, "ok "); ok {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					if id.User != "alice@example.test" || id.Source != src {
						t.Errorf("identity %+v, want alice@example.test from %s", id, src)
					}
					// Userinfo has no exp; for a JWT it is read from the token.
					if opaqueUserinfo := strings.HasPrefix(name, "opaque") && src == SourceUserinfo; opaqueUserinfo != id.Expiry.IsZero() ||
						!opaqueUserinfo && id.Expiry.Before(time.Now()) {
						t.Errorf("expiry %v", id.Expiry)
					}
					return
				}
				if err == nil {
					t.Fatalf("accepted as %+v, want refusal with %q", id, w)
				}
				if !strings.Contains(err.Error(), w) || !isInvalid(err) {
					t.Errorf("error %q, want ErrInvalidCredentials with %q", err, w)
				}
			})
		}
	}
}

func isInvalid(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), ErrInvalidCredentials.Error())
}

// TestKeyRotationAgainstHydra: a token signed with a key added after the
// JWKS was cached is accepted (the unknown kid triggers one refetch), and
// tokens signed with the old key still are.
func TestKeyRotationAgainstHydra(t *testing.T) {
	h := testenv.StartHydra(t, testenv.HydraOptions{}) // rotation would disturb a shared Hydra
	v, err := NewJWTValidator(JWTOptions{Issuer: h.Issuer, Audiences: []string{h.Audience}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := h.MintToken(t, "alice@example.test", testenv.TokenOptions{})
	if _, err := v.Validate(ctx, before); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	kid := h.RotateSigningKey(t)
	after := h.MintToken(t, "alice@example.test", testenv.TokenOptions{})
	parsed, err := parseJWT(after)
	if err != nil || parsed.Header.Kid != kid {
		t.Fatalf("new token: kid %q, want %q (%v)", parsed.Header.Kid, kid, err)
	}
	c, err := v.Validate(ctx, after)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if e, _ := c.String("email"); e != "alice@example.test" {
		t.Errorf("email %q", e)
	}
	if _, err := v.Validate(ctx, before); err != nil {
		t.Errorf("old token after rotation: %v", err)
	}
}

// TestExplainAgainstHydra checks the reasons "mailgate token" prints.
func TestExplainAgainstHydra(t *testing.T) {
	h := testenv.SharedHydra(t)
	tokens := mintAll(t, h, []hydraToken{
		{"ok", "Alice@Example.test", testenv.TokenOptions{}},
		{"expired", "alice@example.test", testenv.TokenOptions{Expired: true}},
		{"revoked opaque", "alice@example.test", testenv.TokenOptions{Opaque: true, Revoked: true}},
		{"wrong audience", "alice@example.test", testenv.TokenOptions{Audience: []string{"other-app"}}},
	})
	jwtV, err := NewJWTValidator(JWTOptions{Issuer: h.Issuer, Audiences: []string{h.Audience}, Skew: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	intro := IntrospectionValidator{URL: h.IntrospectionURL, ClientID: h.ClientID, ClientSecret: h.ClientSecret}
	v := NewCache(AutoValidator{JWT: jwtV, Fallback: intro}, CacheOptions{TTL: time.Hour, NegativeTTL: time.Hour})
	policy := Policy{RequireEmailVerified: true}
	ctx := context.Background()

	r := Explain(ctx, v, policy, tokens["ok"])
	if r.Err != nil || r.Identity != "alice@example.test" || r.Source != SourceJWT || r.Format != "jwt" || r.Expiry.IsZero() {
		t.Errorf("ok: %+v", r)
	}
	if len(r.Used) < 2 || r.Used[0].Name != "email" || r.Used[0].Value != "Alice@Example.test" || !r.Used[0].Verified ||
		r.Used[1].Name != "email_verified" || r.Used[1].Value != true {
		t.Errorf("ok: used %+v", r.Used)
	}
	for name, want := range map[string]string{
		"expired":        "jwt: token expired at ",
		"revoked opaque": "introspection: token not active (revoked, expired or unknown)",
		"wrong audience": `jwt: wrong audience: audience ["other-app"] (client_id "`,
	} {
		r := Explain(ctx, v, policy, tokens[name])
		if r.Err == nil || !strings.HasPrefix(r.Reason, want) || r.Identity != "" {
			t.Errorf("%s: reason %q, want prefix %q", name, r.Reason, want)
		}
		if dump := fmt.Sprintf("%+v", r); strings.Contains(dump, tokens[name]) {
			t.Errorf("%s: the report holds the token", name)
		}
	}
	if st := v.Stats(); st.ProviderCalls != 0 {
		t.Errorf("Explain used the cache: %+v", st)
	}
}

// TestSecurityIDTokenRefusedInJWTMode: the OpenID ID token Hydra returns
// next to the access token (aud = the client, which audiences lists; at_hash,
// sid; header typ JWT, signed with a key of the same JWKS) is not a bearer
// credential. Before, jwt and auto modes accepted it. It is refused as
// invalid credentials: counted by the throttle and cached negatively.
func TestSecurityIDTokenRefusedInJWTMode(t *testing.T) {
	h := testenv.SharedHydra(t)
	tok, err := h.Mint(context.Background(), "alice@example.test", testenv.TokenOptions{})
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	if tok.IDToken == "" {
		t.Fatal("Hydra returned no id_token")
	}
	parsed, err := parseJWT(tok.IDToken)
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	aud, _ := parsed.Claims.Strings("aud")
	if !slices.Contains(aud, h.Audience) || parsed.Claims["email"] != "alice@example.test" {
		t.Fatalf("the id_token would not test the attack: aud %v, claims %v", aud, parsed.Claims)
	}

	jwtV, err := NewJWTValidator(JWTOptions{Issuer: h.Issuer, Audiences: []string{h.Audience}})
	if err != nil {
		t.Fatal(err)
	}
	intro := IntrospectionValidator{URL: h.IntrospectionURL, ClientID: h.ClientID, ClientSecret: h.ClientSecret}
	const ip = "192.0.2.44:1234"
	for _, m := range []struct {
		name string
		v    Validator
	}{
		{"jwt", jwtV},
		{"auto", AutoValidator{JWT: jwtV, Fallback: intro}},
	} {
		t.Run(m.name, func(t *testing.T) {
			cache := NewCache(m.v, CacheOptions{TTL: time.Hour, NegativeTTL: time.Hour})
			th := NewThrottle(ThrottleOptions{Logger: discardLogger()})
			a := Throttled{T: th, Next: TokenAuthenticator{Validator: cache, Policy: Policy{RequireEmailVerified: true}, Logger: discardLogger()}}
			for i := range 2 {
				id, err := a.Authenticate(context.Background(), Credentials{Mechanism: MechXOAUTH2, User: "alice@example.test", Token: tok.IDToken, RemoteAddr: ip})
				if !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "this is an OpenID ID token, not an access token") {
					t.Fatalf("attempt %d: %+v, %v; want an ID-token refusal", i, id, err)
				}
			}
			if st := cache.Stats(); st.NegativeHits != 1 || st.ProviderCalls != 1 {
				t.Errorf("not cached negatively: %+v", st)
			}
			if p := th.entries[th.ipGroup(ip)]; p == nil || p.score < 1.9 { // two failures, draining in real time
				t.Errorf("not counted for the address: %+v", p)
			}
			// The access token of the same response passes.
			id, err := a.Authenticate(context.Background(), Credentials{Mechanism: MechXOAUTH2, User: "alice@example.test", Token: tok.AccessToken, RemoteAddr: ip})
			if err != nil || id.User != "alice@example.test" || id.Source != SourceJWT {
				t.Errorf("access token: %+v, %v", id, err)
			}
		})
	}
	r := Explain(context.Background(), jwtV, Policy{}, tok.IDToken)
	if !strings.HasPrefix(r.Reason, "jwt: this is an OpenID ID token, not an access token: it carries ") {
		t.Errorf("Explain: %q", r.Reason)
	}
}
