package smtp

import (
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// The go-smtp session: AUTH opens the backend session through the login
// sequence (auth.go); MAIL, RCPT and DATA are then forwarded one to one and
// the backend's replies returned verbatim (data.go for DATA). Every method
// returns an *smtp.SMTPError or nil (errors.go).

// session is one go-smtp session: from EHLO to QUIT, or to STARTTLS
// (after which go-smtp starts a new one).
type session struct {
	f  *Front
	cc *clientConn

	// mu serializes the methods: with BDAT go-smtp runs Data in its own
	// goroutine, and closes the chunk pipe before calling Reset or Logout.
	mu        sync.Mutex
	exchange  *saslBridge    // the AUTH exchange under way, if any
	sess      *proxy.Session // after a successful AUTH; nil before
	id        auth.Identity  // who logged in (sess.Identity)
	be        *backendSession
	stopWatch func() // ends the session lifetime watch; nil if none
	inTx      bool   // a MAIL was accepted by be and its transaction is open
	rcpts     int
	messages  int
	started   time.Time
}

var _ smtp.AuthSession = (*session)(nil)

func (f *Front) newSession(c *smtp.Conn) (smtp.Session, error) {
	cc := clientConnOf(c.Conn())
	if cc == nil {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error"}
	}
	cc.setTop(c.Conn()) // after STARTTLS, the *tls.Conn
	return &session{f: f, cc: cc}, nil
}

// AuthMechanisms is what EHLO advertises; go-smtp only does so after TLS.
func (ss *session) AuthMechanisms() []string {
	if ss.cc.pc.Passwords() {
		return []string{auth.MechOAUTHBEARER, auth.MechXOAUTH2, auth.MechPLAIN, auth.MechLOGIN}
	}
	return []string{auth.MechOAUTHBEARER, auth.MechXOAUTH2}
}

// backend returns the backend session, reconnecting if an earlier one
// failed. Called with mu held.
func (ss *session) backend() (*backendSession, error) {
	if ss.sess == nil {
		return nil, replyAuthRequired
	}
	if ss.be != nil {
		return ss.be, nil
	}
	cc := ss.cc
	if ss.sess.Password {
		cc.log.Info("backend connection lost; a password session cannot reconnect: closing")
		cc.closeAfterWrite.Store(true)
		return nil, replyBackendGone
	}
	d := ss.f.dialog(cc, cc.log)
	if _, err := cc.pc.Reconnect(cc.ctx, ss.sess, ss.f.loginRequest(d, cc)); err != nil {
		cc.log.Warn("backend reconnect failed", "err", err)
		return nil, replyBackendDown
	}
	cc.log.Info("backend reconnected")
	ss.be = d.session
	return ss.be, nil
}

// Mail checks the sender, then forwards MAIL FROM with the client's
// parameters (go-smtp's client adds BODY=8BITMIME itself; AUTH= is dropped:
// the backend knows who the user is).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.sess == nil {
		return replyAuthRequired
	}
	if ss.f.opts.EnforceSender && !senderAllowed(ss.id.User, from, ss.f.aliases) {
		ss.cc.log.Info("sender refused", "from", from)
		return replySenderRefused(from)
	}
	be, err := ss.backend()
	if err != nil {
		return err
	}
	var o smtp.MailOptions
	if opts != nil {
		o = *opts
	}
	o.Auth = nil
	if o.UTF8 && !be.caps.utf8 {
		return replyNoUTF8
	}
	if err := be.c.Mail(from, &o); err != nil {
		return ss.backendError("MAIL", err)
	}
	ss.inTx, ss.rcpts = true, 0
	ss.cc.busy.Store(true)
	return nil
}

// Rcpt forwards RCPT TO.
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.sess == nil {
		return replyAuthRequired
	}
	if ss.be == nil || !ss.inTx {
		return replyBackendLost // the backend failed during this transaction
	}
	if err := ss.be.c.Rcpt(to, opts); err != nil {
		return ss.backendError("RCPT", err)
	}
	ss.rcpts++
	return nil
}

// Reset aborts the backend's transaction, if one is open. go-smtp calls it
// after every message too, when the backend has already ended it.
func (ss *session) Reset() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.cc.busy.Store(false)
	if ss.be == nil || !ss.inTx {
		return
	}
	ss.inTx = false
	if err := ss.be.c.Reset(); err != nil {
		ss.backendError("RSET", err)
	}
}

// Logout ends the backend session (QUIT). go-smtp calls it when the client
// connection closes, and on STARTTLS.
func (ss *session) Logout() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.exchange != nil {
		ss.exchange.abandon(proxy.ErrClientGone)
		ss.exchange = nil
	}
	if ss.stopWatch != nil {
		ss.stopWatch()
		ss.stopWatch = nil
	}
	ss.cc.busy.Store(false)
	if ss.be != nil {
		ss.dropBackend(true)
	}
	if ss.sess != nil {
		ss.cc.log.Info("session ended", "messages", ss.messages, "duration", time.Since(ss.started).Round(time.Millisecond))
		ss.sess, ss.id = nil, auth.Identity{}
	}
	return nil
}

// backendError turns an error of the backend session into the client's
// reply: the backend's own reply verbatim, or 451 4.4.2 for a broken
// connection, which is then dropped (the next MAIL reconnects). Called
// with mu held.
func (ss *session) backendError(cmd string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Code == 421 { // the backend is closing the connection
			ss.cc.log.Info("backend closing", "cmd", cmd, "code", se.Code, "text", se.Message)
			ss.dropBackend(false)
			ss.cc.closeAfterWrite.Store(true)
		}
		return se
	}
	ss.cc.log.Warn("backend connection failed", "cmd", cmd, "err", err)
	ss.dropBackend(false)
	return replyBackendLost
}

// dropBackend closes the backend session, with QUIT if graceful.
func (ss *session) dropBackend(graceful bool) {
	be := ss.be
	ss.be, ss.inTx = nil, false
	if be == nil {
		return
	}
	if graceful {
		be.quit()
	} else {
		be.abort()
	}
	ss.cc.clearBackend(be.raw)
}

// senderAllowed reports whether user may use from as MAIL FROM: their own
// address, or one of aliases[user], where "*@domain" stands for any address
// at domain. The null sender is never allowed. user and the aliases are
// lower case (normalizeAliases); from is compared case-insensitively.
func senderAllowed(user, from string, aliases map[string][]string) bool {
	from = strings.ToLower(from)
	if from == "" {
		return false
	}
	if from == user {
		return true
	}
	at := strings.LastIndexByte(from, '@')
	for _, a := range aliases[user] {
		if dom, ok := strings.CutPrefix(a, "*@"); ok {
			if at > 0 && from[at+1:] == dom {
				return true
			}
		} else if a == from {
			return true
		}
	}
	return false
}

// normalizeAliases lower-cases keys and values of a sender alias map.
func normalizeAliases(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		k = strings.ToLower(strings.TrimSpace(k))
		for _, a := range v {
			out[k] = append(out[k], strings.ToLower(strings.TrimSpace(a)))
		}
	}
	return out
}

// drainBody reads r to its end, ignoring errors.
func drainBody(r io.Reader) { io.Copy(io.Discard, r) }
