package proxy

import (
	"os"
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// TestMain points slog.Default (package auth's logger when none is given)
// at the suite log, which searches every line for secrets
// (proxytest.LogToSuite). The fronts' packages have the tests that need
// real daemons.
func TestMain(m *testing.M) {
	proxytest.LogToSuite()
	os.Exit(m.Run())
}

// fakeAuthenticator accepts proxytest.TestToken for alice@example.test,
// "bob-token" for bob and "nobody-token" for nobody; proxytest.DownToken
// means the provider is down.
var fakeAuthenticator = AuthenticatorFunc(proxytest.FakeAuthenticate)
