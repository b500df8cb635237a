// Package smtp is mailgate's submission front (RFC 6409, RFC 4954, RFC
// 3207), owned the way the IMAP front is: the conversation before login,
// STARTTLS included (commands.go), AUTH through package auth's SASL servers
// inside the shared login sequence (auth.go), with one reply mapper
// (errors.go); the backend session is logged in to Postfix by go-smtp's
// client (backend.go, the login's proxy.BackendDialog), and then MAIL, RCPT,
// RSET and the like are passed to it one by one, the client hearing
// Postfix's own replies verbatim (session.go), and a message's bytes go
// through as the client sent them, dot-stuffing included, while mailgate
// watches for the end of data (data.go, dotfilter.go): the client hears 250
// only after the backend said 250, and a cut message never reaches the end
// of data at the backend. Everything else (listeners, limits, the login
// sequence, backend dialing) is package proxy's; see proxy/doc.go for the
// walk of a login.
//
// References: RFC 5321, RFC 6409 (submission), RFC 4954 (AUTH), RFC 3207
// (STARTTLS), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING), RFC 7628
// (OAUTHBEARER), Postfix's XCLIENT_README.
package smtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// Options configure the submission front.
type Options struct {
	// Backend is Postfix's submission service. Its ClientIP is how the
	// client's address is passed on: "none" (or ""), "xclient" (XCLIENT
	// ADDR= and PORT=) or "proxy" (a PROXY v2 header); its Login is
	// "master" (AUTH PLAIN authzid=user, authcid=master; the default) or
	// "xclient" (XCLIENT LOGIN=user).
	Backend proxy.Backend
	// Hostname is the name in the greeting and EHLO reply, and the name
	// mailgate gives in its EHLO to the backend. Default: os.Hostname().
	Hostname string
	// MaxMessageBytes caps a message; 0 takes SIZE from the backend's EHLO.
	// When both are set the smaller one is advertised.
	MaxMessageBytes int64
	// MaxRecipients caps the recipients of one message. Default 100.
	MaxRecipients int
	// DataTimeout bounds the wait for each part of a message body (DATA
	// lines, BDAT chunks), renewed as bytes arrive, so that a slow but
	// live upload is never cut off. Default 3 min (RFC 5321 section 4.5.3.2.5).
	DataTimeout time.Duration
	// EnforceSender requires MAIL FROM to be the verified address or one of
	// SenderAliases[address] ("*@domain" matches the whole domain); the null
	// sender <> is refused too. Addresses compare case-insensitively.
	EnforceSender bool
	SenderAliases map[string][]string
}

func (o Options) withDefaults() Options {
	if o.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			o.Hostname = h
		} else {
			o.Hostname = "localhost"
		}
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 100
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 3 * time.Minute
	}
	return o
}

// Values of Backend.Login and Backend.ClientIP for SMTP.
const (
	loginMaster     = "master"
	loginXCLIENT    = "xclient"
	clientIPXCLIENT = "xclient" // XCLIENT ADDR= and PORT=
	clientIPProxy   = "proxy"   // a PROXY v2 header (Postfix smtpd_upstream_proxy_protocol = haproxy)
)

// checkBackend refuses backend settings that would silently not work.
func checkBackend(b proxy.Backend) error {
	switch b.Login {
	case "", loginMaster, loginXCLIENT:
	default:
		return fmt.Errorf("smtp: unsupported backend login %q (want master or xclient)", b.Login)
	}
	switch b.ClientIP {
	case "", "none", clientIPXCLIENT, clientIPProxy:
	default:
		return fmt.Errorf("smtp: unsupported backend client_ip %q (want none, xclient or proxy)", b.ClientIP)
	}
	switch b.TLS {
	case "", proxy.TLSNone, proxy.TLSStartTLS, proxy.TLSImplicit:
	default:
		return fmt.Errorf("smtp: unsupported backend tls %q", b.TLS)
	}
	if b.Address == "" {
		return errors.New("smtp: backend address is empty")
	}
	return nil
}

// The backend's capabilities decide what EHLO offers before login (SIZE,
// SMTPUTF8, DSN, CHUNKING). They are learned from the backend's EHLO at the
// first connection. If the backend cannot be reached then, conservative
// ones are offered and the backend is asked again, at most every
// reprobeInterval, when clients connect.

// reprobeInterval is the least time between two capability probes of an
// unreachable backend. A variable so that tests can shorten it.
var reprobeInterval = 30 * time.Second

// Front is the submission front: a proxy.Front and the SMTP backend's
// proxy.Prober. It is safe for concurrent use by any number of listeners.
type Front struct {
	srv      *proxy.Server
	opts     Options       // with defaults
	backend  proxy.Backend // as the login sequence uses it (PrepareBackend)
	aliases  map[string][]string
	lim      proxy.Limits
	log      *slog.Logger
	obs      proxy.Observer
	greeting string
	ctx      context.Context // ends when the front closes (Shutdown)
	cancel   context.CancelFunc

	startOnce sync.Once
	caps      atomic.Pointer[backendCaps] // nil until a probe succeeded
	mu        sync.Mutex
	probing   bool
	lastProbe time.Time
	wg        sync.WaitGroup // probes
}

