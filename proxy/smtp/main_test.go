package smtp

import (
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestMain starts the shared Dovecot, Postfix and Hydra on first use (by
// integration tests) and stops them when the tests are done. slog.Default
// (package auth's logger when none is given) writes into the suite log,
// which searches every line for secrets (proxytest.LogToSuite).
func TestMain(m *testing.M) {
	proxytest.LogToSuite()
	testenv.Main(m)
}

// fakeAuthenticator accepts proxytest.TestToken for alice@example.test,
// "bob-token" for bob and "nobody-token" for nobody; proxytest.DownToken
// means the provider is down.
var fakeAuthenticator = proxy.AuthenticatorFunc(proxytest.FakeAuthenticate)

// registerMasterSecrets registers m's password and the PLAIN messages
// mailgate builds with it for the test users.
func registerMasterSecrets(m proxy.Master) { proxytest.RegisterMasterSecrets(m.User, m.Password) }
