package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestExplain(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer opaque-ok-0123456789":
			w.Write([]byte(`{"email":"Bob@Example.test","email_verified":false,"sub":"b"}`))
		case "Bearer opaque-down-0123456789":
			w.WriteHeader(502)
		default:
			w.WriteHeader(401)
		}
	}))
	defer srv.Close()
	ui := NewCache(UserinfoValidator{URL: srv.URL}, CacheOptions{TTL: time.Hour})
	expired := rawJWT(map[string]any{"alg": "RS256", "kid": "k"},
		map[string]any{"iss": "https://idp/", "exp": time.Now().Add(-time.Hour).Unix(), "email": "x@y"}, "c2ln")
	live := rawJWT(map[string]any{"alg": "RS256", "kid": "k"},
		map[string]any{"iss": "https://idp/", "exp": time.Now().Add(time.Hour).Unix(), "email": "x@y"}, "c2ln")

	tests := []struct {
		name   string
		policy Policy
		token  string
		kind   error
		reason string
		hint   string
		used   string // fmt of Used names
	}{
		{"accepted", Policy{}, "opaque-ok-0123456789", nil, "", "", "[email sub]"},
		{"email not verified", Policy{RequireEmailVerified: true}, "opaque-ok-0123456789", ErrInvalidCredentials,
			"email not verified (email_verified=false)", "", "[email email_verified sub]"},
		{"domain", Policy{AllowedDomains: []string{"example.org"}}, "opaque-ok-0123456789", ErrInvalidCredentials,
			`domain "example.test" not allowed`, "", "[email sub]"},
		{"missing claim", Policy{UsernameClaim: "preferred_username"}, "opaque-ok-0123456789", ErrInvalidCredentials,
			`claim "preferred_username" missing`, "", "[preferred_username sub]"},
		{"scope", Policy{RequiredScopes: []string{"mail"}}, "opaque-ok-0123456789", ErrInvalidCredentials,
			"scope not granted: mail", "", "[email scope sub]"},
		{"refused opaque", Policy{}, "opaque-bad-0123456789", ErrInvalidCredentials, "userinfo: HTTP 401", "", "[email]"},
		{"unavailable", Policy{}, "opaque-down-0123456789", ErrUnavailable, "userinfo: HTTP 502", "", "[email]"},
		{"expired JWT refused by userinfo", Policy{}, expired, ErrInvalidCredentials, "userinfo: HTTP 401", "in the past", "[email iss exp]"},
		{"live JWT refused by userinfo", Policy{}, live, ErrInvalidCredentials, "userinfo: HTTP 401", "may have revoked it", "[email iss exp]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Explain(context.Background(), ui, tt.policy, tt.token)
			if tt.kind == nil {
				if r.Err != nil || r.Identity != "bob@example.test" || r.Reason != "" {
					t.Fatalf("report %+v", r)
				}
			} else if !errors.Is(r.Err, tt.kind) || r.Reason != tt.reason || r.Identity != "" {
				t.Fatalf("report err %v reason %q identity %q; want %v %q", r.Err, r.Reason, r.Identity, tt.kind, tt.reason)
			}
			if r.Source != SourceUserinfo || len(r.TokenSHA256) != 16 {
				t.Errorf("source %q, hash %q", r.Source, r.TokenSHA256)
			}
			if tt.hint != "" && !strings.Contains(fmt.Sprint(r.Hints), tt.hint) {
				t.Errorf("hints %q lack %q", r.Hints, tt.hint)
			}
			var names []string
			for _, u := range r.Used {
				names = append(names, u.Name)
				if u.Verified != (r.Claims != nil && u.Present) {
					t.Errorf("claim %s verified=%v", u.Name, u.Verified)
				}
			}
			if got := fmt.Sprint(names); got != tt.used {
				t.Errorf("used %s, want %s", got, tt.used)
			}
			if strings.Contains(fmt.Sprintf("%+v", r), tt.token) {
				t.Error("the report holds the token")
			}
		})
	}
	if st := ui.Stats(); st.ProviderCalls != 0 {
		t.Errorf("Explain went through the cache: %+v", st)
	}
}

