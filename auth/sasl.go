package auth

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SASL mechanism names, upper case as they appear on the wire.
const (
	MechXOAUTH2     = "XOAUTH2"
	MechOAUTHBEARER = "OAUTHBEARER"
	MechPLAIN       = "PLAIN"
)

// MaxSASLMessage is the largest decoded SASL message the decoders accept.
// Longer messages are malformed. Bearer tokens (even large JWTs) fit easily.
const MaxSASLMessage = 64 << 10

const kvsep = "\x01"

// malformed returns an error wrapping ErrMalformed. The detail must never
// contain client data (it may hold a token).
func malformed(mech, detail string) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, strings.ToLower(mech), detail)
}

// DecodeXOAUTH2 decodes Google's XOAUTH2 initial response
// "user=" U "\x01auth=Bearer " T "\x01\x01".
//
// The fields may come in any order; unknown "key=value" fields (old curl sent
// host= and port=) are ignored. The final "\x01" may be missing (a message
// ending in a single "\x01" is accepted). user= must be present but may be
// empty, in which case the token alone decides who the client is. The auth
// scheme "Bearer" is case-insensitive. Any field containing NUL, CR or LF,
// a missing or empty token, or a duplicate user=/auth= is malformed.
func DecodeXOAUTH2(msg []byte) (user, token string, err error) {
	const mech = MechXOAUTH2
	if len(msg) > MaxSASLMessage {
		return "", "", malformed(mech, "message too long")
	}
	if bytes.ContainsAny(msg, "\x00\r\n") {
		return "", "", malformed(mech, "NUL, CR or LF in message")
	}
	s, ok := strings.CutSuffix(string(msg), kvsep)
	if !ok {
		return "", "", malformed(mech, "message does not end with \\x01")
	}
	s = strings.TrimSuffix(s, kvsep) // tolerate one missing final \x01
	if s == "" {
		return "", "", malformed(mech, "empty message")
	}
	var haveUser, haveAuth bool
	for _, field := range strings.Split(s, kvsep) {
		key, value, ok := strings.Cut(field, "=")
		if !ok || key == "" {
			return "", "", malformed(mech, "field is not key=value")
		}
		switch key {
		case "user":
			if haveUser {
				return "", "", malformed(mech, "duplicate user field")
			}
			haveUser, user = true, value
		case "auth":
			if haveAuth {
				return "", "", malformed(mech, "duplicate auth field")
			}
			haveAuth = true
			if token, err = parseBearer(mech, value); err != nil {
				return "", "", err
			}
		}
	}
	if !haveUser {
		return "", "", malformed(mech, "missing user field")
	}
	if !haveAuth {
		return "", "", malformed(mech, "missing auth field")
	}
	if !utf8.ValidString(user) {
		return "", "", malformed(mech, "user is not valid UTF-8")
	}
	return user, token, nil
}

// EncodeXOAUTH2 builds an XOAUTH2 initial response (for test clients).
func EncodeXOAUTH2(user, token string) []byte {
	return []byte("user=" + user + kvsep + "auth=Bearer " + token + kvsep + kvsep)
}

// DecodeOAUTHBEARER decodes an RFC 7628 §3.1 client response:
// gs2-header kvsep *(key "=" value kvsep) kvsep, for example
// "n,a=user@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer T\x01\x01".
//
// The gs2 channel-binding flag must be "n" or "y" ("p=" and the non-standard
// "F," prefix are malformed). The optional authzid "a=" has its =2C and =3D
// escapes decoded; an empty or badly escaped authzid is malformed. The
// kvpair "auth=Bearer <token>" is required ("Bearer" case-insensitive);
// other kvpairs (host, port, anything) are ignored but must have an
// alphabetic key.
func DecodeOAUTHBEARER(msg []byte) (authzid, token string, err error) {
	const mech = MechOAUTHBEARER
	if len(msg) > MaxSASLMessage {
		return "", "", malformed(mech, "message too long")
	}
	if bytes.IndexByte(msg, 0) >= 0 {
		return "", "", malformed(mech, "NUL in message")
	}
	parts := strings.SplitN(string(msg), ",", 3)
	if len(parts) != 3 {
		return "", "", malformed(mech, "incomplete gs2 header")
	}
	switch flag := parts[0]; {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return "", "", malformed(mech, "channel binding is not supported")
	default:
		return "", "", malformed(mech, "bad gs2 channel-binding flag")
	}
	if parts[1] != "" {
		name, ok := strings.CutPrefix(parts[1], "a=")
		if !ok {
			return "", "", malformed(mech, "bad gs2 authzid")
		}
		if authzid, err = decodeSASLName(mech, name); err != nil {
			return "", "", err
		}
	}
	pairs, err := splitKVPairs(mech, parts[2])
	if err != nil {
		return "", "", err
	}
	haveAuth := false
	for _, p := range pairs {
		key, value, _ := strings.Cut(p, "=")
		if key != "auth" {
			continue
		}
		if haveAuth {
			return "", "", malformed(mech, "duplicate auth kvpair")
		}
		haveAuth = true
		if token, err = parseBearer(mech, value); err != nil {
			return "", "", err
		}
	}
	if !haveAuth {
		return "", "", malformed(mech, "missing auth kvpair")
	}
	return authzid, token, nil
}

