package smtp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/proxy"
)

// Fixes for the SMTP backend, as logged and reported by /readyz and
// check-config.
const (
	hintAuth = "Postfix offers no AUTH PLAIN to mailgate: the submission service needs smtpd_sasl_auth_enable = yes " +
		"with smtpd_sasl_type = dovecot; with smtpd_tls_auth_only = yes (DMS) set smtp.backend.tls: starttls"
	hintXCLIENT = "Postfix does not offer XCLIENT to mailgate: add mailgate's address to smtpd_authorized_xclient_hosts " +
		"(-o on the submission service), or set smtp.backend.client_ip and smtp.backend.login to methods without XCLIENT"
	hintMaster = "Postfix (Dovecot SASL) refuses the master user's credentials: check master.user and master.password " +
		"against Dovecot's master passdb; Postfix says 535 for an unknown mailbox too, so try an existing one"
)

// probeTimeout bounds one whole probe (dial, TLS, a few commands).
const probeTimeout = 20 * time.Second

// probe connects to the SMTP backend as a login does, up to EHLO (after
// STARTTLS when configured), and checks that it offers what mailgate's login
// needs: AUTH PLAIN for the master login, XCLIENT when configured. With
// loginAs it logs in as the master user on behalf of loginAs.
func (f *Front) probe(ctx context.Context, loginAs string) error {
	b := f.backend
	problem := func(what, fix string) error { return &proxy.BackendProblem{Proto: "smtp", What: what, Fix: fix} }
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	c, raw, err := f.probeDial(ctx)
	if err != nil {
		return err
	}
	defer raw.Close()
	defer c.Quit()
	mechs := ""
	if ok, v := c.Extension("AUTH"); ok {
		mechs = " " + strings.ToUpper(v) + " "
	}
	xclient, _ := c.Extension("XCLIENT")
	switch {
	case b.Login != loginXCLIENT && !strings.Contains(mechs, " PLAIN "):
		return problem("does not offer AUTH PLAIN", hintAuth)
	case (b.Login == loginXCLIENT || b.ClientIP == clientIPXCLIENT) && !xclient:
		return problem("does not offer XCLIENT", hintXCLIENT)
	}
	if loginAs == "" || b.Login == loginXCLIENT {
		return nil
	}
	a := f.srv.MasterAuth(loginAs)
	err = c.Auth(sasl.NewPlainClient(a.AuthzID, a.AuthcID, a.Password))
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 535 {
		return &proxy.BackendProblem{Proto: "smtp", What: fmt.Sprintf("refused the master login for %s: %d %s", loginAs, se.Code, se.Message),
			Fix: hintMaster, Login: true}
	}
	return err
}
