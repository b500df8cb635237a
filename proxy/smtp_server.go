package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTP submission runs on go-smtp's server, which has no per-connection API:
// each ServeSMTP call accepts and tracks connections with the same loop as
// IMAP (Server.serve), then hands every accepted connection to a go-smtp
// Server through an in-memory listener (smtpConnQueue). The handler waits
// until go-smtp has closed the connection, so Shutdown and Close see SMTP
// connections like any other.
//
// go-smtp's server settings (SIZE, SMTPUTF8, DSN) cannot change while it
// serves, so they are learned from the backend's EHLO when ServeSMTP starts.
// If the backend cannot be reached then, conservative settings are used and
// the backend is probed again, at most every smtpReprobeInterval, when
// clients connect; once a probe succeeds a new go-smtp Server with the right
// settings takes the new connections and the old one keeps its own until
// they end.

// smtpReprobeInterval is the least time between two capability probes of an
// unreachable backend. A variable so that tests can shorten it.
var smtpReprobeInterval = 30 * time.Second

// ServeSMTP accepts submission clients on ln until ln fails, ctx is done or
// Shutdown is called; it then returns ErrServerClosed (or the accept error).
// With implicitTLS the TLS handshake comes first (submissions, port 465);
// otherwise clients must use STARTTLS before they can authenticate (port
// 587). ServeSMTP closes ln. Connections open when it returns carry on until
// they end or Shutdown/Close ends them.
//
// Before it accepts anyone it asks the backend for its EHLO capabilities
// (bounded by Limits.DialTimeout) to advertise matching SIZE, SMTPUTF8 and
// DSN. It returns an error at once if Options.SMTPBackend asks for something
// this package cannot do.
func (s *Server) ServeSMTP(ctx context.Context, ln net.Listener, implicitTLS bool) error {
	if err := checkSMTPBackend(s.opts.SMTPBackend); err != nil {
		ln.Close()
		return err
	}
	if s.isClosing() {
		ln.Close()
		return ErrServerClosed
	}
	f := newSMTPFront(ctx, s, implicitTLS, ln.Addr())
	defer f.close()
	return s.serve(ctx, &smtpListener{Listener: s.wrapProxyProtocol(ln)}, "smtp", implicitTLS, f.handle, smtpBusy)
}

// checkSMTPBackend refuses backend settings that would silently not work.
func checkSMTPBackend(b Backend) error {
	switch b.Login {
	case "", smtpLoginMaster, smtpLoginXCLIENT:
	default:
		return fmt.Errorf("proxy: unsupported SMTP backend login %q (want master or xclient)", b.Login)
	}
	switch b.ClientIP {
	case "", "none", smtpClientIPXCLIENT, smtpClientIPProxy:
	default:
		return fmt.Errorf("proxy: unsupported SMTP backend client_ip %q (want none, xclient or proxy)", b.ClientIP)
	}
	switch b.TLS {
	case "", TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fmt.Errorf("proxy: unsupported SMTP backend tls %q", b.TLS)
	}
	if b.Address == "" {
		return fmt.Errorf("proxy: SMTP backend address is empty")
	}
	return nil
}

// smtpFront is the go-smtp side of one ServeSMTP call.
type smtpFront struct {
	s        *Server
	opts     SMTPOptions // with defaults
	aliases  map[string][]string
	implicit bool
	addr     net.Addr
	ctx      context.Context // ends when ServeSMTP returns
	cancel   context.CancelFunc

	mu        sync.Mutex
	cur       *smtpFrontServer
	probed    bool // cur's settings come from the backend
	probing   bool
	lastProbe time.Time
	closed    bool
	wg        sync.WaitGroup // go-smtp Serve loops and probes
}

// smtpFrontServer is one go-smtp Server and the queue it accepts from.
type smtpFrontServer struct {
	gs *smtp.Server
	q  *smtpConnQueue
}

