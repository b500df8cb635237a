package sieve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/mailgate/mailgate/proxy"
)

// Probe implements proxy.Prober: it connects to the backend as a login
// does (PROXY header, TLS, STARTTLS) and checks that Dovecot would take
// mailgate's login over that connection: SASL PLAIN offered, and XCLIENT
// offered when the client address is to go that way. With loginAs it logs
// in as the Server's master user on behalf of loginAs. It ends
// with LOGOUT. Problems are *proxy.BackendProblem; the capabilities it
// reads are kept for the greeting.
func (f *Front) Probe(ctx context.Context, loginAs string) error {
	if err := (Options{Backend: f.backend}).Check(); err != nil {
		return problem("settings mailgate cannot use: "+err.Error(), hintOptions)
	}
	conn, err := f.srv.ProbeDial(ctx, f.backend)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	caps, err := readCapabilities(br)
	if err != nil {
		return proxy.ProbeGreetingError(proto, f.backend, err)
	}
	f.caps.learn(caps)
	if f.backend.TLS == proxy.TLSStartTLS {
		if conn, br, caps, err = startTLS(ctx, conn, br, f.backend, caps); err != nil {
			return err
		}
	}
	if err := saslProblem(caps); err != nil {
		return err
	}
	if f.clientIP() == clientIPXCLIENT && !caps.xclient {
		return problem("does not offer XCLIENT to mailgate", hintXCLIENT)
	}
	if loginAs != "" {
		if err := f.probeLogin(conn, br, loginAs); err != nil {
			return err
		}
	}
	io.WriteString(conn, "LOGOUT\r\n")
	readResponse(br)
	return nil
}

// probeLogin logs in as the master user on behalf of user.
func (f *Front) probeLogin(conn net.Conn, br *bufio.Reader, user string) error {
	a := f.srv.MasterAuth(user)
	if a.AuthcID == "" {
		return errors.New("sieve: cannot log in as the master user for the probe: master.user is not set")
	}
	if _, err := io.WriteString(conn, authenticateCommand(a.AuthzID, a.AuthcID, a.Password)); err != nil {
		return err
	}
	resp, err := readResponse(br)
	if err != nil {
		return fmt.Errorf("login reply: %w", err)
	}
	if resp.status == "OK" {
		return nil
	}
	err = loginRefused(resp, false)
	var p *proxy.BackendProblem
	switch {
	case errors.As(err, &p):
		p.Suspected = false // the operator chose the mailbox
		p.Login = p.Fix == proxy.HintDovecotMaster
		return p
	case errors.Is(err, proxy.ErrMailboxRefused):
		return fmt.Errorf("the master credentials work but %s is not a mailbox: %s", user, proxy.Truncate(resp.raw))
	}
	return err
}

// learnCapabilities reads the backend's greeting for its Sieve
// capabilities (see capability.go).
func (f *Front) learnCapabilities(ctx context.Context) error {
	conn, err := f.srv.ProbeDial(ctx, f.backend)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	caps, err := readCapabilities(br)
	if err != nil {
		return err
	}
	f.caps.learn(caps)
	io.WriteString(conn, "LOGOUT\r\n")
	readResponse(br)
	return nil
}
