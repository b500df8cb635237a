// Package auth decides who a client is: it decodes the SASL mechanisms that
// mailgate accepts (XOAUTH2, OAUTHBEARER, and PLAIN for the backend leg),
// validates bearer tokens with the identity provider, applies the identity
// policy that turns a token into a mailbox address, and throttles failures.
//
// The package is protocol-neutral: IMAP and SMTP code in package proxy frame
// the SASL exchange (base64, "+ " or "334 ", "*" cancel) and map the sentinel
// errors below to protocol replies in one place each.
//
// Token validation (one Validator per oauth2.mode):
//
//   - UserinfoValidator: GET the OIDC userinfo endpoint with the token.
//   - IntrospectionValidator: RFC 7662 introspection, "active" must be true.
//   - JWTValidator: local check of JWT access tokens with the issuer's JWKS
//     (OIDC discovery, background refresh, rate-limited refetch on an
//     unknown kid). A revoked JWT stays valid until its exp: see its doc.
//   - AutoValidator: the issuer's JWTs locally, other tokens by
//     introspection or userinfo.
//
// Cache puts any of them behind a SHA-256-keyed cache with singleflight and
// a bound on concurrent provider calls; TokenAuthenticator applies the
// identity Policy; Throttled applies a Throttle (per-address failure delays
// and blocks) around token logins, and Throttle.Begin serialises and delays
// password attempts per user; Explain says why a token is accepted or
// refused ("mailgate token").
//
// References: RFC 4422 (SASL), RFC 4616 (PLAIN), RFC 7628 (OAUTHBEARER),
// Google's XOAUTH2 protocol, RFC 7662 (token introspection), OpenID Connect
// Core 1.0 §5.3 (userinfo), OpenID Connect Discovery 1.0, RFC 7515/7517/7519
// (JWS, JWK, JWT), RFC 9068 (JWT access tokens).
package auth

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Callers test them with errors.Is; the protocols map them to
// replies: ErrInvalidCredentials -> IMAP NO [AUTHENTICATIONFAILED] / SMTP 535 5.7.8,
// ErrUnavailable -> IMAP NO [UNAVAILABLE] / SMTP 454 4.7.0,
// ErrMalformed -> IMAP BAD / SMTP 501 5.5.2, ErrCanceled -> IMAP BAD / SMTP 501.
var (
	// ErrInvalidCredentials: the token (or password) was refused, expired, or
	// names another user. The client should get a fresh token.
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrUnavailable: the provider could not give an answer (down, slow,
	// 5xx, garbage). Temporary: the client should retry later with the same token.
	ErrUnavailable = errors.New("auth: provider unavailable")
	// ErrMalformed: the SASL message does not follow the mechanism's syntax.
	ErrMalformed = errors.New("auth: malformed SASL message")
	// ErrCanceled: the client sent "*" to abort the exchange.
	ErrCanceled = errors.New("auth: exchange canceled by client")
	// ErrThrottled: too many failures from this client or for this user;
	// the caller answers like ErrInvalidCredentials after a delay, or closes.
	ErrThrottled = errors.New("auth: too many failures")
)

// Credentials is what a client presented, decoded from a SASL exchange.
// Nothing here is trusted: User is only a claim.
type Credentials struct {
	// Mechanism is the upper-case SASL mechanism name ("XOAUTH2", "OAUTHBEARER", "PLAIN").
	Mechanism string
	// User is the user name the client claims (XOAUTH2 user=, OAUTHBEARER a=,
	// PLAIN authcid). May be empty for OAUTHBEARER.
	User string
	// Token is the bearer token (OAuth mechanisms). Never log it.
	Token string
	// Password is the password (PLAIN). Never log it.
	Password string
	// RemoteAddr is the client's address ("ip:port"), for throttling and logs.
	RemoteAddr string
	// ConnID is the id of the client's connection in mailgate's log ("":
	// none), so that a refusal's log line can be matched with its login.
	ConnID string
}

// Identity is who the client is after a successful authentication.
type Identity struct {
	// User is the mailbox address, its ASCII letters lower-cased, and safe
	// to put on a protocol line (see SafeMailbox and ParseMailbox).
	User string
	// Mechanism that was used.
	Mechanism string
	// Expiry is when the token stops being valid (zero if unknown).
	Expiry time.Time
	// Source names the validator that vouched for the token ("userinfo",
	// "introspection", "jwt", "password"), for logs and metrics.
	Source string
}

// Authenticator verifies credentials and returns the identity they prove.
// Implementations fail closed: any doubt is an error wrapping
// ErrInvalidCredentials or ErrUnavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, c Credentials) (Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	return f(ctx, c)
}

var _ Authenticator = AuthenticatorFunc(nil)