func newSMTPFront(ctx context.Context, s *Server, implicit bool, addr net.Addr) *smtpFront {
	opts := s.opts.SMTP.withDefaults()
	f := &smtpFront{s: s, opts: opts, aliases: normalizeAliases(opts.SenderAliases), implicit: implicit, addr: addr}
	f.ctx, f.cancel = context.WithCancel(ctx)
	caps, err := s.probeSMTPBackend(f.ctx, opts.Hostname)
	f.lastProbe = time.Now()
	if err != nil {
		s.log.Warn("smtp backend unreachable at start: advertising conservative capabilities until it answers",
			"proto", "smtp", "backend", s.opts.SMTPBackend.Address, "err", err)
		caps = smtpCaps{}
	} else {
		f.probed = true
		f.logCaps(caps)
	}
	f.mu.Lock()
	f.startLocked(caps)
	f.mu.Unlock()
	return f
}

func (f *smtpFront) logCaps(c smtpCaps) {
	f.s.log.Info("smtp backend capabilities", "proto", "smtp", "backend", f.s.opts.SMTPBackend.Address,
		"size", c.size, "smtputf8", c.utf8, "dsn", c.dsn, "8bitmime", c.eightBit)
	if !c.eightBit {
		f.s.log.Warn("smtp backend does not offer 8BITMIME; mailgate still advertises it (go-smtp always does)", "proto", "smtp")
	}
}

// startLocked starts a go-smtp Server with settings for caps and makes it the
// one new connections go to.
func (f *smtpFront) startLocked(caps smtpCaps) {
	gs := smtp.NewServer(smtp.BackendFunc(f.newSession))
	gs.Domain = f.opts.Hostname
	// go-smtp never sees plaintext: connections reach it through TLS that
	// mailgate terminated, STARTTLS included (smtp_starttls.go), as an
	// smtpTLSView, which it cannot tell from a plain connection. So its own
	// STARTTLS is off and its "no AUTH before TLS" check must be too.
	gs.TLSConfig = nil
	gs.AllowInsecureAuth = true
	gs.ReadTimeout = f.s.limits.CommandTimeout
	gs.WriteTimeout = f.s.limits.WriteTimeout
	// An XOAUTH2 JWT on the AUTH line takes several KiB; a line (AUTH's
	// included, or a SASL response) never holds more than the pre-login budget.
	gs.MaxLineLength = min(f.s.limits.MaxLine, f.s.limits.MaxPreloginBytes)
	gs.MaxRecipients = f.opts.MaxRecipients
	gs.MaxMessageBytes = smtpMaxSize(f.opts.MaxMessageBytes, caps.size)
	gs.EnableSMTPUTF8 = caps.utf8
	gs.EnableDSN = caps.dsn
	gs.EnableBINARYMIME = false // go-smtp's client always sends BODY=8BITMIME
	gs.EnableREQUIRETLS = false
	gs.ErrorLog = smtpErrorLog{f.s.log}
	// gs.Debug stays nil: it would log AUTH lines with tokens.

	fs := &smtpFrontServer{gs: gs, q: newSMTPConnQueue(f.addr)}
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

// smtpMaxSize is the SIZE to advertise: the smaller of the configured and
// the backend's limit, 0 (no limit) only if neither has one.
func smtpMaxSize(configured, backend int64) int64 {
	switch {
	case configured > 0 && backend > 0:
		return min(configured, backend)
	case configured > 0:
		return configured
	default:
		return backend
	}
}

// current returns the go-smtp Server for new connections, nil once closed.
func (f *smtpFront) current() *smtpFrontServer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	return f.cur
}

