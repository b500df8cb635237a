package demo

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// Audience is the aud claim of the tokens the issuer mints.
	Audience = "mailgate"
	// ClientID is the client_id claim of the tokens the issuer mints.
	ClientID = "mailgate-demo"
	// TokenScope is the scope claim of the tokens the issuer mints.
	TokenScope = "openid email"

	issuerReadHeaderTimeout = 10 * time.Second
	maxFormBytes            = 64 << 10
)

// ErrInvalidToken means a token was not minted by this issuer, was altered,
// or has expired.
var ErrInvalidToken = errors.New("demo: invalid token")

var b64 = base64.RawURLEncoding

// Issuer is a minimal OpenID provider: discovery, JWKS, userinfo and RFC 7662
// introspection, for RS256-signed JWT access tokens it mints itself
// (RFC 9068 "at+jwt"). It has no authorization or token endpoint and does
// not authenticate introspection clients.
type Issuer struct {
	url  string
	key  *rsa.PrivateKey
	kid  string
	srv  *http.Server
	done chan struct{} // closed when Serve returns
	once sync.Once
}

// tokenClaims are the claims of a minted access token.
type tokenClaims struct {
	Issuer        string `json:"iss"`
	Subject       string `json:"sub"`
	Audience      string `json:"aud"`
	ClientID      string `json:"client_id"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Scope         string `json:"scope"`
	IssuedAt      int64  `json:"iat"`
	Expires       int64  `json:"exp"`
	ID            string `json:"jti"`
}

// StartIssuer serves the issuer on ln, over plain HTTP, until Close; it takes
// ownership of ln. The issuer URL is "http://" + ln.Addr().
func StartIssuer(ln net.Listener) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: issuer key: %w", err)
	}
	is := &Issuer{
		url:  "http://" + ln.Addr().String(),
		key:  key,
		kid:  thumbprint(&key.PublicKey),
		done: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.handleDiscovery)
	mux.HandleFunc("GET /jwks.json", is.handleJWKS)
	mux.HandleFunc("GET /userinfo", is.handleUserinfo)
	mux.HandleFunc("POST /userinfo", is.handleUserinfo)
	mux.HandleFunc("POST /introspect", is.handleIntrospect)
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: issuerReadHeaderTimeout}
	go func() {
		defer close(is.done)
		is.srv.Serve(ln)
	}()
	return is, nil
}

// URL is the issuer identifier, without a trailing slash.
func (is *Issuer) URL() string { return is.url }

// Close stops the issuer and closes all connections. It is safe to call more
// than once.
func (is *Issuer) Close() error {
	var err error
	is.once.Do(func() {
		err = is.srv.Close()
		<-is.done
	})
	return err
}

// MintToken returns a signed JWT access token for email, valid for ttl.
func (is *Issuer) MintToken(email string, ttl time.Duration) (string, error) {
	if email == "" || ttl <= 0 {
		return "", errors.New("demo: mint token: email and a positive ttl required")
	}
	now := time.Now()
	return is.sign(tokenClaims{
		Issuer:        is.url,
		Subject:       subject(email),
		Audience:      Audience,
		ClientID:      ClientID,
		Email:         email,
		EmailVerified: true,
		Scope:         TokenScope,
		IssuedAt:      now.Unix(),
		Expires:       now.Add(ttl).Unix(),
		ID:            rand.Text(),
	})
}

func (is *Issuer) sign(c tokenClaims) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "kid": is.kid, "typ": "at+jwt"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, is.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("demo: sign token: %w", err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// verify checks a token's signature, issuer and expiry.
func (is *Issuer) verify(token string) (*tokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, ErrInvalidToken
	}
	var header struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "RS256" || header.Kid != is.kid {
		return nil, ErrInvalidToken
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, ErrInvalidToken
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&is.key.PublicKey, crypto.SHA256, digest[:], sig) != nil {
		return nil, ErrInvalidToken
	}
	var c tokenClaims
	if err := decodeSegment(parts[1], &c); err != nil || c.Issuer != is.url || time.Now().Unix() >= c.Expires {
		return nil, ErrInvalidToken
	}
	return &c, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := b64.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

func (is *Issuer) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                 is.url,
		"jwks_uri":               is.url + "/jwks.json",
		"userinfo_endpoint":      is.url + "/userinfo",
		"introspection_endpoint": is.url + "/introspect",
		"introspection_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                      []string{"openid", "email"},
		"claims_supported":                      []string{"sub", "email", "email_verified"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (is *Issuer) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	pub := &is.key.PublicKey
	writeJSON(w, map[string]any{"keys": []map[string]string{{
		"kty": "RSA",
		"use": "sig",
		"alg": "RS256",
		"kid": is.kid,
		"n":   b64.EncodeToString(pub.N.Bytes()),
		"e":   b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// handleUserinfo answers a valid bearer token with the user's claims, and
// anything else with 401 (RFC 6750 section 3).
func (is *Issuer) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailgate-demo"`)
		http.Error(w, "bearer token required", http.StatusUnauthorized)
		return
	}
	c, err := is.verify(strings.TrimSpace(token))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailgate-demo", error="invalid_token"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, map[string]any{"sub": c.Subject, "email": c.Email, "email_verified": c.EmailVerified})
}

// handleIntrospect implements RFC 7662. Client credentials are not checked.
func (is *Issuer) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c, err := is.verify(r.PostForm.Get("token"))
	if err != nil {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	writeJSON(w, map[string]any{
		"active":         true,
		"token_type":     "Bearer",
		"iss":            c.Issuer,
		"sub":            c.Subject,
		"aud":            c.Audience,
		"client_id":      c.ClientID,
		"email":          c.Email,
		"email_verified": c.EmailVerified,
		"scope":          c.Scope,
		"iat":            c.IssuedAt,
		"exp":            c.Expires,
		"jti":            c.ID,
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// subject derives a stable, opaque sub claim from an address.
func subject(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return hex.EncodeToString(sum[:8])
}

// thumbprint is the RFC 7638 JWK thumbprint of an RSA key, used as its kid.
func thumbprint(pub *rsa.PublicKey) string {
	// Members in lexicographic order, no whitespace.
	jwk := fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`,
		b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()), b64.EncodeToString(pub.N.Bytes()))
	sum := sha256.Sum256([]byte(jwk))
	return b64.EncodeToString(sum[:])
}
