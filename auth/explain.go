package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// tokenHashDigits is how much of the token's SHA-256 reports show.
const tokenHashDigits = 16

// Report is what Explain learnt about a token. It never holds the token.
type Report struct {
	// TokenSHA256 is the first 16 hex digits of the token's SHA-256, to
	// tell tokens apart in output and logs.
	TokenSHA256 string
	// Format is "jwt" when the token parses as a compact JWS, else "opaque".
	Format string
	// Header is the JOSE header of a JWT (unverified); nil for opaque tokens.
	Header map[string]any
	// Unverified is the payload of a JWT decoded without any check; nil
	// for opaque tokens.
	Unverified Claims
	// Source is the validator that decided ("jwt", "introspection", "userinfo").
	Source string
	// Claims are the claims the validator vouched for; nil when it refused
	// the token.
	Claims Claims
	// Used lists the claims the decision rests on, with their values.
	Used []ClaimUse
	// Identity is the mailbox the token resolves to; "" when refused.
	Identity string
	// Expiry is the token's exp (zero if unknown).
	Expiry time.Time
	// Err is nil when the token is accepted, else it wraps
	// ErrInvalidCredentials (refused) or ErrUnavailable (no answer).
	Err error
	// Reason is Err's text without the sentinel's prefix.
	Reason string
	// Hints are remarks drawn from the unverified claims when the token
	// was refused (for example that its exp has passed).
	Hints []string
}

// ClaimUse is one claim in Report.Used.
type ClaimUse struct {
	Name     string
	Value    any  // nil when absent
	Present  bool // the claim exists
	Verified bool // the value comes from the validator, not from the unverified token
	Why      string
}

// Explain validates token with v (bypassing any Cache, so the provider or
// the keys are consulted now) and applies p, and reports who the token
// belongs to or exactly why it is refused. It is the engine of
// "mailgate token"; the proxy uses TokenAuthenticator.
func Explain(ctx context.Context, v Validator, p Policy, token string) Report {
	for {
		u, ok := v.(interface{ Unwrap() Validator })
		if !ok {
			break
		}
		v = u.Unwrap()
	}
	sum := tokenKey(token)
	r := Report{TokenSHA256: hex.EncodeToString(sum[:])[:tokenHashDigits], Format: "opaque"}
	if t, err := parseJWT(token); err == nil {
		r.Format, r.Header, r.Unverified = "jwt", t.Header.Fields, t.Claims
	}
	r.Source = sourceOf(v, token)
	if v == nil {
		r.Err = ErrUnavailable
	} else {
		claims, err := v.Validate(ctx, token)
		if err != nil {
			r.Err = scrub(err, token)
		} else {
			r.Claims = claims
			r.Identity, r.Err = p.Mailbox(claims)
			if r.Err != nil {
				r.Identity = ""
			}
		}
	}
	if r.Claims != nil {
		r.Expiry = tokenExpiry(r.Claims, token)
	} else if exp, ok := r.Unverified.Time("exp"); ok {
		r.Expiry = exp
	}
	if r.Err != nil {
		r.Reason = reasonText(r.Err)
		r.Hints = hints(r, time.Now())
	}
	r.Used = claimsUsed(r, p)
	return r
}

// reasonText strips the sentinel prefix from an error's text.
func reasonText(err error) string {
	s := err.Error()
	for _, sentinel := range []error{ErrInvalidCredentials, ErrUnavailable, ErrThrottled} {
		if errors.Is(err, sentinel) {
			s = strings.TrimPrefix(s, sentinel.Error()+": ")
		}
	}
	return s
}

// hints draws remarks from the unverified claims of a refused JWT.
func hints(r Report, now time.Time) []string {
	if r.Unverified == nil {
		return nil
	}
	var out []string
	if exp, ok := r.Unverified.Time("exp"); ok && !now.Before(exp) {
		out = append(out, "the token's exp ("+exp.UTC().Format(time.RFC3339)+") is "+now.Sub(exp).Round(time.Second).String()+" in the past")
	}
	if r.Source != SourceJWT && errors.Is(r.Err, ErrInvalidCredentials) && looksLikeIDToken(r.Unverified) {
		out = append(out, "the token looks like an OpenID ID token (nonce, at_hash, c_hash or typ ID): "+
			"the client must send the access_token of the token response, not the id_token")
	}
	if exp, ok := r.Unverified.Time("exp"); ok && now.Before(exp) && r.Claims == nil &&
		errors.Is(r.Err, ErrInvalidCredentials) && r.Source != SourceJWT {
		out = append(out, "the token has not expired (exp "+exp.UTC().Format(time.RFC3339)+
			"): the provider may have revoked it, or it comes from another provider")
	}
	return out
}

// claimsUsed lists the claims a decision rests on, in a fixed order.
func claimsUsed(r Report, p Policy) []ClaimUse {
	src, verified := r.Claims, true
	if src == nil {
		src, verified = r.Unverified, false
	}
	name := p.UsernameClaim
	if name == "" {
		name = DefaultUsernameClaim
	}
	type want struct {
		name, why string
		always    bool
	}
	wants := []want{{name, "username_claim: names the mailbox", true}}
	if p.RequireEmailVerified {
		wants = append(wants, want{"email_verified", "require_email_verified", true})
	}
	if len(p.AllowedDomains) > 0 {
		wants[0].why += "; allowed_domains: " + strings.Join(p.AllowedDomains, " ")
	}
	if len(p.RequiredScopes) > 0 {
		wants = append(wants, want{"scope", "required_scopes: " + strings.Join(p.RequiredScopes, " "), true},
			want{"scp", "required_scopes", false})
	}
	wants = append(wants,
		want{"active", "introspection: must be true", false},
		want{"iss", "issuer", false},
		want{"aud", "audiences", false},
		want{"azp", "audiences (authorized party)", false},
		want{"client_id", "client the token was issued to", false},
		want{"sub", "subject", false},
		want{"exp", "expiry", false},
		want{"nbf", "not before", false},
		want{"iat", "issued at", false},
	)
	var out []ClaimUse
	seen := map[string]bool{}
	for _, w := range wants {
		if seen[w.name] {
			continue
		}
		val, present := src[w.name]
		if !present && !w.always {
			continue
		}
		seen[w.name] = true
		out = append(out, ClaimUse{Name: w.name, Value: val, Present: present, Verified: verified && present, Why: w.why})
	}
	return out
}
