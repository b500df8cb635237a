package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultJWTSkew is the clock skew allowed for exp, nbf and iat.
const DefaultJWTSkew = 30 * time.Second

// DefaultJWTAlgorithms are the signature algorithms JWTValidator accepts
// when JWTOptions.Algorithms is empty. "none" and the HMAC algorithms are
// never in it.
var DefaultJWTAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// hmacAlgorithms need JWTOptions.HMACSecret.
var hmacAlgorithms = []string{"HS256", "HS384", "HS512"}

// JWTOptions configures NewJWTValidator. Only Issuer is required.
type JWTOptions struct {
	// Issuer is the exact "iss" of accepted tokens and the base of OIDC
	// discovery (Issuer without a trailing "/" + "/.well-known/openid-configuration").
	// Discovery must name exactly this issuer. Required.
	Issuer string
	// Audiences lists the accepted audiences: a token passes if one of its
	// "aud" values, its "azp" or its "client_id" is listed (so both the
	// API audience of mail tokens and the mail clients' client ids work).
	//
	// Empty: the audience is not checked, so a token that the issuer minted
	// for any of its clients (another web application, say) opens the
	// mailbox. That is the userinfo mode's behaviour too, but for local
	// validation prefer listing the mail clients' client ids or the API
	// audience the provider puts in mail tokens.
	Audiences []string
	// Algorithms is the signature algorithm allow-list. Empty:
	// DefaultJWTAlgorithms, plus HS256/384/512 when HMACSecret is set.
	// "none" is always refused; HS* are refused without HMACSecret.
	Algorithms []string
	// HMACSecret, when not empty, verifies HS256/384/512 tokens. The JWKS is
	// never used for HMAC (no symmetric keys from the network, no RSA/HMAC
	// key confusion).
	HMACSecret []byte
	// JWKSURL skips discovery and fetches the keys from this URL. Empty:
	// the jwks_uri of the discovery document.
	JWKSURL string
	// Client fetches discovery and the JWKS. Nil: a client from NewHTTPClient("").
	Client *http.Client
	// Timeout bounds one discovery + JWKS fetch. Zero: DefaultValidateTimeout.
	Timeout time.Duration
	// Skew is the clock skew allowed for exp, nbf and iat. Zero: DefaultJWTSkew.
	Skew time.Duration
	// Refresh is the age after which the key set is refreshed in the
	// background by the next validation (which goes on with the cached
	// keys). Zero: DefaultJWKSRefresh.
	Refresh time.Duration
	// Refetch is the least time between two fetches triggered by a token
	// whose "kid" is not in the cached set. Zero: DefaultJWKSRefetch.
	Refetch time.Duration
	// Logger receives key-set problems. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// JWTValidator validates JWT access tokens locally: signature with the
// issuer's published keys (RFC 7515/7517), then RFC 7519 / RFC 9068 claims:
// "iss" exactly the issuer, "exp" required and not past, "nbf" and "iat" not
// in the future (with Skew), "aud", "azp" or "client_id" in Audiences, header "typ"
// absent, "JWT" or "at+jwt".
//
// Access tokens only: an OpenID ID token ("nonce", "at_hash" or "c_hash",
// or Keycloak's payload "typ" "ID"), and a "JWT"-typed or untyped token
// with none of "scope", "scp" and "client_id", is refused (see
// accessTokenProblem). Hydra, Keycloak (18 and later) and RFC 9068
// providers need no setting for this.
//
// Trade-off: a JWT is valid until its "exp" whatever happens at the
// provider. A revoked token, or one of a disabled user, is accepted until it
// expires; use introspection (or userinfo) when revocation must take effect
// at once, or keep access-token lifetimes short.
//
// Errors wrap ErrInvalidCredentials with the precise reason (expired at T,
// audience [x] not in [y], signature invalid, unknown key id...) or
// ErrUnavailable when the keys cannot be fetched. A JWTValidator is safe
// for concurrent use; it starts no goroutine except a short background
// refresh of the key set.
type JWTValidator struct {
	issuer    string
	audiences []string
	algs      []jose.SignatureAlgorithm
	hmac      []byte
	skew      time.Duration
	now       func() time.Time
	keys      *keySet
}

var _ Validator = (*JWTValidator)(nil)

// NewJWTValidator checks opts and returns a validator. It does not contact
// the provider; see Refresh.
func NewJWTValidator(opts JWTOptions) (*JWTValidator, error) {
	if opts.Issuer == "" {
		return nil, errors.New("auth: jwt: issuer required")
	}
	v := &JWTValidator{
		issuer:    opts.Issuer,
		audiences: slices.Clone(opts.Audiences),
		hmac:      slices.Clone(opts.HMACSecret),
		skew:      opts.Skew,
		now:       opts.Now,
	}
	if v.skew <= 0 {
		v.skew = DefaultJWTSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	algs := opts.Algorithms
	if len(algs) == 0 {
		algs = slices.Clone(DefaultJWTAlgorithms)
		if len(v.hmac) > 0 {
			algs = append(algs, hmacAlgorithms...)
		}
	}
	for _, a := range algs {
		switch {
		case slices.Contains(DefaultJWTAlgorithms, a):
		case slices.Contains(hmacAlgorithms, a):
			if len(v.hmac) == 0 {
				return nil, fmt.Errorf("auth: jwt: algorithm %s needs an HMAC secret", a)
			}
		case strings.EqualFold(a, "none"):
			return nil, errors.New(`auth: jwt: algorithm "none" is never accepted`)
		default:
			return nil, fmt.Errorf("auth: jwt: unsupported algorithm %q", a)
		}
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
	}
	client, timeout := opts.Client, opts.Timeout
	if client == nil {
		client = defaultHTTPClient()
	}
	if timeout <= 0 {
		timeout = DefaultValidateTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	v.keys = &keySet{
		issuer: opts.Issuer, fixed: opts.JWKSURL, client: client, timeout: timeout,
		refresh: opts.Refresh, refetch: opts.Refetch, now: v.now, log: log,
	}
	if v.keys.refresh <= 0 {
		v.keys.refresh = DefaultJWKSRefresh
	}
	if v.keys.refetch <= 0 {
		v.keys.refetch = DefaultJWKSRefetch
	}
	return v, nil
}

// Issuer returns the configured issuer.
func (v *JWTValidator) Issuer() string { return v.issuer }

// Refresh fetches discovery and the key set now, for a start-up check. The
// error wraps ErrUnavailable.
func (v *JWTValidator) Refresh(ctx context.Context) error {
	return v.keys.fetch(ctx, fetchNeeded)
}

// Validate implements Validator.
func (v *JWTValidator) Validate(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidCredentials)
	}
	t, err := parseJWT(token)
	if err != nil {
		return nil, fmt.Errorf("%w: jwt: not a JWT: %s", ErrInvalidCredentials, err)
	}
	alg := t.Header.Alg
	if !slices.Contains(v.algs, jose.SignatureAlgorithm(alg)) {
		return nil, fmt.Errorf("%w: jwt: algorithm %q not allowed (allowed: %s)", ErrInvalidCredentials, alg, joinAlgs(v.algs))
	}
	if t.Header.Crit {
		return nil, fmt.Errorf(`%w: jwt: header has "crit" (no critical extension is supported)`, ErrInvalidCredentials)
	}
	if !acceptableTyp(t.Header.Typ) {
		return nil, fmt.Errorf("%w: jwt: header typ %q is not an access token type (JWT or at+jwt)", ErrInvalidCredentials, t.Header.Typ)
	}
	// The issuer is checked before the signature so that tokens of other
	// issuers never cause a key fetch.
	if iss, _ := t.Claims.String("iss"); iss != v.issuer {
		return nil, fmt.Errorf("%w: jwt: issuer %q is not %q", ErrInvalidCredentials, iss, v.issuer)
	}

	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: jwt: malformed JWS", ErrInvalidCredentials)
	}
	var payload []byte
	if strings.HasPrefix(alg, "HS") {
		payload, err = jws.Verify(v.hmac)
		if err != nil {
			return nil, fmt.Errorf("%w: jwt: signature invalid (%s with the configured secret)", ErrInvalidCredentials, alg)
		}
	} else {
		issued, _ := t.Claims.Time("iat")
		res, err := v.keys.lookup(ctx, t.Header.Kid, alg, issued)
		if errors.Is(err, errUnknownKey) {
			return nil, fmt.Errorf("%w: jwt: unknown signing key: kid %q (%s) is not in the issuer's JWKS (fetched %s)",
				ErrInvalidCredentials, t.Header.Kid, alg, res.fetchedAt.UTC().Format(time.RFC3339))
		}
		if err != nil {
			return nil, err
		}
		for _, k := range res.keys {
			if payload, err = jws.Verify(k.Key); err == nil {
				break
			}
		}
		if payload == nil {
			return nil, fmt.Errorf("%w: jwt: signature invalid (%s, kid %q)", ErrInvalidCredentials, alg, t.Header.Kid)
		}
	}
	// Decode the claims again from the verified payload, so that nothing
	// unverified is ever returned.
	var claims Claims
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("%w: jwt: payload is not a JSON object", ErrInvalidCredentials)
	}
	if iss, _ := claims.String("iss"); iss != v.issuer {
		return nil, fmt.Errorf("%w: jwt: issuer %q is not %q", ErrInvalidCredentials, iss, v.issuer)
	}
	if why := accessTokenProblem(t.Header.Typ, claims); why != "" {
		return nil, fmt.Errorf("%w: jwt: %s", ErrInvalidCredentials, why)
	}
	if err := v.checkClaims(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkClaims checks the registered claims of a verified token.
func (v *JWTValidator) checkClaims(c Claims) error {
	now := v.now()
	exp, ok := c.Time("exp")
	if !ok {
		if _, present := c["exp"]; present {
			return fmt.Errorf(`%w: jwt: "exp" is not a number`, ErrInvalidCredentials)
		}
		return fmt.Errorf(`%w: jwt: no "exp" claim`, ErrInvalidCredentials)
	}
	if !now.Before(exp.Add(v.skew)) {
		return fmt.Errorf("%w: jwt: token expired at %s (%s ago)", ErrInvalidCredentials,
			exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second))
	}
	if nbf, ok := c.Time("nbf"); ok && nbf.After(now.Add(v.skew)) {
		return fmt.Errorf("%w: jwt: token not valid before %s (in %s)", ErrInvalidCredentials,
			nbf.UTC().Format(time.RFC3339), nbf.Sub(now).Round(time.Second))
	} else if !ok && c["nbf"] != nil {
		return fmt.Errorf(`%w: jwt: "nbf" is not a number`, ErrInvalidCredentials)
	}
	if iat, ok := c.Time("iat"); ok && iat.After(now.Add(v.skew)) {
		return fmt.Errorf("%w: jwt: token issued in the future (%s, in %s)", ErrInvalidCredentials,
			iat.UTC().Format(time.RFC3339), iat.Sub(now).Round(time.Second))
	} else if !ok && c["iat"] != nil {
		return fmt.Errorf(`%w: jwt: "iat" is not a number`, ErrInvalidCredentials)
	}
	return checkAudience("jwt", c, v.audiences)
}

