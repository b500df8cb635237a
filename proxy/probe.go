package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// A probe connects to a backend the way a login does (PROXY header, TLS,
// STARTTLS, the client-address forwarding) and stops before authenticating,
// unless CheckBackend is given a user to log in as. What it finds wrong with
// the backend's configuration is a *BackendProblem; a backend that cannot be
// reached is an ordinary error (it may simply not be up yet).

// BackendProblem is a backend configuration that refuses mailgate's master
// login: every user's login would fail the same way.
type BackendProblem struct {
	Proto string // the front's protocol: "imap", "smtp", ...
	What  string // what the backend does, e.g. "advertises LOGINDISABLED"
	Fix   string // the setting to change, on mailgate's side or the backend's
	// Suspected: a signal with an innocent reading too (a client could
	// provoke it): logged with the fix, but not kept for readiness.
	Suspected bool
	// Login: found by logging in (wrong master credentials); it is checked
	// again only by logging in, and rarely (reloginEvery).
	Login bool
}

func (p *BackendProblem) Error() string {
	return fmt.Sprintf("%s backend %s: %s", p.Proto, p.What, p.Fix)
}

// reprobeEvery is how often a standing problem is probed again while
// readiness checks ask for it, so that /readyz recovers once the operator
// fixed the backend although no login can succeed before.
const reprobeEvery = 30 * time.Second

// reloginEvery is how often a standing problem found by logging in is
// checked again by logging in as Master.CheckMailbox: each refusal is a
// failed login from mailgate's address in Dovecot's penalty and Fail2Ban.
const reloginEvery = 5 * time.Minute

// CheckBackend probes proto's backend (its front's Prober) and returns nil, a
// *BackendProblem, or an error wrapping the reason it could not be probed.
// A problem is recorded for BackendProblem (readiness) and logged; a clean
// probe clears a recorded one. With loginAs, the probe goes on to log in as
// the master user on behalf of loginAs (check-config's --login-as): only
// then are wrong master credentials found before a user's login.
func (s *Server) CheckBackend(ctx context.Context, proto, loginAs string) error {
	var err error
	s.mu.Lock()
	p, ok := s.probers[proto]
	s.mu.Unlock()
	switch {
	case ok:
		err = p.Probe(ctx, loginAs)
	default:
		return fmt.Errorf("proxy: no backend for protocol %q", proto)
	}
	var bp *BackendProblem
	switch {
	case errors.As(err, &bp):
		s.configProblem(proto, bp.What, bp.Fix, true)
		s.problems.setLogin(proto, bp.Login)
	case err == nil:
		s.backendOK(proto)
	}
	return err
}

// reprobe checks proto's backend again in the background if its recorded
// problem is older than reprobeEvery and no probe is running.
func (s *Server) reprobe(proto string) {
	p := &s.problems
	p.mu.Lock()
	since, standing := p.probed[proto]
	every, loginAs := reprobeEvery, ""
	if p.login[proto] {
		every, loginAs = reloginEvery, s.opts.Master.CheckMailbox
	}
	if !standing || p.probing[proto] || time.Since(since) < every {
		p.mu.Unlock()
		return
	}
	p.probing[proto] = true
	p.probed[proto] = time.Now()
	p.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.shutdownCtx, probeTimeout)
		defer cancel()
		s.CheckBackend(ctx, proto, loginAs)
		p.mu.Lock()
		delete(p.probing, proto)
		p.mu.Unlock()
	}()
}

// probeTimeout bounds one whole probe (dial, TLS, a few commands).
const probeTimeout = 20 * time.Second

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

// ProbeGreetingError is what a probe makes of a failed read of proto's
// backend greeting: after a PROXY header, a connection closed rather than
// timed out is the backend refusing an untrusted sender (a *BackendProblem
// naming haproxy_trusted_networks); anything else is an ordinary error.
func ProbeGreetingError(proto string, b Backend, err error) error {
	var ne net.Error
	if b.ClientIP == "proxy" && !(errors.As(err, &ne) && ne.Timeout()) {
		return &BackendProblem{Proto: proto, What: "closed the connection after the PROXY header", Fix: HintHAProxyTrust}
	}
	return fmt.Errorf("greeting: %w", err)
}
