package imap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// Fixes for the IMAP backend, as logged and reported by /readyz and
// check-config.
const (
	// hintPrivacy: Dovecot refuses authentication over this connection
	// (2.4 with ssl = required from any address but its own; 2.3 with
	// disable_plaintext_auth from outside login_trusted_networks).
	hintPrivacy = "Dovecot refuses authentication over a plaintext connection from mailgate's address: " +
		"set imap.backend.tls to starttls or implicit (Dovecot 2.4 with ssl = required, which DMS sets, requires TLS " +
		"from every address but its own), or imap.backend.client_ip: proxy towards a 'haproxy = yes' listener " +
		"(mailgate declares the client's TLS in the PROXY header); on Dovecot 2.3 adding mailgate's address to " +
		"login_trusted_networks also works"
	hintPlain = "Dovecot does not offer AUTH=PLAIN: add plain to auth_mechanisms"
)

// Tags of the probe's own commands.
const (
	tagProbeCapability = "mg2"
	tagProbeLogin      = "mg3"
	tagProbeLogout     = "mg4"
)

// probe connects to the IMAP backend as a login would, for a client on
// TLS, and checks that Dovecot would accept the master login over it:
// greeting (after the PROXY header), STARTTLS, then CAPABILITY without
// LOGINDISABLED and with AUTH=PLAIN. With loginAs it logs in as the master
// user on behalf of loginAs and says LOGOUT.
func (f *Front) probe(ctx context.Context, loginAs string) error {
	b := f.backend
	problem := func(what, fix string) error { return &proxy.BackendProblem{Proto: "imap", What: what, Fix: fix} }
	conn, err := f.srv.ProbeDial(ctx, b)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := proxy.ReadBackendLine(br)
	switch {
	case err != nil:
		return proxy.ProbeGreetingError("imap", b, err)
	case !bytes.HasPrefix(greeting, []byte("* OK")):
		return fmt.Errorf("unexpected greeting %q", proxy.Truncate(greeting))
	}
	if b.TLS == proxy.TLSStartTLS {
		if conn, br, err = probeStartTLS(ctx, conn, br, b); err != nil {
			return err
		}
	}
	caps, err := probeCommand(conn, br, tagProbeCapability, "CAPABILITY")
	if err != nil {
		return err
	}
	switch {
	case hasCapability(caps, "LOGINDISABLED"):
		return problem("advertises LOGINDISABLED to mailgate", hintPrivacy)
	case !hasCapability(caps, "AUTH=PLAIN"):
		return problem("does not offer AUTH=PLAIN", hintPlain)
	}
	if loginAs != "" {
		if err := probeLogin(conn, br, f.srv.MasterAuth(loginAs)); err != nil {
			return err
		}
	}
	probeCommand(conn, br, tagProbeLogout, "LOGOUT")
	return nil
}

// probeLogin logs in as the master user on behalf of a.AuthzID.
func probeLogin(conn net.Conn, br *bufio.Reader, a proxy.BackendAuth) error {
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(a.AuthzID, a.AuthcID, a.Password))
	reply, err := probeCommand(conn, br, tagProbeLogin, "AUTHENTICATE PLAIN "+ir)
	if err != nil {
		return err
	}
	status, code := taggedStatus(reply)
	what := "refused the master login: " + proxy.Truncate(reply)
	switch {
	case status == "OK":
		return nil
	case code == "PRIVACYREQUIRED":
		return &proxy.BackendProblem{Proto: "imap", What: what, Fix: hintPrivacy}
	case code == "AUTHENTICATIONFAILED":
		return &proxy.BackendProblem{Proto: "imap", What: what, Fix: proxy.HintDovecotMaster, Login: true}
	case code == "AUTHORIZATIONFAILED":
		return fmt.Errorf("the master credentials work but %s is not a mailbox: %s", a.AuthzID, proxy.Truncate(reply))
	}
	return fmt.Errorf("%s", what)
}

// probeStartTLS upgrades the probe's connection.
func probeStartTLS(ctx context.Context, conn net.Conn, br *bufio.Reader, b proxy.Backend) (net.Conn, *bufio.Reader, error) {
	if _, err := probeCommand(conn, br, tagStartTLS, "STARTTLS"); err != nil {
		return nil, nil, fmt.Errorf("STARTTLS: %w", err)
	}
	tc, err := proxy.BackendHandshake(ctx, conn, b)
	if err != nil {
		return nil, nil, err
	}
	return tc, bufio.NewReaderSize(tc, 4096), nil
}

// probeCommand writes "tag command" and reads up to its tagged reply. It
// returns the untagged CAPABILITY line's content wrapped as a code (so that
// hasCapability reads it) when there is one, else the tagged reply after the
// tag; a NO or BAD is an error unless the command is the login.
func probeCommand(conn net.Conn, br *bufio.Reader, tag, command string) ([]byte, error) {
	if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, command); err != nil {
		return nil, err
	}
	var caps []byte
	for {
		line, err := proxy.ReadBackendLine(br)
		if err != nil {
			return nil, err
		}
		if rest, ok := bytes.CutPrefix(line, []byte("* CAPABILITY ")); ok {
			caps = append([]byte("[CAPABILITY "), append(rest, ']')...)
			continue
		}
		rest, ok := bytes.CutPrefix(line, []byte(tag+" "))
		if !ok {
			continue
		}
		if tag == tagProbeLogin {
			return rest, nil
		}
		if st, _ := taggedStatus(rest); st != "OK" {
			return nil, fmt.Errorf("%s refused: %q", command, proxy.Truncate(line))
		}
		if caps != nil {
			return caps, nil
		}
		return rest, nil
	}
}
