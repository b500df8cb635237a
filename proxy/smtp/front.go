// Package smtp is mailgate's submission front (RFC 6409, RFC 4954, RFC
// 3207): the plaintext phase of the STARTTLS port (starttls.go), then
// go-smtp's server behind TLS that mailgate terminated, whose AUTH runs
// package auth's SASL servers inside the shared login sequence (auth.go),
// with one reply mapper (errors.go); the backend session is a go-smtp client
// logged in to Postfix (backend.go, the login's proxy.BackendDialog), and
// MAIL, RCPT and DATA are relayed command by command, the backend's replies
// passed on verbatim (session.go, data.go), so that the client hears 250 for
// DATA only after the backend said 250. Everything else (listeners, limits,
// the login sequence, backend dialing) is package proxy's; see proxy/doc.go
// for the walk of a login.
//
// References: RFC 5321, RFC 6409 (submission), RFC 4954 (AUTH), RFC 3207
// (STARTTLS), RFC 3030 (CHUNKING), RFC 7628 (OAUTHBEARER), Postfix's
// XCLIENT_README.
package smtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

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

// Submission runs on go-smtp's server, which has no per-connection API: the
// Front hands every connection the proxy.Server gave it (ServeConn) to a
// go-smtp Server through an in-memory listener (connQueue), and waits until
// go-smtp has closed it, so that Shutdown and Close see submission
// connections like any other.
//
// go-smtp's server settings (SIZE, SMTPUTF8, DSN) cannot change while it
// serves, so they are learned from the backend's EHLO before the first
// connection is handed over. If the backend cannot be reached then,
// conservative settings are used and the backend is probed again, at most
// every reprobeInterval, when clients connect; once a probe succeeds a new
// go-smtp Server with the right settings takes the new connections and the
// old one keeps its own until they end. The go-smtp Servers stop accepting
// when the proxy.Server's Shutdown begins.

// reprobeInterval is the least time between two capability probes of an
// unreachable backend. A variable so that tests can shorten it.
var reprobeInterval = 30 * time.Second

// Front is the submission front: a proxy.Front (and proxy.ConnWrapper) and
// the SMTP backend's proxy.Prober. It is safe for concurrent use by any
// number of listeners.
type Front struct {
	srv     *proxy.Server
	opts    Options       // with defaults
	backend proxy.Backend // as the login sequence uses it (PrepareBackend)
	aliases map[string][]string
	lim     proxy.Limits
	log     *slog.Logger
	obs     proxy.Observer
	ctx     context.Context // ends when the front closes (Shutdown)
	cancel  context.CancelFunc

	startOnce sync.Once
	mu        sync.Mutex
	cur       *frontServer
	probed    bool // cur's settings come from the backend
	probing   bool
	lastProbe time.Time
	closed    bool
	wg        sync.WaitGroup // go-smtp Serve loops and probes
}

var (
	_ proxy.Front       = (*Front)(nil)
	_ proxy.ConnWrapper = (*Front)(nil)
	_ proxy.Prober      = (*Front)(nil)
)