// EncodeOAUTHBEARER builds an RFC 7628 client response without host and
// port, escaping "," and "=" in authzid (for test clients).
func EncodeOAUTHBEARER(authzid, token string) []byte {
	header := "n,,"
	if authzid != "" {
		esc := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(authzid)
		header = "n,a=" + esc + ","
	}
	return []byte(header + kvsep + "auth=Bearer " + token + kvsep + kvsep)
}

// splitKVPairs splits kvsep *(key "=" value kvsep) kvsep into its kvpairs.
func splitKVPairs(mech, s string) ([]string, error) {
	body, ok := strings.CutPrefix(s, kvsep)
	if !ok {
		return nil, malformed(mech, "missing \\x01 after gs2 header")
	}
	body, ok = strings.CutSuffix(body, kvsep)
	if !ok {
		return nil, malformed(mech, "message does not end with \\x01\\x01")
	}
	if body == "" {
		return nil, nil
	}
	body, ok = strings.CutSuffix(body, kvsep)
	if !ok {
		return nil, malformed(mech, "message does not end with \\x01\\x01")
	}
	pairs := strings.Split(body, kvsep)
	for _, p := range pairs {
		key, _, ok := strings.Cut(p, "=")
		if !ok || !isAlpha(key) {
			return nil, malformed(mech, "kvpair is not key=value")
		}
	}
	return pairs, nil
}

// decodeSASLName decodes an RFC 5801 saslname (=2C -> ",", =3D -> "=").
func decodeSASLName(mech, s string) (string, error) {
	if s == "" {
		return "", malformed(mech, "empty authzid")
	}
	if !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x01") {
		return "", malformed(mech, "bad character in authzid")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", malformed(mech, "bad escape in authzid")
		}
		i += 2
	}
	return b.String(), nil
}

// parseBearer extracts the token from an auth value "Bearer <token>".
// The token must be printable ASCII without spaces (a superset of RFC 6750
// b64token, as Dovecot accepts).
func parseBearer(mech, v string) (string, error) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", malformed(mech, "auth scheme is not Bearer")
	}
	rest := v[len(scheme):]
	tok := strings.TrimLeft(rest, " ")
	if len(tok) == len(rest) {
		return "", malformed(mech, "no space after Bearer")
	}
	if tok == "" {
		return "", malformed(mech, "empty token")
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] >= 0x7f {
			return "", malformed(mech, "bad character in token")
		}
	}
	return tok, nil
}

func isAlpha(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// DecodePLAIN decodes an RFC 4616 PLAIN message
// [authzid] NUL authcid NUL password.
//
// authcid and password must be non-empty; authzid may be empty. authzid and
// authcid must be valid UTF-8 without CR or LF; the password may hold any
// byte but NUL.
func DecodePLAIN(msg []byte) (authzid, authcid, password string, err error) {
	const mech = MechPLAIN
	if len(msg) > MaxSASLMessage {
		return "", "", "", malformed(mech, "message too long")
	}
	parts := strings.Split(string(msg), "\x00")
	if len(parts) != 3 {
		return "", "", "", malformed(mech, "want exactly two NUL separators")
	}
	authzid, authcid, password = parts[0], parts[1], parts[2]
	if authcid == "" || password == "" {
		return "", "", "", malformed(mech, "empty authcid or password")
	}
	for _, s := range []string{authzid, authcid} {
		if !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n") {
			return "", "", "", malformed(mech, "bad character in authzid or authcid")
		}
	}
	return authzid, authcid, password, nil
}

// EncodePLAIN builds an RFC 4616 PLAIN message. It does not validate its
// arguments: a NUL in any of them yields a message DecodePLAIN rejects.
func EncodePLAIN(authzid, authcid, password string) []byte {
	return []byte(authzid + "\x00" + authcid + "\x00" + password)
}