// maybeReprobe asks the backend for its capabilities again in the
// background if the last attempt failed long enough ago.
func (f *smtpFront) maybeReprobe() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.probed || f.probing || f.closed || time.Since(f.lastProbe) < smtpReprobeInterval {
		return
	}
	f.probing = true
	f.lastProbe = time.Now()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		caps, err := f.s.probeSMTPBackend(f.ctx, f.opts.Hostname)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.probing = false
		f.lastProbe = time.Now()
		if err != nil {
			f.s.log.Debug("smtp backend probe failed", "proto", "smtp", "err", err)
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
// return; their connections are not touched.
func (f *smtpFront) close() {
	f.mu.Lock()
	f.closed = true
	if f.cur != nil {
		f.cur.q.Close()
	}
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

// handle is the connHandler of SMTP: it prepares the connection, gives it
// to go-smtp and waits until go-smtp has closed it.
func (f *smtpFront) handle(ctx context.Context, raw net.Conn, ci connInfo) {
	log, implicitTLS := ci.log, ci.implicitTLS
	cc, ok := raw.(*smtpClientConn)
	if !ok { // cannot happen: ServeSMTP's listener wraps every connection
		log.Error("smtp connection of unexpected type", "type", fmt.Sprintf("%T", raw))
		return
	}
	start := time.Now()
	lim := f.s.limits
	cc.ctx, cc.log, cc.seat = ctx, log, ci.seat
	cc.preauthEnd = start.Add(lim.PreauthTimeout)
	preauth := time.AfterFunc(lim.PreauthTimeout, func() {
		if !cc.authed.Load() {
			log.Info("pre-auth timeout: closing")
			cc.preauthExpired()
		}
	})
	defer preauth.Stop()

	// Shutdown: connections outside a mail transaction end at once, the
	// others when the drain time is up (see smtpClientConn.Read).
	stopIdle := context.AfterFunc(f.s.shutdownCtx, func() { cc.shutdown(smtpStopIdle) })
	defer stopIdle()
	stopAll := context.AfterFunc(f.s.drainCtx, func() { cc.shutdown(smtpStopAll) })
	defer stopAll()

	cc.setTop(cc)
	var view *smtpTLSView
	if implicitTLS {
		tc := tls.Server(cc, f.s.tls.smtp)
		cc.SetDeadline(start.Add(lim.HandshakeTimeout))
		err := tc.HandshakeContext(ctx)
		cc.SetDeadline(time.Time{})
		if err != nil {
			log.Debug("tls handshake failed", "err", err)
			return
		}
		view = &smtpTLSView{Conn: tc, cc: cc}
	} else {
		tc, err := f.preTLS(cc)
		if err != nil {
			log.Debug("connection ended before TLS", "err", err)
			return
		}
		view = &smtpTLSView{Conn: tc, cc: cc, skipGreeting: true}
	}
	var nc net.Conn = view
	cc.setTop(nc)
	log.Debug("connection opened")

	f.maybeReprobe()
	for {
		fs := f.current()
		if fs == nil {
			return
		}
		if fs.q.push(nc) {
			break
		}
		// That go-smtp Server was replaced in the meantime: try the new one.
	}
	<-cc.done
	if !cc.authed.Load() {
		log.Info("connection closed before login", "duration", time.Since(start).Round(time.Millisecond),
			"auth_failures", cc.authFailures.Load())
	}
}

// smtpListener wraps every accepted connection in an smtpClientConn, so
// that Server's connection tracking (and Shutdown) holds the wrapper.
type smtpListener struct {
	net.Listener
}

func (l *smtpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &smtpClientConn{Conn: c, done: make(chan struct{})}, nil
}

// smtpClientConn is an accepted submission connection (under any TLS
// layer) with what the go-smtp session needs to know about it.
//
// Close closes the client connection and the backend connection registered
// with setBackend; it is safe to call more than once and from any goroutine.
type smtpClientConn struct {
	net.Conn

	// Set by the handler before go-smtp sees the connection.
	ctx        context.Context
	log        *slog.Logger // the connection's logger; with user and mech after login
	preauthEnd time.Time
	seat       *seat // the connection's place in the pools

	// dataIdle, when > 0, makes every Read push the read deadline this far
	// ahead (nanoseconds): go-smtp sets one deadline for a whole DATA body.
	dataIdle atomic.Int64
	// closeAfterWrite closes the connection once the next reply is written
	// (after 421, or the last allowed authentication failure).
	closeAfterWrite atomic.Bool
	authed          atomic.Bool
	expired         atomic.Bool // the pre-auth time is up (before login)
	authFailures    atomic.Int32
	// busy: a mail transaction is open (from an accepted MAIL to the end of
	// its DATA, or RSET). Shutdown lets it finish during the drain time.
	busy atomic.Bool
	// stop is the shutdown level: smtpStopIdle, then smtpStopAll.
	stop atomic.Int32
	// ended is set (a sessionEnd) when the session's token has expired or
	// been found invalid: the next command outside a mail transaction is
	// answered 421 4.7.0 and the connection closed (see Read).
	ended atomic.Int32
	// sawEOF: the client closed its side. A BDAT chunk cut short by EOF
	// looks complete to go-smtp, so Data checks this before the final dot.
	sawEOF atomic.Bool
	// top is what go-smtp reads and writes: this conn or a *tls.Conn over it.
	top atomic.Pointer[net.Conn]

	mu      sync.Mutex
	backend net.Conn
	closed  bool
	done    chan struct{} // closed by Close
}

// Shutdown levels of smtpClientConn.stop.
const (
	smtpStopIdle = 1 // end the connection at its next read outside a transaction
	smtpStopAll  = 2 // end it at its next read
)

// errSMTPShutdown is what Read returns once the connection is to end.
// It is not io.EOF: go-smtp would take a BDAT chunk cut off by EOF as whole.
var errSMTPShutdown = errors.New("proxy: server shutting down")

func (c *smtpClientConn) Read(p []byte) (int, error) {
	if c.stopping() {
		return 0, c.goodbye()
	}
	if c.preauthOver() {
		return 0, c.timedOut()
	}
	if d := c.dataIdle.Load(); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
		if c.stopping() { // shutdown may have set its deadline just before
			return 0, c.goodbye()
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil && n == 0 && c.stopping() { // woken by shutdown's deadline
		return 0, c.goodbye()
	}
	if err != nil && n == 0 && c.preauthOver() { // woken by the pre-auth timer
		return 0, c.timedOut()
	}
	if n > 0 && c.ended.Load() != 0 && !c.busy.Load() {
		// The next command after the end of the session's lifetime: it is
		// not read, but answered with 421.
		return 0, c.endSession(sessionEnd(c.ended.Load()))
	}
	if err == io.EOF {
		c.sawEOF.Store(true)
	}
	return n, err
}

func (c *smtpClientConn) stopping() bool {
	switch c.stop.Load() {
	case smtpStopAll:
		return true
	case smtpStopIdle:
		return !c.busy.Load()
	}
	return false
}

// goodbye writes 421 and closes the connection. It runs inside a Read by
// go-smtp's goroutine, the only one that writes to the client, so the reply
// cannot interleave with another.
func (c *smtpClientConn) goodbye() error {
	if p := c.top.Load(); p != nil {
		top := *p
		top.SetWriteDeadline(time.Now().Add(smtpGoodbyeTimeout))
		io.WriteString(top, "421 4.3.2 Service shutting down, try again later\r\n")
	}
	c.Close()
	return errSMTPShutdown
}

// preauthExpired ends a connection that has not logged in in time: a Read
// waiting for the client is woken and answers 421 4.4.2 (timedOut); a
// connection busy elsewhere (a login under way) is closed after a grace.
func (c *smtpClientConn) preauthExpired() {
	c.expired.Store(true)
	c.Conn.SetReadDeadline(time.Now())
	time.AfterFunc(smtpGoodbyeTimeout, func() {
		if !c.authed.Load() {
			c.Close()
		}
	})
}

func (c *smtpClientConn) preauthOver() bool { return c.expired.Load() && !c.authed.Load() }

// errSMTPPreauthTimeout is what Read returns after the pre-auth time is up.
var errSMTPPreauthTimeout = errors.New("proxy: pre-authentication time limit reached")

// timedOut writes the 421 of the pre-auth timeout and closes; like goodbye,
// it runs inside a Read by the goroutine that writes replies.
func (c *smtpClientConn) timedOut() error {
	if p := c.top.Load(); p != nil {
		top := *p
		top.SetWriteDeadline(time.Now().Add(smtpGoodbyeTimeout))
		io.WriteString(top, "421 4.4.2 Pre-authentication time limit reached, closing connection\r\n")
	}
	c.Close()
	return errSMTPPreauthTimeout
}

// errSMTPSessionEnded is what Read returns once the session's lifetime is over.
var errSMTPSessionEnded = errors.New("proxy: session lifetime over")

// endSession writes the 421 for the end of the session's lifetime and closes
// the connection. Like goodbye, it runs inside go-smtp's Read.
func (c *smtpClientConn) endSession(why sessionEnd) error {
	if p := c.top.Load(); p != nil {
		top := *p
		top.SetWriteDeadline(time.Now().Add(smtpGoodbyeTimeout))
		msg := "421 4.7.0 Access token expired, log in again\r\n"
		if why == endRevoked {
			msg = "421 4.7.0 Access token no longer valid, log in again\r\n"
		}
		io.WriteString(top, msg)
	}
	c.log.Info("closing: session lifetime over", "end", why.String())
	c.Close()
	return errSMTPSessionEnded
}

// smtpGoodbyeTimeout bounds writing the shutdown 421.
const smtpGoodbyeTimeout = 5 * time.Second

// shutdown sets the shutdown level and wakes a Read that should end.
func (c *smtpClientConn) shutdown(level int32) {
	for {
		cur := c.stop.Load()
		if cur >= level || c.stop.CompareAndSwap(cur, level) {
			break
		}
	}
	if c.stopping() {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// setTop records what go-smtp talks through (after a TLS handshake, the
// *tls.Conn), for goodbye.
func (c *smtpClientConn) setTop(nc net.Conn) { c.top.Store(&nc) }

func (c *smtpClientConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfterWrite.Load() {
		c.Close()
	}
	return n, err
}

func (c *smtpClientConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	be := c.backend
	c.backend = nil
	close(c.done)
	c.mu.Unlock()
	if be != nil {
		be.Close()
	}
	return c.Conn.Close()
}

// setBackend registers the backend connection to be closed with the client
// connection. It returns false, and the caller closes be, if the client
// connection is already closed.
func (c *smtpClientConn) setBackend(be net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.backend = be
	return true
}

// clearBackend forgets be after its owner has closed it.
func (c *smtpClientConn) clearBackend(be net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backend == be {
		c.backend = nil
	}
}

// clientConnOf finds the smtpClientConn under what go-smtp holds.
func clientConnOf(nc net.Conn) *smtpClientConn {
	if v, ok := nc.(*smtpTLSView); ok {
		return v.cc
	}
	return nil
}

// smtpConnQueue is the net.Listener a go-smtp Server accepts from: the
// handler pushes connections that the proxy Server has accepted and tracks.
type smtpConnQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newSMTPConnQueue(addr net.Addr) *smtpConnQueue {
	return &smtpConnQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *smtpConnQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the go-smtp Server; false means the queue is closed and
// nobody took c.
func (q *smtpConnQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *smtpConnQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *smtpConnQueue) Addr() net.Addr { return q.addr }

// smtpErrorLog sends go-smtp's internal messages to slog: panics as errors,
// connection errors (client resets, failed handshakes) at debug level.
type smtpErrorLog struct{ log *slog.Logger }

func (l smtpErrorLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l smtpErrorLog) Println(v ...any)               { l.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (l smtpErrorLog) print(msg string) {
	if strings.HasPrefix(msg, "panic") {
		l.log.Error("smtp server", "proto", "smtp", "msg", msg)
		return
	}
	l.log.Debug("smtp server", "proto", "smtp", "msg", msg)
}