// New returns the submission front of srv and registers its backend probe
// with srv ("smtp"). Serve it with srv.Serve. It returns an error if
// opts.Backend asks for something this package cannot do. The front's
// go-smtp servers start with the first connection and stop when srv's
// Shutdown begins.
func New(srv *proxy.Server, opts Options) (*Front, error) {
	if err := checkBackend(opts.Backend); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	f := &Front{
		srv:     srv,
		opts:    opts,
		backend: srv.PrepareBackend("smtp", opts.Backend),
		aliases: normalizeAliases(opts.SenderAliases),
		lim:     srv.Limits(),
		log:     srv.Logger(),
		obs:     srv.Observer(),
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
func (f *Front) Busy() string { return "421 4.7.0 Too many connections, try again later\r\n" }

// WrapConn wraps an accepted connection in a clientConn, so that what the
// proxy.Server closes (eviction, the end of Shutdown) closes the backend
// session with it.
func (f *Front) WrapConn(c net.Conn) net.Conn { return &clientConn{Conn: c, done: make(chan struct{})} }

// Probe checks the SMTP backend the way logins reach it (see probe.go).
func (f *Front) Probe(ctx context.Context, loginAs string) error { return f.probe(ctx, loginAs) }

// frontServer is one go-smtp Server and the queue it accepts from.
type frontServer struct {
	gs *smtp.Server
	q  *connQueue
}

// start asks the backend for its capabilities (bounded by
// Limits.DialTimeout) and starts the first go-smtp Server.
func (f *Front) start() {
	caps, err := f.probeCaps(f.ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastProbe = time.Now()
	if err != nil {
		f.log.Warn("smtp backend unreachable at start: advertising conservative capabilities until it answers",
			"proto", "smtp", "backend", f.backend.Address, "err", err)
		caps = backendCaps{}
	} else {
		f.probed = true
		f.logCaps(caps)
	}
	if !f.closed {
		f.startLocked(caps)
	}
}

func (f *Front) logCaps(c backendCaps) {
	f.log.Info("smtp backend capabilities", "proto", "smtp", "backend", f.backend.Address,
		"size", c.size, "smtputf8", c.utf8, "dsn", c.dsn, "8bitmime", c.eightBit)
	if !c.eightBit {
		f.log.Warn("smtp backend does not offer 8BITMIME; mailgate still advertises it (go-smtp always does)", "proto", "smtp")
	}
}

// startLocked starts a go-smtp Server with settings for caps and makes it the
// one new connections go to.
func (f *Front) startLocked(caps backendCaps) {
	gs := smtp.NewServer(smtp.BackendFunc(f.newSession))
	gs.Domain = f.opts.Hostname
	// go-smtp never sees plaintext: connections reach it through TLS that
	// mailgate terminated, STARTTLS included (starttls.go), as a tlsView,
	// which it cannot tell from a plain connection. So its own STARTTLS is
	// off and its "no AUTH before TLS" check must be too.
	gs.TLSConfig = nil
	gs.AllowInsecureAuth = true
	gs.ReadTimeout = f.lim.CommandTimeout
	gs.WriteTimeout = f.lim.WriteTimeout
	// An XOAUTH2 JWT on the AUTH line takes several KiB; a line (AUTH's
	// included, or a SASL response) never holds more than the pre-login budget.
	gs.MaxLineLength = min(f.lim.MaxLine, f.lim.MaxPreloginBytes)
	gs.MaxRecipients = f.opts.MaxRecipients
	gs.MaxMessageBytes = maxSize(f.opts.MaxMessageBytes, caps.size)
	gs.EnableSMTPUTF8 = caps.utf8
	gs.EnableDSN = caps.dsn
	gs.EnableBINARYMIME = false // go-smtp's client always sends BODY=8BITMIME
	gs.EnableREQUIRETLS = false
	gs.ErrorLog = errorLog{f.log}
	// gs.Debug stays nil: it would log AUTH lines with tokens.

	fs := &frontServer{gs: gs, q: newConnQueue()}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		gs.Serve(fs.q)
	}()
	if old := f.cur; old != nil {
		old.q.Close() // its connections carry on; it accepts no more
	}
	f.cur = fs
}

// maxSize is the SIZE to advertise: the smaller of the configured and
// the backend's limit, 0 (no limit) only if neither has one.
func maxSize(configured, backend int64) int64 {
	switch {
	case configured > 0 && backend > 0:
		return min(configured, backend)
	case configured > 0:
		return configured
	default:
		return backend
	}
}

// current returns the go-smtp Server for new connections, starting the
// first one if need be; nil once closed.
func (f *Front) current() *frontServer {
	f.startOnce.Do(f.start)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	return f.cur
}

// maybeReprobe asks the backend for its capabilities again in the
// background if the last attempt failed long enough ago.
func (f *Front) maybeReprobe() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.probed || f.probing || f.closed || f.cur == nil || time.Since(f.lastProbe) < reprobeInterval {
		return
	}
	f.probing = true
	f.lastProbe = time.Now()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		caps, err := f.probeCaps(f.ctx)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.probing = false
		f.lastProbe = time.Now()
		if err != nil {
			f.log.Debug("smtp backend probe failed", "proto", "smtp", "err", err)
			return
		}
		if f.closed {
			return
		}
		f.probed = true
		f.logCaps(caps)
		f.startLocked(caps)
	}()
}

