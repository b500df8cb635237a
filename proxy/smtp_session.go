package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/auth"
)

// The go-smtp session: AUTH with XOAUTH2 or OAUTHBEARER opens the backend
// session (smtp_backend.go); MAIL, RCPT and DATA are then forwarded one to
// one and the backend's replies returned verbatim (smtp_data.go for DATA).
//
// go-smtp writes err.Error() for any error that is not an *smtp.SMTPError
// (a type assertion, not errors.As), and 554 for a failed DATA, so every
// method here returns an *smtp.SMTPError or nil.

// Replies of the transaction phase.
var (
	smtpReplyAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	// smtpReplyBackendLost: the backend connection failed; the session
	// reconnects at the next MAIL.
	smtpReplyBackendLost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to the mail server lost, try again"}
	smtpReplyBackendDown = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Mail server unavailable, try again later"}
	smtpReplyNoUTF8      = &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "SMTPUTF8 is not supported by the mail server"}
	smtpReplyTooManyAuth = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures"}
	// smtpReplyBackendGone: the backend connection of a password session
	// failed; mailgate does not keep the password to reconnect, so the
	// client must log in again.
	smtpReplyBackendGone = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to the mail server lost, log in again"}
)

func smtpReplySenderRefused(from string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: fmt.Sprintf("<%s>: Sender address rejected: not owned by the authenticated user", from)}
}

// smtpSession is one go-smtp session: from EHLO to QUIT, or to STARTTLS
// (after which go-smtp starts a new one).
type smtpSession struct {
	f  *smtpFront
	cc *smtpClientConn

	// mu serializes the methods: with BDAT go-smtp runs Data in its own
	// goroutine, and closes the chunk pipe before calling Reset or Logout.
	mu         sync.Mutex
	id         auth.Identity // after a successful AUTH
	authCancel context.CancelFunc
	be         *smtpBackend // nil before AUTH, and after the backend failed
	password   bool         // logged in with the user's own password (no reconnect, no lifetime)
	stopWatch  func()       // ends the session lifetime watch; nil if none
	inTx       bool         // a MAIL was accepted by be and its transaction is open
	rcpts      int
	messages   int
	started    time.Time
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (f *smtpFront) newSession(c *smtp.Conn) (smtp.Session, error) {
	cc := clientConnOf(c.Conn())
	if cc == nil {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error"}
	}
	cc.setTop(c.Conn()) // after STARTTLS, the *tls.Conn
	return &smtpSession{f: f, cc: cc}, nil
}

// AuthMechanisms is what EHLO advertises; go-smtp only does so after TLS.
func (ss *smtpSession) AuthMechanisms() []string {
	if ss.f.s.opts.Passwords.SMTP {
		return []string{auth.MechOAUTHBEARER, auth.MechXOAUTH2, auth.MechPLAIN, mechLOGIN}
	}
	return []string{auth.MechOAUTHBEARER, auth.MechXOAUTH2}
}

// Auth starts a SASL exchange; see smtpSASL, and smtpPasswordSASL for
// password passthrough.
func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	cc := ss.cc
	if int(cc.authFailures.Load()) >= ss.f.s.limits.MaxAuthFailures {
		cc.closeAfterWrite.Store(true)
		return nil, smtpReplyTooManyAuth
	}
	mech = strings.ToUpper(mech)
	ctx, cancel := context.WithDeadline(cc.ctx, cc.preauthEnd)
	var srv sasl.Server
	if ss.f.s.opts.Passwords.SMTP && (mech == auth.MechPLAIN || mech == mechLOGIN) {
		srv = &smtpPasswordSASL{ss: ss, ctx: ctx, mech: mech, start: time.Now(), cancel: cancel}
	} else {
		authn, token := ss.f.s.tokenAuthenticator()
		as, err := auth.NewServer(ctx, mech, authn, cc.RemoteAddr().String(), ss.f.s.opts.Challenge)
		if err != nil {
			cancel()
			return nil, smtp.ErrAuthUnknownMechanism
		}
		srv = &smtpSASL{ss: ss, srv: as, mech: mech, start: time.Now(), cancel: cancel, token: token}
	}
	ss.mu.Lock()
	if ss.authCancel != nil {
		ss.authCancel()
	}
	ss.authCancel = cancel
	ss.mu.Unlock()
	return srv, nil
}

