package smtp

import (
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// TestIntegrationBackendProbeSMTP: the same against the real Postfix; the
// refusals run against a Postfix of their own (stock DMS: no XCLIENT) so
// that Dovecot's failed-login delay does not reach other tests.
func TestIntegrationBackendProbeSMTP(t *testing.T) {
	smtpBE := func(pf *testenv.Postfix, mode proxy.TLSMode, clientIP, login string) proxy.Backend {
		return proxy.Backend{Address: pf.SubmissionAddr, TLS: mode, TLSConfig: pf.TLSConfig(), ClientIP: clientIP, Login: login}
	}
	pf := testenv.SharedPostfix(t)
	master := proxy.Master{User: pf.Dovecot.MasterUser, Password: pf.Dovecot.MasterPassword}
	t.Run("starttls+xclient, login as alice", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, master, smtpBE(pf, proxy.TLSStartTLS, "xclient", "")), "smtp", "alice@example.test", "")
	})

	own := testenv.StartPostfix(t, testenv.StartDovecot(t, testenv.DovecotOptions{}), testenv.PostfixOptions{DisableXClient: true})
	om := proxy.Master{User: own.Dovecot.MasterUser, Password: own.Dovecot.MasterPassword}
	t.Run("plaintext: no AUTH before TLS", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, om, smtpBE(own, proxy.TLSNone, "", "")), "smtp", "", hintAuth)
	})
	t.Run("xclient not authorized", func(t *testing.T) {
		checkProblem(t, newProbeServer(t, om, smtpBE(own, proxy.TLSStartTLS, "xclient", "")), "smtp", "", hintXCLIENT)
	})
	t.Run("wrong master password", func(t *testing.T) {
		bad := proxy.Master{User: om.User, Password: "not-the-master-password"}
		checkProblem(t, newProbeServer(t, bad, smtpBE(own, proxy.TLSStartTLS, "", "")), "smtp", "alice@example.test", hintMaster)
	})
}