// close stops accepting: go-smtp Servers see their listener close and
// return; their connections are not touched. It runs when the
// proxy.Server's Shutdown begins.
func (f *Front) close() {
	f.mu.Lock()
	f.closed = true
	if f.cur != nil {
		f.cur.q.Close()
	}
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

// ServeConn prepares pc (TLS, the plaintext phase on the STARTTLS port),
// gives it to go-smtp and waits until go-smtp has closed it.
func (f *Front) ServeConn(ctx context.Context, pc *proxy.Conn) {
	log := pc.Log
	cc, ok := pc.Raw.(*clientConn)
	if !ok { // cannot happen: WrapConn wraps every connection
		log.Error("smtp connection of unexpected type", "type", fmt.Sprintf("%T", pc.Raw))
		return
	}
	cc.ctx, cc.log, cc.pc = ctx, log, pc
	preauth := time.AfterFunc(time.Until(pc.Deadline), func() {
		if !cc.authed.Load() {
			log.Info("pre-auth timeout: closing")
			cc.preauthExpired()
		}
	})
	defer preauth.Stop()

	// Shutdown: connections outside a mail transaction end at once, the
	// others when the drain time is up (see clientConn.Read).
	stopIdle := pc.OnShutdown(func() { cc.shutdown(stopLevelIdle) })
	defer stopIdle()
	stopAll := pc.OnDrainEnd(func() { cc.shutdown(stopLevelAll) })
	defer stopAll()

	cc.setTop(cc)
	var view *tlsView
	if pc.ImplicitTLS {
		tc, err := pc.Handshake(cc)
		if err != nil {
			log.Debug("tls handshake failed", "err", err)
			return
		}
		view = &tlsView{Conn: tc, cc: cc}
	} else {
		tc, err := f.preTLS(cc)
		if err != nil {
			log.Debug("connection ended before TLS", "err", err)
			return
		}
		view = &tlsView{Conn: tc, cc: cc, skipGreeting: true}
	}
	var nc net.Conn = view
	cc.setTop(nc)
	log.Debug("connection opened")

	for {
		fs := f.current()
		if fs == nil {
			return
		}
		f.maybeReprobe()
		if fs.q.push(nc) {
			break
		}
		// That go-smtp Server was replaced in the meantime: try the new one.
	}
	<-cc.done
	if !cc.authed.Load() {
		log.Info("connection closed before login", "duration", time.Since(pc.Start).Round(time.Millisecond),
			"auth_failures", cc.authFailures.Load())
	}
}

// connQueue is the net.Listener a go-smtp Server accepts from: ServeConn
// pushes connections that the proxy.Server has accepted and tracks.
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the go-smtp Server; false means the queue is closed and
// nobody took c.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr is a placeholder: go-smtp only logs it.
func (q *connQueue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "mailgate" }
func (queueAddr) String() string  { return "submission" }

// errorLog sends go-smtp's internal messages to slog: panics as errors,
// connection errors (client resets, failed handshakes) at debug level.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (l errorLog) print(msg string) {
	if strings.HasPrefix(msg, "panic") {
		l.log.Error("smtp server", "proto", "smtp", "msg", msg)
		return
	}
	l.log.Debug("smtp server", "proto", "smtp", "msg", msg)
}
