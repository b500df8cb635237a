package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// PrepareBackend returns b as the login sequence uses it for proto: its TLS
// configuration gets a session cache shared by all of proto's backend
// connections (logins after the first resume a TLS session) and reports
// handshakes to the Observer. Fronts call it once, at construction.
func (s *Server) PrepareBackend(proto string, b Backend) Backend {
	b.TLSConfig = s.backendClientTLS(b, proto)
	return b
}

// backendLogin takes a seat in the logged-in pool, dials the backend (PROXY
// header, implicit TLS) and runs the front's dialog under the backend login
// timeout. On failure the seat goes back and nothing was written to the
// client.
func (c *Conn) backendLogin(ctx context.Context, req LoginRequest, a BackendAuth) (_ *BackendSession, err error) {
	s, b := c.s, req.Backend
	moved, err := c.seat.login()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && moved {
			c.seat.loginFailed()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, s.backendLoginTimeout(a.Own))
	defer cancel()
	start := time.Now()
	defer func() {
		berr := err
		if errors.Is(err, errBackendRefused) {
			berr = nil // the backend works; the user's password was wrong
		}
		s.obs.BackendLogin(c.proto, time.Since(start), berr)
	}()

	var preface []byte
	if b.ClientIP == "proxy" {
		if preface, err = proxyHeader(c.Raw.RemoteAddr(), c.Raw.LocalAddr(), tlvVersion(b, req.ClientTLS)); err != nil {
			return nil, fmt.Errorf("%w: %v", errBackendUnavailable, err)
		}
	}
	conn, err := dialBackend(ctx, b, preface)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", errBackendUnavailable, b.Address, err)
	}
	tcp := conn
	if tc, ok := conn.(*tls.Conn); ok {
		tcp = tc.NetConn()
	}
	// A deadline on the TCP connection reaches any TLS layer over it.
	stop := context.AfterFunc(ctx, func() { tcp.SetDeadline(time.Now()) })
	a.ClientTLS, a.Remote, a.Local, a.SessionID = req.ClientTLS, c.Raw.RemoteAddr(), c.Raw.LocalAddr(), c.ID
	bs, err := req.Dialog.Login(ctx, conn, a)
	if !stop() && err == nil {
		bs.Conn.Close()
		err = fmt.Errorf("%w: login: %v", errBackendUnavailable, context.Cause(ctx))
	}
	if err != nil {
		tcp.Close()
		return nil, c.backendError(err)
	}
	tcp.SetDeadline(time.Time{})
	s.backendOK(c.proto)
	return bs, nil
}

// backendError records a configuration problem the dialog found and makes
// sure every error is classified (an unclassified one is an outage).
func (c *Conn) backendError(err error) error {
	var p *BackendProblem
	switch {
	case errors.As(err, &p):
		c.s.configProblem(c.proto, p.What, p.Fix, !p.Suspected)
		return fmt.Errorf("%w: %w", errBackendUnavailable, err)
	case errors.Is(err, errBackendUnavailable), errors.Is(err, errBackendAuthz), errors.Is(err, errBackendRefused),
		errors.Is(err, errClientGone):
		return err
	}
	return fmt.Errorf("%w: %w", errBackendUnavailable, err)
}
