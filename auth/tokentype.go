package auth

import (
	"fmt"
	"strings"
)

// idTokenClaims are claims that OpenID Connect Core §2 and §3.1.3.6 /
// §3.3.2.11 define for ID tokens only: a JWT carrying one is an ID token
// (or was made from one), never an access token.
var idTokenClaims = []string{"nonce", "at_hash", "c_hash"}

// nonAccessPayloadTypes are values of Keycloak's payload "typ" claim
// ("Bearer" for access tokens) that name other kinds of token.
var nonAccessPayloadTypes = []string{"id", "refresh", "offline", "logout"}

// accessTokenProblem returns why a verified JWT, with JOSE header typ and
// claims c, is not an access token, or "". jwt mode accepts access tokens
// only (RFC 9068 §2.1, §4): an OpenID ID token is meant for the client that
// asked for it, its "aud" is that client, and anyone that client shows it
// to could replay it as a bearer credential.
//
//   - A token with an ID-token claim ("nonce", "at_hash", "c_hash") or a
//     payload "typ" of "ID" (Keycloak) is refused, whatever its header.
//   - Header typ "at+jwt" or "application/at+jwt" (RFC 9068): accepted.
//   - Header typ "JWT" or none (Hydra, Keycloak, Entra): accepted
//     when the token carries an access-token claim: "scope" or "scp" (the
//     granted scopes), or "client_id" (RFC 9068, RFC 8693).
func accessTokenProblem(typ string, c Claims) string {
	const idToken = "this is an OpenID ID token, not an access token: "
	const fix = "; the client must send the access_token of the token response, not the id_token"
	for _, name := range idTokenClaims {
		if _, present := c[name]; present {
			return fmt.Sprintf("%sit carries %q, a claim of ID tokens only%s", idToken, name, fix)
		}
	}
	if pt, ok := c.String("typ"); ok {
		for _, other := range nonAccessPayloadTypes {
			if strings.EqualFold(pt, other) {
				if other == "id" {
					return fmt.Sprintf("%sits payload typ is %q%s", idToken, pt, fix)
				}
				return fmt.Sprintf("not an access token: its payload typ is %q", pt)
			}
		}
	}
	if isATJWT(typ) {
		return ""
	}
	for _, name := range []string{"scope", "scp", "client_id"} {
		if _, present := c[name]; present {
			return ""
		}
	}
	return fmt.Sprintf(`not an access token: header typ %q and none of the access-token claims "scope", "scp" or "client_id" `+
		`(an OpenID ID token looks like this)%s`, typ, fix)
}

// normTyp lower-cases a JOSE "typ" and drops an "application/" prefix
// (RFC 7515 §4.1.9).
func normTyp(typ string) string {
	return strings.TrimPrefix(strings.ToLower(typ), "application/")
}

// isATJWT reports whether a JOSE "typ" is RFC 9068's "at+jwt".
func isATJWT(typ string) bool { return normTyp(typ) == "at+jwt" }

// acceptableTyp reports whether a JOSE "typ" header may be an access
// token's: absent, "JWT" or RFC 9068's "at+jwt" (optionally
// "application/"-prefixed), case-insensitively. "JWT" and absent are then
// told apart from ID tokens by accessTokenProblem.
func acceptableTyp(typ string) bool {
	t := normTyp(typ)
	return t == "" || t == "jwt" || t == "at+jwt"
}

// looksLikeIDToken reports whether unverified claims carry an ID-token
// marker, for hints about tokens another validator refused.
func looksLikeIDToken(c Claims) bool {
	for _, name := range idTokenClaims {
		if _, present := c[name]; present {
			return true
		}
	}
	pt, _ := c.String("typ")
	return strings.EqualFold(pt, "id")
}
