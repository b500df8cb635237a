package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// maxJWTBytes bounds a bearer token that is parsed as a JWT. Real access
// tokens are a few KiB (Entra tokens with many groups reach ~8 KiB).
const maxJWTBytes = 32 << 10

// jwtHeader is the JOSE header of a compact JWS, as far as mailgate reads it.
type jwtHeader struct {
	Alg string
	Kid string
	Typ string
	// Crit is true when the header has a "crit" parameter (RFC 7515
	// §4.1.11); mailgate supports no critical extension.
	Crit bool
	// Fields is the whole decoded header, for "mailgate token".
	Fields map[string]any
}

// unverifiedJWT is a compact JWS split and decoded without checking its
// signature. Nothing in it is trusted: it routes tokens (AutoValidator),
// caps cache lifetimes, and explains refusals.
type unverifiedJWT struct {
	Header jwtHeader
	Claims Claims
}

// parseJWT splits a compact JWS (header.payload.signature, base64url
// without padding) and decodes the header and the payload, both of which
// must be JSON objects. It checks syntax only. Errors do not contain the token.
func parseJWT(token string) (*unverifiedJWT, error) {
	if len(token) > maxJWTBytes {
		return nil, fmt.Errorf("longer than %d bytes", maxJWTBytes)
	}
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, fmt.Errorf("not three dot-separated parts")
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return nil, fmt.Errorf("not three dot-separated parts")
	}
	if h == "" || p == "" || sig == "" {
		return nil, fmt.Errorf("empty header, payload or signature")
	}
	hb, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("header is not base64url")
	}
	pb, err := base64.RawURLEncoding.Strict().DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("payload is not base64url")
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(sig); err != nil {
		return nil, fmt.Errorf("signature is not base64url")
	}
	var fields map[string]any
	if err := json.Unmarshal(hb, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("header is not a JSON object")
	}
	var claims Claims
	if err := json.Unmarshal(pb, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("payload is not a JSON object (encrypted or nested token?)")
	}
	hdr := jwtHeader{Fields: fields}
	if hdr.Alg, ok = fields["alg"].(string); !ok || hdr.Alg == "" {
		return nil, fmt.Errorf(`header has no "alg"`)
	}
	if v, present := fields["kid"]; present {
		if hdr.Kid, ok = v.(string); !ok {
			return nil, fmt.Errorf(`header "kid" is not a string`)
		}
	}
	if v, present := fields["typ"]; present {
		if hdr.Typ, ok = v.(string); !ok {
			return nil, fmt.Errorf(`header "typ" is not a string`)
		}
	}
	_, hdr.Crit = fields["crit"]
	return &unverifiedJWT{Header: hdr, Claims: claims}, nil
}

// looksLikeJWT is a cheap test: three non-empty dot-separated parts, the
// first starting with the base64url of `{"` ("eyJ"). It avoids decoding
// opaque tokens that cannot be JWTs.
func looksLikeJWT(token string) bool {
	return strings.HasPrefix(token, "eyJ") && strings.Count(token, ".") == 2 && len(token) <= maxJWTBytes
}
