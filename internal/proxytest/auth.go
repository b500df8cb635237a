package proxytest

import (
	"context"
	"encoding/base64"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/mailgate/auth"
)

// Tokens FakeAuthenticate knows.
const (
	TestToken = "good-token-for-alice" // alice@example.test
	BadToken  = "bad-token-xyz"        // refused
	DownToken = "provider-down-token"  // the provider is down
)

// The master user the fake backends accept, and the test user that may log
// in with its own password (password passthrough).
const (
	MasterUser       = "mailgate"
	MasterPassword   = "master-secret"
	FakeUser         = "alice@example.test"
	FakeUserPassword = "alice-password"
)

// FakeAuthenticate accepts TestToken for alice@example.test, "bob-token"
// for bob and "nobody-token" for nobody@example.test (a mailbox the fake
// backends refuse); DownToken means the provider is down. Wrap it in
// proxy.AuthenticatorFunc.
func FakeAuthenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	var user string
	switch c.Token {
	case TestToken:
		user = "alice@example.test"
	case "bob-token":
		user = "bob@example.test"
	case "nobody-token":
		user = "nobody@example.test"
	case DownToken:
		return auth.Identity{}, auth.ErrUnavailable
	default:
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	if c.User != "" && !strings.EqualFold(c.User, user) {
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	return auth.Identity{User: user, Mechanism: c.Mechanism, Source: "fake"}, nil
}

// XOAUTH2 is the base64 XOAUTH2 initial response for user and token; both
// are registered as secrets for the log scan.
func XOAUTH2(user, token string) string {
	RegisterSecret("a token", token)
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	RegisterSecret("an XOAUTH2 message", ir)
	return ir
}

// OAuthBearer is the base64 OAUTHBEARER initial response for user ("" for
// none) and token, registered as secrets like XOAUTH2's.
func OAuthBearer(user, token string) string {
	a := ""
	if user != "" {
		a = "a=" + user
	}
	RegisterSecret("a token", token)
	ir := base64.StdEncoding.EncodeToString([]byte("n," + a + ",\x01host=127.0.0.1\x01port=993\x01auth=Bearer " + token + "\x01\x01"))
	RegisterSecret("an OAUTHBEARER message", ir)
	return ir
}

// OAuthClient is a go-sasl client for XOAUTH2 or OAUTHBEARER with a bearer
// token (go-sasl has no XOAUTH2 client).
type OAuthClient struct{ Mech, User, Token string }

// Start sends the initial response.
func (c OAuthClient) Start() (string, []byte, error) {
	if c.Mech == auth.MechOAUTHBEARER {
		return c.Mech, auth.EncodeOAUTHBEARER(c.User, c.Token), nil
	}
	return auth.MechXOAUTH2, auth.EncodeXOAUTH2(c.User, c.Token), nil
}

// Next answers an error challenge with the empty dummy response.
func (c OAuthClient) Next([]byte) ([]byte, error) { return []byte{}, nil }

var _ sasl.Client = OAuthClient{}
