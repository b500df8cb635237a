package pop3

import (
	"context"
	"sync"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// Options configure a Front.
type Options struct {
	// Backend is Dovecot's POP3 service. Address is host:port (empty: every
	// login fails as a backend outage, [SYS/TEMP]). TLS is "" or
	// proxy.TLSNone, proxy.TLSStartTLS (STLS first) or proxy.TLSImplicit.
	// ClientIP is how the client's address reaches Dovecot: "xclient"
	// (XCLIENT ADDR= PORT= SESSION=, honoured from login_trusted_networks),
	// "proxy" (a PROXY v2 header, for a haproxy = yes listener), or "" /
	// "none" (Dovecot sees mailgate's address). Login is unused.
	Backend proxy.Backend
}

// Front is the POP3 front end (proxy.Front) and its backend probe
// (proxy.Prober). Make it with New; the zero Front is not usable.
type Front struct {
	srv     *proxy.Server
	backend proxy.Backend // Options.Backend as PrepareBackend returned it

	mu         sync.Mutex
	warnedAddr time.Time // last "XCLIENT not offered" warning
}

var (
	_ proxy.Front  = (*Front)(nil)
	_ proxy.Prober = (*Front)(nil)
)

// New returns the POP3 front for srv and registers its probe
// (srv.CheckBackend("pop3", ...) and readiness use it).
func New(srv *proxy.Server, opts Options) *Front {
	f := &Front{srv: srv, backend: srv.PrepareBackend(proto, opts.Backend)}
	srv.RegisterProbe(proto, f)
	return f
}

// proto names POP3 in logs, metrics, ALPN and configuration problems.
const proto = "pop3"

// Proto implements proxy.Front.
func (f *Front) Proto() string { return proto }

// Busy implements proxy.Front: the line a client on a plaintext port hears
// when it is turned away for capacity.
func (f *Front) Busy() string { return replyBusy }

// ServeConn implements proxy.Front: the TLS handshake on an implicit-TLS
// listener, the pre-auth conversation, then the relay. c is closed by the
// caller when it returns.
func (f *Front) ServeConn(ctx context.Context, c *proxy.Conn) {
	nc := c.Raw
	if c.ImplicitTLS {
		tc, err := c.Handshake(c.Raw)
		if err != nil {
			c.Log.Debug("tls handshake failed", "err", err)
			return
		}
		nc = tc
	}
	pc := newConn(f, c, nc)
	c.Log.Debug("connection opened")
	// Shutdown wakes a waiting pre-auth read; readError then says why.
	stop := c.OnShutdown(func() { c.Raw.SetReadDeadline(time.Now()) })
	sess, _ := pc.preauth(ctx)
	stop()
	if sess == nil {
		c.Log.Info("connection closed before login", "duration", time.Since(c.Start).Round(time.Millisecond),
			"auth_failures", pc.authFailures)
		return
	}
	pc.relay(ctx, sess)
}

// warnNoXCLIENT logs, at most once a minute, that Dovecot does not take
// XCLIENT from mailgate: logins work, but Dovecot sees mailgate's address.
func (f *Front) warnNoXCLIENT(c *proxy.Conn, greeting []byte) {
	f.mu.Lock()
	due := time.Since(f.warnedAddr) >= time.Minute
	if due {
		f.warnedAddr = time.Now()
	}
	f.mu.Unlock()
	if due {
		c.Log.Warn("backend does not offer XCLIENT; the client address is not passed on",
			"greeting", proxy.Truncate(greeting), "fix", hintXCLIENT)
	}
}