var (
	_ proxy.Front       = (*Front)(nil)
	_ proxy.ConnWrapper = (*Front)(nil)
	_ proxy.Prober      = (*Front)(nil)
)

// New returns the submission front of srv and registers its backend probe
// with srv ("smtp"). Serve it with srv.Serve. It returns an error if
// opts.Backend asks for something this package cannot do.
func New(srv *proxy.Server, opts Options) (*Front, error) {
	if err := checkBackend(opts.Backend); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	f := &Front{
		srv:      srv,
		opts:     opts,
		backend:  srv.PrepareBackend("smtp", opts.Backend),
		aliases:  normalizeAliases(opts.SenderAliases),
		lim:      srv.Limits(),
		log:      srv.Logger(),
		obs:      srv.Observer(),
		greeting: "220 " + opts.Hostname + " ESMTP mailgate\r\n",
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	srv.RegisterProbe("smtp", f)
	srv.OnShutdown(f.close)
	return f, nil
}

// Proto is "smtp".
func (f *Front) Proto() string { return "smtp" }

// Busy is the line a client on the STARTTLS port hears when it is turned
// away for capacity.
func (f *Front) Busy() string { return replyBusy }

// Probe checks the SMTP backend the way logins reach it (see probe.go).
func (f *Front) Probe(ctx context.Context, loginAs string) error { return f.probe(ctx, loginAs) }

// currentCaps are the backend's capabilities as last learned; before the
// first successful probe, conservative ones (and a probe is started if
// the last one is old enough).
func (f *Front) currentCaps() backendCaps {
	f.startOnce.Do(func() { f.learnCaps(true) })
	if c := f.caps.Load(); c != nil {
		return *c
	}
	f.mu.Lock()
	due := !f.probing && time.Since(f.lastProbe) >= reprobeInterval && f.ctx.Err() == nil
	if due {
		f.probing = true
		f.wg.Add(1)
	}
	f.mu.Unlock()
	if due {
		go func() {
			defer f.wg.Done()
			f.learnCaps(false)
		}()
	}
	return backendCaps{eightBit: true}
}

// learnCaps asks the backend for its capabilities (bounded by
// Limits.DialTimeout).
func (f *Front) learnCaps(first bool) {
	caps, err := f.probeCaps(f.ctx)
	f.mu.Lock()
	f.probing = false
	f.lastProbe = time.Now()
	f.mu.Unlock()
	switch {
	case err != nil && first:
		f.log.Warn("smtp backend unreachable at start: advertising conservative capabilities until it answers",
			"proto", "smtp", "backend", f.backend.Address, "err", err)
	case err != nil:
		f.log.Debug("smtp backend probe failed", "proto", "smtp", "err", err)
	default:
		f.log.Info("smtp backend capabilities", "proto", "smtp", "backend", f.backend.Address,
			"size", caps.size, "smtputf8", caps.utf8, "dsn", caps.dsn, "chunking", caps.chunking)
		f.caps.Store(&caps)
	}
}

// maxSize is the SIZE to advertise: the smaller of the configured and
// the backend's limit, 0 (no limit) only if neither has one.
func (f *Front) maxSize(caps backendCaps) int64 {
	configured, backend := f.opts.MaxMessageBytes, caps.size
	switch {
	case configured > 0 && backend > 0:
		return min(configured, backend)
	case configured > 0:
		return configured
	default:
		return backend
	}
}

// close stops the probes. It runs when the proxy.Server's Shutdown begins.
func (f *Front) close() {
	f.cancel()
	f.wg.Wait()
}

// ServeConn runs one client connection: the TLS handshake on an
// implicit-TLS listener, the conversation, and the session's end. c is
// closed by the caller when it returns.
func (f *Front) ServeConn(ctx context.Context, c *proxy.Conn) {
	f.currentCaps() // the first connection waits for the first probe
	nc := c.Raw
	if c.ImplicitTLS {
		tc, err := c.Handshake(c.Raw)
		if err != nil {
			c.Log.Debug("tls handshake failed", "err", err)
			return
		}
		nc = tc
	}
	sc := newConn(f, c, nc)
	c.Log.Debug("connection opened")
	// Shutdown: connections outside a mail transaction end at once, the
	// others when the drain time is up.
	stopIdle := c.OnShutdown(func() { sc.shutdown(stopLevelIdle) })
	stopAll := c.OnDrainEnd(func() { sc.shutdown(stopLevelAll) })
	sc.serve(ctx)
	stopIdle()
	stopAll()
	sc.close()
}
