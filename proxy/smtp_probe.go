package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Fixes for the SMTP backend.
const (
	smtpHintAuth = "Postfix offers no AUTH PLAIN to mailgate: the submission service needs smtpd_sasl_auth_enable = yes " +
		"with smtpd_sasl_type = dovecot; with smtpd_tls_auth_only = yes (DMS) set smtp.backend.tls: starttls"
	smtpHintXCLIENT = "Postfix does not offer XCLIENT to mailgate: add mailgate's address to smtpd_authorized_xclient_hosts " +
		"(-o on the submission service), or set smtp.backend.client_ip and smtp.backend.login to methods without XCLIENT"
	smtpHintMaster = "Postfix (Dovecot SASL) refuses the master user's credentials: check master.user and master.password " +
		"against Dovecot's master passdb; Postfix says 535 for an unknown mailbox too, so try an existing one"
)

// probeSMTP connects to the SMTP backend as a login does, up to EHLO (after
// STARTTLS when configured), and checks that it offers what mailgate's login
// needs: AUTH PLAIN for the master login, XCLIENT when configured. With
// loginAs it logs in as the master user on behalf of loginAs.
func (s *Server) probeSMTP(ctx context.Context, loginAs string) error {
	b := s.opts.SMTPBackend
	problem := func(what, fix string) error { return &BackendProblem{Proto: "smtp", What: what, Fix: fix} }
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	preface, err := smtpProbePreface(b)
	if err != nil {
		return err
	}
	c, raw, err := s.dialSMTPBackend(ctx, s.opts.SMTP.withDefaults().Hostname, preface, nil)
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
	case b.Login != smtpLoginXCLIENT && !strings.Contains(mechs, " PLAIN "):
		return problem("does not offer AUTH PLAIN", smtpHintAuth)
	case (b.Login == smtpLoginXCLIENT || b.ClientIP == smtpClientIPXCLIENT) && !xclient:
		return problem("does not offer XCLIENT", smtpHintXCLIENT)
	}
	if loginAs == "" || b.Login == smtpLoginXCLIENT {
		return nil
	}
	err = c.Auth(sasl.NewPlainClient(loginAs, s.opts.Master.User, s.opts.Master.Password))
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 535 {
		return &BackendProblem{Proto: "smtp", What: fmt.Sprintf("refused the master login for %s: %d %s", loginAs, se.Code, se.Message),
			Fix: smtpHintMaster, Login: true}
	}
	return err
}
