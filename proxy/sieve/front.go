package sieve

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// proto is the front's protocol name in logs, metrics, ALPN and problems.
const proto = "sieve"

// Values of Backend.ClientIP the front understands.
const (
	clientIPNone    = "none"
	clientIPXCLIENT = "xclient" // XCLIENT ADDR= PORT= SESSION= before AUTHENTICATE
	clientIPProxy   = "proxy"   // a PROXY v2 header, written by the core
)

// Options configure the ManageSieve front.
type Options struct {
	// Backend is Dovecot's ManageSieve service (port 4190). Address is
	// required. TLS is proxy.TLSNone ("" means the same), TLSStartTLS
	// (the usual: Dovecot's listener is plaintext with STARTTLS) or
	// TLSImplicit. ClientIP passes the client's address on: "none" ("" means
	// the same), "xclient" (needs mailgate's address in Dovecot's
	// login_trusted_networks) or "proxy" (a PROXY v2 header, towards a
	// "haproxy = yes" listener). TLSConfig nil: the system roots and the
	// host of Address. Login is not used.
	Backend proxy.Backend
}

// Check reports a Backend setting the front cannot honour; the front itself
// treats such a ClientIP as "none" and its Probe reports it as a problem.
func (o Options) Check() error {
	b := o.Backend
	var errs []error
	if b.Address == "" {
		errs = append(errs, errors.New("sieve: backend address required"))
	}
	switch b.TLS {
	case "", proxy.TLSNone, proxy.TLSStartTLS, proxy.TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("sieve: unsupported backend tls %q (want none, starttls or implicit)", b.TLS))
	}
	switch b.ClientIP {
	case "", clientIPNone, clientIPXCLIENT, clientIPProxy:
	default:
		errs = append(errs, fmt.Errorf("sieve: unsupported backend client_ip %q (want none, xclient or proxy)", b.ClientIP))
	}
	return errors.Join(errs...)
}

// Front is the ManageSieve front (RFC 5804): the pre-auth conversation of
// a client, then the login and relay the core runs. It implements
// proxy.Front and proxy.Prober. Create it with New.
type Front struct {
	srv     *proxy.Server
	backend proxy.Backend // prepared by the core (TLS session cache)
	caps    capCache
	// lastXCLIENTWarn (unix seconds) rate-limits the warning that the
	// backend does not offer XCLIENT.
	lastXCLIENTWarn atomic.Int64
}

var (
	_ proxy.Front  = (*Front)(nil)
	_ proxy.Prober = (*Front)(nil)
)

// New returns the ManageSieve front of srv and registers its backend and
// its probe. Serve it with srv.Serve(ctx, ln, implicitTLS, front): on a
// plaintext listener (port 4190) clients must STARTTLS before they can
// AUTHENTICATE.
func New(srv *proxy.Server, opts Options) *Front {
	f := &Front{srv: srv, backend: srv.PrepareBackend(proto, opts.Backend)}
	srv.RegisterProbe(proto, f)
	return f
}

// Proto implements proxy.Front.
func (f *Front) Proto() string { return proto }

// Busy implements proxy.Front: a BYE response where the greeting would be
// (BYE ends a ManageSieve connection at any point), with TRYLATER: the
// condition is temporary.
func (f *Front) Busy() string { return replyBusy }

// ServeConn implements proxy.Front: the pre-auth conversation, then the
// relay to the backend session it logged in to.
func (f *Front) ServeConn(ctx context.Context, pc *proxy.Conn) {
	f.maybeLearnCapabilities()
	c := newConn(f, pc)
	if pc.ImplicitTLS {
		tc, err := pc.Handshake(pc.Raw)
		if err != nil {
			pc.Log.Debug("tls handshake failed", "err", err)
			return
		}
		c.nc, c.isTLS = tc, true
	}
	c.setStream(c.nc)
	pc.Log.Debug("connection opened")
	// Shutdown interrupts a pre-auth conversation at once (it says BYE).
	stop := pc.OnShutdown(func() { pc.Raw.SetReadDeadline(time.Now()) })
	sess, err := c.preauth(ctx)
	stop()
	if err != nil || sess == nil {
		pc.Log.Info("connection closed before login", "duration", time.Since(pc.Start).Round(time.Millisecond),
			"auth_failures", c.authFailures)
		return
	}
	pending := proxy.TakeBuffered(c.r.br)
	client := &responseTracker{Conn: c.nc, lineStart: true}
	c.r, c.bw = reader{}, nil // an idle session keeps no pre-auth buffers
	pc.Relay(ctx, client, pending, sess, client.goodbye)
}

// maybeLearnCapabilities starts a background probe of the backend's
// capabilities when none are known (see capability.go). It ends with
// Shutdown at the latest and logs through the server's logger (it is no
// client's business).
func (f *Front) maybeLearnCapabilities() {
	if !f.caps.begin(time.Now()) {
		return
	}
	go func() {
		defer f.caps.end()
		ctx, cancel := context.WithTimeout(context.Background(), learnTimeout)
		defer cancel()
		stop := f.srv.OnShutdown(cancel)
		defer stop()
		if err := f.learnCapabilities(ctx); err != nil {
			f.srv.Logger().Debug("sieve backend capabilities not learned", "proto", proto, "err", err)
		}
	}()
}

// clientIP is the backend's ClientIP method, "none" for one the front
// does not know (Options.Check).
func (f *Front) clientIP() string {
	switch m := f.backend.ClientIP; m {
	case clientIPXCLIENT, clientIPProxy:
		return m
	}
	return clientIPNone
}
