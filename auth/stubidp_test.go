package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// stubIdP is an httptest OpenID provider serving only discovery and a JWKS,
// for the fault and crypto cases a real provider cannot produce. It counts
// requests.
type stubIdP struct {
	srv    *httptest.Server
	Issuer string

	mu              sync.Mutex
	keys            []jose.JSONWebKey // published
	discoveryIssuer string            // "" = Issuer
	jwksHandler     http.HandlerFunc  // nil = serve keys
	discoveryReqs   atomic.Int32
	jwksReqs        atomic.Int32
}

func newStubIdP(t testing.TB) *stubIdP {
	s := &stubIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		s.discoveryReqs.Add(1)
		s.mu.Lock()
		iss := s.discoveryIssuer
		s.mu.Unlock()
		if iss == "" {
			iss = s.Issuer
		}
		json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": s.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		s.jwksReqs.Add(1)
		s.mu.Lock()
		h, keys := s.jwksHandler, append([]jose.JSONWebKey(nil), s.keys...)
		s.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	})
	s.srv = httptest.NewServer(mux)
	s.Issuer = s.srv.URL + "/"
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stubIdP) publish(keys ...*testKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.keys = append(s.keys, k.public())
	}
}

func (s *stubIdP) setJWKSHandler(h http.HandlerFunc) {
	s.mu.Lock()
	s.jwksHandler = h
	s.mu.Unlock()
}

// testKey is a signing key.
type testKey struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv crypto.Signer // nil for HMAC
	hmac []byte
}

func (k *testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

var (
	rsaOnce sync.Once
	rsaKeys [3]*rsa.PrivateKey
)

// newTestKey makes a key for alg. RSA keys are generated once per test
// binary (three of them, by index) because generation is slow.
func newTestKey(t testing.TB, alg jose.SignatureAlgorithm, kid string, rsaIndex int) *testKey {
	t.Helper()
	k := &testKey{alg: alg, kid: kid}
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		rsaOnce.Do(func() {
			for i := range rsaKeys {
				if rsaKeys[i], err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
					panic(err)
				}
			}
		})
		k.priv = rsaKeys[rsaIndex]
	case jose.ES256:
		k.priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		k.priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		k.priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, k.priv, err = ed25519.GenerateKey(rand.Reader)
	case jose.HS256, jose.HS384, jose.HS512:
		k.hmac = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	default:
		t.Fatalf("newTestKey: alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign makes a compact JWS of claims with header typ (omitted when "")
// and extra header fields.
func (k *testKey) sign(t testing.TB, claims map[string]any, typ string, extra map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	for name, v := range extra {
		opts = opts.WithHeader(jose.HeaderKey(name), v)
	}
	var key any = k.hmac
	if k.priv != nil {
		key = jose.JSONWebKey{Key: k.priv, KeyID: k.kid}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawJWT assembles a token from a header and claims with any signature.
func rawJWT(header, claims map[string]any, sig string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

// goodClaims are valid claims of iss for alice, expiring in an hour from now.
func goodClaims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss": iss, "sub": "alice", "aud": []string{"mailgate"}, "email": "alice@example.test",
		"email_verified": true, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"scope": "openid email",
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.Set(t)
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) Set(t time.Time)         { c.t.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }
