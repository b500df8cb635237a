package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Tags of the probe's own commands.
const (
	tagProbeCapability = "mg2"
	tagProbeLogin      = "mg3"
	tagProbeLogout     = "mg4"
)

// probeIMAP connects to the IMAP backend as a login would, for a client on
// TLS, and checks that Dovecot would accept the master login over it:
// greeting (after the PROXY header), STARTTLS, then CAPABILITY without
// LOGINDISABLED and with AUTH=PLAIN. With loginAs it logs in as the master
// user on behalf of loginAs and says LOGOUT.
func (s *Server) probeIMAP(ctx context.Context, loginAs string) error {
	b := s.opts.IMAPBackend
	problem := func(what, fix string) error { return &BackendProblem{Proto: "imap", What: what, Fix: fix} }
	conn, err := s.probeDial(ctx, b)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := readBackendLine(br)
	switch {
	case err != nil && b.ClientIP == "proxy" && !isTimeout(err):
		return problem("closed the connection after the PROXY header", hintHAProxyTrust)
	case err != nil:
		return fmt.Errorf("greeting: %w", err)
	case !bytes.HasPrefix(greeting, []byte("* OK")):
		return fmt.Errorf("unexpected greeting %q", truncate(greeting))
	}
	if b.TLS == TLSStartTLS {
		if conn, br, err = probeIMAPStartTLS(ctx, conn, br, b); err != nil {
			return err
		}
	}
	caps, err := probeCommand(conn, br, tagProbeCapability, "CAPABILITY")
	if err != nil {
		return err
	}
	switch {
	case hasCapability(caps, "LOGINDISABLED"):
		return problem("advertises LOGINDISABLED to mailgate", imapHintPrivacy)
	case !hasCapability(caps, "AUTH=PLAIN"):
		return problem("does not offer AUTH=PLAIN", imapHintPlain)
	}
	if loginAs != "" {
		if err := s.probeIMAPLogin(conn, br, loginAs); err != nil {
			return err
		}
	}
	probeCommand(conn, br, tagProbeLogout, "LOGOUT")
	return nil
}

// probeIMAPLogin logs in as the master user on behalf of user.
func (s *Server) probeIMAPLogin(conn net.Conn, br *bufio.Reader, user string) error {
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(user, s.opts.Master.User, s.opts.Master.Password))
	reply, err := probeCommand(conn, br, tagProbeLogin, "AUTHENTICATE PLAIN "+ir)
	if err != nil {
		return err
	}
	status, code := taggedStatus(reply)
	what := "refused the master login: " + truncate(reply)
	switch {
	case status == "OK":
		return nil
	case code == "PRIVACYREQUIRED":
		return &BackendProblem{Proto: "imap", What: what, Fix: imapHintPrivacy}
	case code == "AUTHENTICATIONFAILED":
		return &BackendProblem{Proto: "imap", What: what, Fix: imapHintMaster, Login: true}
	case code == "AUTHORIZATIONFAILED":
		return fmt.Errorf("the master credentials work but %s is not a mailbox: %s", user, truncate(reply))
	}
	return fmt.Errorf("%s", what)
}

// probeIMAPStartTLS upgrades the probe's connection.
func probeIMAPStartTLS(ctx context.Context, conn net.Conn, br *bufio.Reader, b Backend) (net.Conn, *bufio.Reader, error) {
	if _, err := probeCommand(conn, br, tagStartTLS, "STARTTLS"); err != nil {
		return nil, nil, fmt.Errorf("STARTTLS: %w", err)
	}
	tc, err := backendHandshake(ctx, conn, b)
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
		line, err := readBackendLine(br)
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
			return nil, fmt.Errorf("%s refused: %q", command, truncate(line))
		}
		if caps != nil {
			return caps, nil
		}
		return rest, nil
	}
}

// probeDial connects to b as a login does: the PROXY header (for a client
// on TLS, with the probe's own addresses) and implicit TLS. The whole
// conversation is bounded by ctx's deadline, or probeTimeout.
func (s *Server) probeDial(ctx context.Context, b Backend) (net.Conn, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(probeTimeout)
	}
	d := net.Dialer{Deadline: dl}
	conn, err := d.DialContext(ctx, "tcp", b.Address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", b.Address, err)
	}
	conn.SetDeadline(dl)
	if b.ClientIP == "proxy" {
		hdr, err := proxyHeader(conn.LocalAddr(), conn.RemoteAddr(), tlvVersion(b, tls.VersionTLS13))
		if err == nil {
			_, err = conn.Write(hdr)
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("proxy header: %w", err)
		}
	}
	if b.TLS == TLSImplicit {
		tc, err := backendHandshake(ctx, conn, b)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	return conn, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
