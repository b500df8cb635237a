package auth

import (
	"context"
	"fmt"
)

// Source names returned by SourceFor and put in Identity.Source.
const (
	SourceUserinfo      = "userinfo"
	SourceIntrospection = "introspection"
	SourceJWT           = "jwt"
)

// AutoValidator implements oauth2.mode auto: a token that parses as a JWT
// whose (unverified) "iss" is JWT's issuer is validated locally by JWT, and
// then only by JWT (a bad signature is not retried elsewhere); any other
// token (opaque, a JWE, another issuer's JWT) goes to Fallback, an
// introspection or userinfo validator.
type AutoValidator struct {
	// JWT validates the issuer's JWTs. Required.
	JWT *JWTValidator
	// Fallback validates everything else. Nil: other tokens are refused.
	Fallback Validator
}

var _ Validator = AutoValidator{}

// Validate implements Validator.
func (a AutoValidator) Validate(ctx context.Context, token string) (Claims, error) {
	v, _ := a.route(token)
	if v == nil {
		return nil, fmt.Errorf("%w: auto: not a JWT of the configured issuer, and no introspection or userinfo endpoint for other tokens", ErrInvalidCredentials)
	}
	return v.Validate(ctx, token)
}

// SourceFor names the validator that decides about token.
func (a AutoValidator) SourceFor(token string) string {
	_, src := a.route(token)
	return src
}

func (a AutoValidator) route(token string) (Validator, string) {
	if a.JWT != nil && looksLikeJWT(token) {
		if t, err := parseJWT(token); err == nil {
			if iss, _ := t.Claims.String("iss"); iss == a.JWT.Issuer() {
				return a.JWT, SourceJWT
			}
		}
	}
	if a.Fallback == nil {
		return nil, "none"
	}
	return a.Fallback, sourceOf(a.Fallback, token)
}

// sourcer is implemented by validators that can name who decides about a
// token (all of this package's).
type sourcer interface {
	SourceFor(token string) string
}

// sourceOf returns v's SourceFor(token), or "" when v does not say.
func sourceOf(v Validator, token string) string {
	if s, ok := v.(sourcer); ok {
		return s.SourceFor(token)
	}
	return ""
}

// SourceFor returns SourceUserinfo.
func (UserinfoValidator) SourceFor(string) string { return SourceUserinfo }

// SourceFor returns SourceIntrospection.
func (IntrospectionValidator) SourceFor(string) string { return SourceIntrospection }

// SourceFor returns SourceJWT.
func (*JWTValidator) SourceFor(string) string { return SourceJWT }