// checkAudience passes when audiences is empty, or when one of the "aud"
// values, "azp" (OIDC's authorized party: Keycloak, Entra) or "client_id"
// (RFC 9068, RFC 7662: Hydra, Zitadel) is in audiences.
func checkAudience(source string, c Claims, audiences []string) error {
	if len(audiences) == 0 {
		return nil
	}
	aud, ok := c.Strings("aud")
	if !ok && c["aud"] != nil {
		return fmt.Errorf(`%w: %s: "aud" is neither a string nor an array of strings`, ErrInvalidCredentials, source)
	}
	for _, a := range aud {
		if slices.Contains(audiences, a) {
			return nil
		}
	}
	var got []string
	for _, n := range []string{"azp", "client_id"} {
		if s, ok := c.String(n); ok {
			if slices.Contains(audiences, s) {
				return nil
			}
			got = append(got, fmt.Sprintf("%s %q", n, s))
		}
	}
	what := fmt.Sprintf("audience %s", fmtList(aud))
	if len(got) > 0 {
		what += " (" + strings.Join(got, ", ") + ")"
	}
	return fmt.Errorf("%w: %s: wrong audience: %s not in %s", ErrInvalidCredentials, source, what, fmtList(audiences))
}

func fmtList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func joinAlgs(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, " ")
}