// smtpSASL drives an auth.Server for go-smtp. When the token is good it
// opens the backend session before go-smtp answers 235, so the client hears
// success only if the backend accepted the user.
type smtpSASL struct {
	ss     *smtpSession
	srv    *auth.Server
	mech   string
	start  time.Time
	cancel context.CancelFunc
	token  *string // where the accepted token is kept for revalidation; nil if not needed
}

func (a *smtpSASL) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := a.srv.Next(resp)
	if err == nil && !done {
		return ch, false, nil // an empty challenge, or the RFC 7628 error challenge
	}
	defer a.cancel()
	ss, cc := a.ss, a.ss.cc
	if err != nil {
		return nil, true, ss.loginFailed(a.mech, a.start, err)
	}
	id, _ := a.srv.Identity()
	if err := safeIdentity(id); err != nil {
		return nil, true, ss.loginFailed(a.mech, a.start, err)
	}
	log := cc.log.With("user", id.User, "mech", a.mech)
	be, err := ss.f.s.openSMTPBackend(cc.ctx, cc, ss.f.opts.Hostname, smtpLogin{user: id.User}, log)
	if err != nil {
		return nil, true, ss.loginFailed(a.mech, a.start, err)
	}
	token := ""
	if a.token != nil {
		token = *a.token
	}
	stop := ss.f.s.watchSession(id, token, cc.RemoteAddr().String(), log,
		func(why sessionEnd) { cc.ended.CompareAndSwap(0, int32(why)) })
	ss.loggedIn(a.mech, id, be, false, stop, log, a.start)
	return nil, true, nil
}

// loggedIn records a successful login: the session is open on be.
func (ss *smtpSession) loggedIn(mech string, id auth.Identity, be *smtpBackend, password bool, stopWatch func(), log *slog.Logger, start time.Time) {
	cc := ss.cc
	ss.mu.Lock()
	ss.id, ss.be, ss.started, ss.password, ss.stopWatch = id, be, time.Now(), password, stopWatch
	ss.mu.Unlock()
	cc.authed.Store(true)
	cc.log = log
	d := time.Since(start)
	ss.f.s.obs.Login("smtp", mech, resultOK, d)
	log.Info("login", "result", resultOK, "source", id.Source, "auth", d.Round(time.Millisecond))
}

// loginFailed logs a failed exchange, counts it, and returns the reply.
func (ss *smtpSession) loginFailed(mech string, start time.Time, err error) error {
	cc := ss.cc
	r := smtpAuthReply(err)
	lvl := cc.log.Info
	if r.internal {
		lvl = cc.log.Warn
	}
	d := time.Since(start)
	ss.f.s.obs.Login("smtp", mech, r.result, d)
	lvl("login", "result", r.result, "mech", mech, "err", err, "auth", d.Round(time.Millisecond))
	if r.result == resultInvalid || r.result == resultMalformed || r.result == resultBlocked {
		if n := cc.authFailures.Add(1); int(n) >= ss.f.s.limits.MaxAuthFailures {
			cc.log.Info("too many authentication failures: closing")
			cc.closeAfterWrite.Store(true)
		}
	}
	return r.reply
}

// smtpPasswordSASL is the PLAIN or LOGIN exchange of password passthrough.
// When the client has given its user name and password it logs in to the
// backend with them (after the throttle let the attempt through), before
// go-smtp answers 235: the client hears success only if the backend
// accepted the password, and 535 5.7.8 if it did not.
type smtpPasswordSASL struct {
	ss      *smtpSession
	ctx     context.Context // bounds the throttle's wait (pre-auth deadline)
	mech    string          // PLAIN or LOGIN
	start   time.Time
	cancel  context.CancelFunc
	step    int
	user    string // LOGIN, once given
	gotUser bool
}

func (a *smtpPasswordSASL) Next(resp []byte) ([]byte, bool, error) {
	a.step++
	if a.mech == auth.MechPLAIN {
		if resp == nil && a.step == 1 {
			return []byte{}, false, nil // no initial response: ask for it
		}
		user, pass, err := plainCredentials(resp)
		if err != nil {
			a.cancel()
			return nil, true, a.ss.loginFailed(a.mech, a.start, err)
		}
		return a.login(user, pass)
	}
	switch {
	case a.step == 1 && len(resp) == 0:
		return loginUserChallenge, false, nil
	case !a.gotUser:
		a.user, a.gotUser = string(resp), true
		return loginPassChallenge, false, nil
	}
	return a.login(a.user, string(resp))
}