// "mailgate token" says plainly why an ID token is refused: in jwt mode by
// the validator, elsewhere as a hint next to the provider's refusal.
func TestExplainIDToken(t *testing.T) {
	idp := newStubIdP(t)
	k := newTestKey(t, jose.ES256, "k", 0)
	idp.publish(k)
	jwtV, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer, Audiences: []string{"roundcube"}})
	if err != nil {
		t.Fatal(err)
	}
	claims := goodClaims(idp.Issuer, time.Now())
	delete(claims, "scope")
	claims["aud"], claims["nonce"], claims["at_hash"] = "roundcube", "n-0S6_WzA2Mj", "77QmUPtjPfzWtF2AnpK9RQ"
	tok := k.sign(t, claims, "JWT", nil)

	r := Explain(context.Background(), jwtV, Policy{}, tok)
	want := `jwt: this is an OpenID ID token, not an access token: it carries "nonce", a claim of ID tokens only; ` +
		"the client must send the access_token of the token response, not the id_token"
	if !errors.Is(r.Err, ErrInvalidCredentials) || r.Reason != want || r.Identity != "" {
		t.Errorf("jwt: err %v\nreason %q\nwant   %q", r.Err, r.Reason, want)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }))
	defer srv.Close()
	r = Explain(context.Background(), UserinfoValidator{URL: srv.URL}, Policy{}, tok)
	if !strings.Contains(fmt.Sprint(r.Hints), "looks like an OpenID ID token") {
		t.Errorf("userinfo: hints %q", r.Hints)
	}
}

func TestAutoValidatorRouting(t *testing.T) {
	idp := newStubIdP(t)
	k := newTestKey(t, jose.ES256, "k", 0)
	idp.publish(k)
	jwtV, err := NewJWTValidator(JWTOptions{Issuer: idp.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	fallback := &countingValidator{answer: func(string) (Claims, error) { return Claims{"email": "fallback@x"}, nil }}
	ours := k.sign(t, goodClaims(idp.Issuer, time.Now()), "JWT", nil)
	forged := (&testKey{alg: jose.ES256, kid: "k", priv: newTestKey(t, jose.ES256, "k", 0).priv}).sign(t, goodClaims(idp.Issuer, time.Now()), "JWT", nil)
	foreign := k.sign(t, goodClaims("https://other.example/", time.Now()), "JWT", nil)
	for _, tt := range []struct {
		name     string
		v        AutoValidator
		token    string
		source   string
		email    string
		refusal  string
		fallback int32
	}{
		{"our JWT: local", AutoValidator{JWT: jwtV, Fallback: fallback}, ours, SourceJWT, "alice@example.test", "", 0},
		{"our issuer, bad signature: no fallback", AutoValidator{JWT: jwtV, Fallback: fallback}, forged, SourceJWT, "", "signature invalid", 0},
		{"other issuer: fallback", AutoValidator{JWT: jwtV, Fallback: fallback}, foreign, "", "fallback@x", "", 1},
		{"opaque: fallback", AutoValidator{JWT: jwtV, Fallback: fallback}, "ory_at_x", "", "fallback@x", "", 1},
		{"opaque without fallback", AutoValidator{JWT: jwtV}, "ory_at_x", "none", "", "not a JWT of the configured issuer", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := fallback.calls.Load()
			c, err := tt.v.Validate(context.Background(), tt.token)
			if got := tt.v.SourceFor(tt.token); got != tt.source {
				t.Errorf("SourceFor = %q, want %q", got, tt.source)
			}
			if n := fallback.calls.Load() - before; n != tt.fallback {
				t.Errorf("fallback calls %d, want %d", n, tt.fallback)
			}
			if tt.refusal != "" {
				if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), tt.refusal) {
					t.Errorf("err %v, want %q", err, tt.refusal)
				}
				return
			}
			if err != nil || c["email"] != tt.email {
				t.Errorf("claims %v, err %v", c, err)
			}
		})
	}
}
