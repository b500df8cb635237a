package pop3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// Probe implements proxy.Prober: it connects to Dovecot as a login does
// (PROXY header, implicit TLS or STLS) and checks that the master login
// would be accepted: CAPA's SASL lists PLAIN, and with client_ip xclient
// the greeting offers [XCLIENT]. With loginAs it logs in as the master
// user on behalf of loginAs. Then QUIT. Problems are *proxy.BackendProblem.
func (f *Front) Probe(ctx context.Context, loginAs string) error {
	b := f.backend
	conn, err := f.srv.ProbeDial(ctx, b)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := proxy.ReadBackendLine(br)
	switch {
	case err != nil:
		return proxy.ProbeGreetingError(proto, b, err)
	case !bytes.HasPrefix(greeting, []byte("+OK")):
		return fmt.Errorf("unexpected greeting %q", proxy.Truncate(greeting))
	}
	greeting = bytes.Clone(greeting)
	if b.TLS == proxy.TLSStartTLS {
		if conn, br, err = backendSTLS(ctx, conn, br, b); err != nil {
			return err
		}
	}
	if err := f.probeCaps(conn, br, greeting); err != nil {
		return err
	}
	if loginAs != "" {
		if err := f.probeLogin(conn, br, loginAs); err != nil {
			return err
		}
	}
	conn.Write([]byte("QUIT\r\n"))
	proxy.ReadBackendLine(br)
	return nil
}

func problem(what, fix string) error {
	return &proxy.BackendProblem{Proto: proto, What: what, Fix: fix}
}

// probeCaps checks CAPA's SASL line for PLAIN and, for client_ip
// xclient, the greeting for [XCLIENT].
func (f *Front) probeCaps(conn net.Conn, br *bufio.Reader, greeting []byte) error {
	caps, err := capaLines(conn, br)
	if err != nil {
		return err
	}
	sasl, offered := "", false
	for _, c := range caps {
		if name, rest, _ := strings.Cut(c, " "); strings.EqualFold(name, "SASL") {
			sasl, offered = strings.ToUpper(" "+rest+" "), true
		}
	}
	switch {
	case offered && strings.TrimSpace(sasl) != "" && !strings.Contains(sasl, " PLAIN "):
		return problem("does not offer SASL PLAIN", hintPlain)
	case !strings.Contains(sasl, " PLAIN "):
		return problem("does not offer authentication to mailgate (no SASL mechanisms in CAPA)", hintPrivacy)
	case f.backend.ClientIP == "xclient" && !bytes.Contains(greeting, []byte("[XCLIENT]")):
		return problem("does not offer XCLIENT to mailgate", hintXCLIENT)
	}
	return nil
}

// maxCapaLines bounds the CAPA lines a probe reads (Dovecot sends ten).
const maxCapaLines = 100

// capaLines sends CAPA and returns the capability lines.
func capaLines(conn net.Conn, br *bufio.Reader) ([]string, error) {
	if _, err := conn.Write([]byte("CAPA\r\n")); err != nil {
		return nil, err
	}
	if _, err := expectOK(br, "CAPA"); err != nil {
		return nil, err
	}
	var caps []string
	for {
		line, err := proxy.ReadBackendLine(br)
		if err != nil {
			return nil, fmt.Errorf("CAPA: %w", err)
		}
		if string(line) == "." {
			return caps, nil
		}
		if len(caps) == maxCapaLines {
			return nil, errors.New("CAPA: too many lines")
		}
		caps = append(caps, string(line))
	}
}

// probeLogin logs in as the master user on behalf of user.
func (f *Front) probeLogin(conn net.Conn, br *bufio.Reader, user string) error {
	a := f.srv.MasterAuth(user)
	if a.AuthcID == "" {
		return errors.New("pop3: cannot log in as the master user for the probe: master.user is not set")
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(a.AuthzID, a.AuthcID, a.Password))
	if _, err := fmt.Fprintf(conn, "AUTH PLAIN %s\r\n", ir); err != nil {
		return err
	}
	line, err := proxy.ReadBackendLine(br)
	if err != nil {
		return fmt.Errorf("login reply: %w", err)
	}
	if bytes.HasPrefix(line, []byte("+OK")) {
		return nil
	}
	var bp *proxy.BackendProblem
	switch err := loginRefused(line, false); {
	case errors.As(err, &bp):
		bp.Suspected = false                         // the probe's own master login: no innocent reading
		bp.Login = bp.Fix == proxy.HintDovecotMaster // only a login finds it: rechecked only by logging in
		return bp
	case errors.Is(err, proxy.ErrMailboxRefused):
		return fmt.Errorf("the master credentials work but %s is not a mailbox: %s", user, proxy.Truncate(line))
	}
	return fmt.Errorf("master login refused: %s", proxy.Truncate(line))
}