func (a *smtpPasswordSASL) login(user, pass string) ([]byte, bool, error) {
	defer a.cancel()
	ss, cc := a.ss, a.ss.cc
	t := ss.f.s.passwordThrottle()
	ip := cc.RemoteAddr().String()
	if err := checkPassword(user, pass); err != nil {
		t.Failure(ip, "") // never reaches the backend: the address pays
		return nil, true, ss.loginFailed(a.mech, a.start, err)
	}
	done, err := t.Begin(a.ctx, ip, user)
	if err != nil {
		return nil, true, ss.loginFailed(a.mech, a.start, err)
	}
	log := cc.log.With("user", user, "mech", a.mech)
	be, err := ss.f.s.openSMTPBackend(cc.ctx, cc, ss.f.opts.Hostname, smtpLogin{user: user, password: pass}, log)
	done(passwordOutcome(err))
	if err != nil {
		return nil, true, ss.loginFailed(a.mech, a.start, fmt.Errorf("user %s: %w", user, err))
	}
	id := auth.Identity{User: strings.ToLower(user), Mechanism: a.mech, Source: sourcePassword}
	ss.loggedIn(a.mech, id, be, true, nil, log, a.start)
	return nil, true, nil
}

// backend returns the backend session, reconnecting if an earlier one
// failed. Called with mu held.
func (ss *smtpSession) backend() (*smtpBackend, error) {
	if ss.id.User == "" {
		return nil, smtpReplyAuthRequired
	}
	if ss.be != nil {
		return ss.be, nil
	}
	cc := ss.cc
	if ss.password {
		cc.log.Info("backend connection lost; a password session cannot reconnect: closing")
		cc.closeAfterWrite.Store(true)
		return nil, smtpReplyBackendGone
	}
	be, err := ss.f.s.openSMTPBackend(cc.ctx, cc, ss.f.opts.Hostname, smtpLogin{user: ss.id.User}, cc.log)
	if err != nil {
		cc.log.Warn("backend reconnect failed", "err", err)
		return nil, smtpReplyBackendDown
	}
	cc.log.Info("backend reconnected")
	ss.be = be
	return be, nil
}

// Mail checks the sender, then forwards MAIL FROM with the client's
// parameters (go-smtp's client adds BODY=8BITMIME itself; AUTH= is dropped:
// the backend knows who the user is).
func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.id.User == "" {
		return smtpReplyAuthRequired
	}
	if ss.f.opts.EnforceSender && !senderAllowed(ss.id.User, from, ss.f.aliases) {
		ss.cc.log.Info("sender refused", "from", from)
		return smtpReplySenderRefused(from)
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
		return smtpReplyNoUTF8
	}
	if err := be.c.Mail(from, &o); err != nil {
		return ss.backendError("MAIL", err)
	}
	ss.inTx, ss.rcpts = true, 0
	ss.cc.busy.Store(true)
	return nil
}

// Rcpt forwards RCPT TO.
func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.id.User == "" {
		return smtpReplyAuthRequired
	}
	if ss.be == nil || !ss.inTx {
		return smtpReplyBackendLost // the backend failed during this transaction
	}
	if err := ss.be.c.Rcpt(to, opts); err != nil {
		return ss.backendError("RCPT", err)
	}
	ss.rcpts++
	return nil
}

// Reset aborts the backend's transaction, if one is open. go-smtp calls it
// after every message too, when the backend has already ended it.
func (ss *smtpSession) Reset() {
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
func (ss *smtpSession) Logout() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.authCancel != nil {
		ss.authCancel()
		ss.authCancel = nil
	}
	if ss.stopWatch != nil {
		ss.stopWatch()
		ss.stopWatch = nil
	}
	ss.cc.busy.Store(false)
	if ss.be != nil {
		ss.dropBackend(true)
	}
	if ss.id.User != "" {
		ss.cc.log.Info("session ended", "messages", ss.messages, "duration", time.Since(ss.started).Round(time.Millisecond))
		ss.id = auth.Identity{}
	}
	return nil
}

// backendError turns an error of the backend session into the client's
// reply: the backend's own reply verbatim, or 451 4.4.2 for a broken
// connection, which is then dropped (the next MAIL reconnects). Called
// with mu held.
func (ss *smtpSession) backendError(cmd string, err error) error {
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
	return smtpReplyBackendLost
}

// dropBackend closes the backend session, with QUIT if graceful.
func (ss *smtpSession) dropBackend(graceful bool) {
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
