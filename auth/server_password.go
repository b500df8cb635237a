package auth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MechLOGIN is the obsolete but widespread LOGIN mechanism
// (draft-murchison-sasl-login): "Username:", then "Password:".
const MechLOGIN = "LOGIN"

// Challenges of the LOGIN mechanism, before base64.
var (
	loginUserChallenge = []byte("Username:")
	loginPassChallenge = []byte("Password:")
)

// PasswordServer is the SASL server for PLAIN and LOGIN, for password
// passthrough: it only collects the user name and password (the backend
// judges them), and implements go-sasl's Server interface like Server. A
// PLAIN authorization identity other than the user's own is refused:
// passthrough logs users in as themselves only.
type PasswordServer struct {
	mech           string
	state          int // 0 start, 1 waiting (PLAIN message, LOGIN user), 2 LOGIN password, 3 done
	user, password string
	ok             bool
}

// NewPasswordServer returns a PasswordServer for mech ("PLAIN" or "LOGIN",
// case-insensitive).
func NewPasswordServer(mech string) (*PasswordServer, error) {
	mech = strings.ToUpper(mech)
	if mech != MechPLAIN && mech != MechLOGIN {
		return nil, fmt.Errorf("auth: unsupported password mechanism %q", mech)
	}
	return &PasswordServer{mech: mech}, nil
}

// Next handles one response (nil as the first: no initial response) and
// returns the next challenge. It ends with a nil error once the
// credentials are complete (see Credentials), or with an error wrapping
// ErrMalformed or ErrInvalidCredentials.
func (p *PasswordServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch {
	case p.state == 3:
		return nil, true, errExchangeDone
	case p.state == 0 && response == nil:
		p.state = 1
		if p.mech == MechLOGIN {
			return loginUserChallenge, false, nil
		}
		return []byte{}, false, nil
	case p.mech == MechPLAIN:
		p.state = 3
		return nil, true, p.plain(response)
	case p.state < 2: // LOGIN: the user name (maybe as the initial response)
		if len(response) > MaxSASLMessage || !utf8.Valid(response) || strings.ContainsAny(string(response), "\r\n\x00") {
			p.state = 3
			return nil, true, malformed(MechLOGIN, "bad user name")
		}
		p.user, p.state = string(response), 2
		return loginPassChallenge, false, nil
	default: // LOGIN: the password
		p.state = 3
		if len(response) > MaxSASLMessage {
			return nil, true, malformed(MechLOGIN, "password too long")
		}
		p.password, p.ok = string(response), true
		return nil, true, nil
	}
}

func (p *PasswordServer) plain(msg []byte) error {
	authz, authc, pass, err := DecodePLAIN(msg)
	if err != nil {
		return err
	}
	if authz != "" && !strings.EqualFold(authz, authc) {
		return fmt.Errorf("%w: PLAIN authorization identity differs from the user", ErrInvalidCredentials)
	}
	p.user, p.password, p.ok = authc, pass, true
	return nil
}

// Mechanism is the mechanism's name, upper case.
func (p *PasswordServer) Mechanism() string { return p.mech }

// Credentials returns the user name and password once Next has succeeded.
func (p *PasswordServer) Credentials() (user, password string, ok bool) {
	return p.user, p.password, p.ok
}

// CheckPassword refuses, before anything reaches a backend, what cannot be
// a valid passthrough login: a user name that is unsafe on a protocol line
// or holds Dovecot's master user separator "*" (SafeMailbox), an empty
// password, or one with a NUL (it cannot travel in PLAIN).
func CheckPassword(user, password string) error {
	if !SafeMailbox(user) {
		return fmt.Errorf("%w: unacceptable user name", ErrInvalidCredentials)
	}
	if password == "" || strings.IndexByte(password, 0) >= 0 {
		return fmt.Errorf("%w: empty password or one with a NUL", ErrInvalidCredentials)
	}
	return nil
}

// DecodeResponse decodes one base64 SASL response as text protocols frame
// it (IMAP, POP3, ManageSieve, SMTP): "*" cancels the exchange
// (ErrCanceled), "" and "=" stand for an empty response (RFC 4959, and
// clients' empty dummy replies), anything else must be valid base64
// (ErrMalformed otherwise).
func DecodeResponse(s string) ([]byte, error) {
	switch s {
	case "*":
		return nil, ErrCanceled
	case "", "=":
		return []byte{}, nil
	}
	if len(s) > base64.StdEncoding.EncodedLen(MaxSASLMessage) {
		return nil, fmt.Errorf("%w: response too long", ErrMalformed)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid base64", ErrMalformed)
	}
	return b, nil
}
