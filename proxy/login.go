package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// The one login sequence every front calls (Conn.Login, Conn.LoginPassword):
// the SASL exchange (auth's servers, framed by the front's Stepper), the
// throttle for passwords, the token check and identity policy, a seat in the
// logged-in pool, the backend dial (PROXY header, implicit TLS) and the
// front's backend dialog, then one log line and one metric. The front maps
// the error to its protocol's reply with Classify, in one place.

// Stepper is a front's framing of one SASL exchange: it sends chal to the
// client as its protocol frames a continuation and returns the response,
// decoded with auth.DecodeResponse ("*" is auth.ErrCanceled; bad base64
// auth.ErrMalformed). With wait > 0 a response that has not begun within
// wait returns ErrStepTimeout and nothing is written to the client (one
// that has begun is read to its end under the command timeout, so the
// stream stays in step). Any other
// error (the front has already answered it, or the connection is gone)
// ends the exchange as aborted.
type Stepper func(chal []byte, wait time.Duration) ([]byte, error)

// ErrStepTimeout is a Stepper's error for a response not received in time.
var ErrStepTimeout = errors.New("proxy: no SASL response in time")

// BackendDialog is a front's conversation with its backend, once the core
// has dialed it (PROXY header written, implicit TLS done).
type BackendDialog interface {
	// Login reads the greeting, runs STARTTLS and client-address forwarding
	// (ID, XCLIENT) as configured, and logs in as a says. On success the
	// session owns its connection (conn, or a TLS layer over it). Errors:
	// a *Refusal when the backend refused the user's own credentials
	// (a.Own), a *BackendProblem for a configuration problem, something
	// wrapping ErrMailboxRefused when the master login was accepted but
	// not the mailbox, anything else (wrapping ErrBackendUnavailable) an
	// outage. conn's deadline is the login's.
	Login(ctx context.Context, conn net.Conn, a BackendAuth) (*BackendSession, error)
}

// BackendAuth is who to log in as: the master user (AuthcID, Password) on
// behalf of AuthzID, or, for password passthrough (Own), the user's own
// credentials with an empty AuthzID. It carries what the dialog forwards.
type BackendAuth struct {
	AuthzID, AuthcID, Password string
	Own                        bool
	ClientTLS                  uint16   // the client leg's TLS version, 0 if plaintext
	Remote, Local              net.Addr // the client's address and the one it connected to
	SessionID                  string   // the connection id (Dovecot's session id)
}

// BackendSession is a backend connection logged in for the client.
type BackendSession struct {
	Conn    net.Conn // logged in; the relay's backend end
	Reply   []byte   // the backend's login reply for the front to pass on verbatim (nil: none)
	Pending []byte   // bytes the backend sent after its login reply
}

// Refusal is the backend's refusal of the user's own credentials (password
// passthrough), passed to the client verbatim.
type Refusal struct {
	Reply       []byte // the backend's reply lines, with CRLF
	Credentials bool   // it judged the credentials; false: an outage or a protocol problem
}

func (r *Refusal) Error() string {
	if r.Credentials {
		return "backend refused the credentials"
	}
	return "backend refused the login"
}

// Unwrap classifies the refusal for errors.Is.
func (r *Refusal) Unwrap() error {
	if r.Credentials {
		return errBackendRefused
	}
	return errBackendUnavailable
}

// Exported errors, for fronts' dialogs and reply mappers.
var (
	ErrBackendUnavailable = errBackendUnavailable
	ErrMailboxRefused     = errBackendAuthz
	ErrClientGone         = errClientGone
	ErrTooManySessions    = errTooManySessions
	// ErrUnsupportedMechanism: the client named a mechanism mailgate does
	// not offer (or a password one without passthrough). Not logged or
	// counted, and not known to Classify: fronts answer it first.
	ErrUnsupportedMechanism = errors.New("proxy: unsupported SASL mechanism")
)

// LoginRequest is one login a front asks for.
type LoginRequest struct {
	Mech      string        // as the client named it
	Initial   []byte        // the initial response; nil: none
	Step      Stepper       // nil when the protocol has no continuation (a one-shot login)
	Backend   Backend       // where to log in (see Server.PrepareBackend)
	Dialog    BackendDialog // the front's backend conversation
	ClientTLS uint16        // the client leg's TLS version (TLSVersion), 0 if plaintext
}

// Session is a login's result: the backend session and who logged in.
type Session struct {
	*BackendSession
	Identity    auth.Identity
	Password    bool         // logged in with the user's own password: no lifetime watch
	AppPassword string       // the app password's id when logged in with one: rechecked (AppPasswordOptions.Checker)
	Log         *slog.Logger // c.Log with user and mech
	token       string       // kept for revalidation only, never logged
}

// Login runs a SASL login: XOAUTH2 and OAUTHBEARER always, PLAIN and LOGIN
// with password passthrough or app passwords on for the front's protocol.
func (c *Conn) Login(ctx context.Context, req LoginRequest) (*Session, error) {
	start := time.Now()
	mech := strings.ToUpper(req.Mech)
	var sess *Session
	var err error
	switch {
	case mech == auth.MechXOAUTH2 || mech == auth.MechOAUTHBEARER:
		sess, err = c.tokenLogin(ctx, mech, req)
	case (mech == auth.MechPLAIN || mech == auth.MechLOGIN) && c.Passwords():
		sess, err = c.passwordExchange(ctx, mech, req)
	default:
		return nil, ErrUnsupportedMechanism
	}
	c.loginDone(mech, start, sess, err)
	return sess, err
}

// LoginPassword logs in with a user name and password the protocol carried
// itself (IMAP LOGIN, POP3 USER/PASS); mech names it in logs and metrics.
// The front checks Passwords() first.
func (c *Conn) LoginPassword(ctx context.Context, mech, user, password string, req LoginRequest) (*Session, error) {
	start := time.Now()
	sess, err := c.passwordLogin(ctx, mech, user, password, req)
	c.loginDone(mech, start, sess, err)
	return sess, err
}

// Reconnect logs in to the backend again for sess, whose backend
// connection a front lost after the login (SMTP reconnects at the next
// MAIL): the master login on behalf of sess's user through req's Backend
// and Dialog, with no SASL exchange and no login line or metric (the
// backend login is observed as usual). A password session cannot: its
// password was not kept; that is ErrBackendUnavailable. Errors are those
// of a BackendDialog, classified as Login's.
func (c *Conn) Reconnect(ctx context.Context, sess *Session, req LoginRequest) (*BackendSession, error) {
	if sess.Password {
		return nil, fmt.Errorf("%w: a password session cannot log in again", errBackendUnavailable)
	}
	return c.backendLogin(ctx, req, c.s.MasterAuth(sess.Identity.User))
}

func (c *Conn) tokenLogin(ctx context.Context, mech string, req LoginRequest) (*Session, error) {
	authCtx, cancel := context.WithDeadline(ctx, c.Deadline)
	defer cancel()
	authn, token := c.s.tokenAuthenticator(c.ID)
	srv, err := auth.NewServer(authCtx, mech, authn, c.Raw.RemoteAddr().String(), c.s.opts.Challenge)
	if err != nil {
		return nil, ErrUnsupportedMechanism
	}
	if err := exchange(srv, req.Initial, req.Step, srv.AwaitingDummy, c.s.limits.DummyReplyWait); err != nil {
		return nil, err
	}
	id, _ := srv.Identity()
	if err := safeIdentity(id); err != nil {
		return nil, err
	}
	bs, err := c.backendLogin(ctx, req, c.s.MasterAuth(id.User))
	if err != nil {
		return nil, err
	}
	sess := &Session{BackendSession: bs, Identity: id, Log: c.Log.With("user", id.User, "mech", mech)}
	if token != nil {
		sess.token = *token
	}
	return sess, nil
}

// passwordExchange collects PLAIN or LOGIN credentials, then logs in.
func (c *Conn) passwordExchange(ctx context.Context, mech string, req LoginRequest) (*Session, error) {
	ps, err := auth.NewPasswordServer(mech)
	if err != nil {
		return nil, ErrUnsupportedMechanism
	}
	if err := exchange(ps, req.Initial, req.Step, nil, 0); err != nil {
		return nil, err
	}
	user, pass, _ := ps.Credentials()
	return c.passwordLogin(ctx, mech, user, pass, req)
}

// throttledUser is the user a password attempt is charged to besides the
// client's address: none when the password is not one the backend could
// check (an app password, which cannot be guessed, or anything while
// passthrough is off), so that nobody can slow a chosen user down by
// sending junk in their name.
func (c *Conn) throttledUser(user, pass string) string {
	if c.appPasswords() && (!c.passthrough() || c.s.opts.AppPasswords.Verifier.IsAppPassword(pass)) {
		return ""
	}
	return user
}

// passwordLogin logs in with a user name and password after the throttle
// let the attempt through: with an app password (appPasswordLogin) when
// they are on and it is one, else with the user's own credentials at the
// backend (passthrough, when on), and tells the throttle the verdict. The
// password is not logged, cached or kept.
func (c *Conn) passwordLogin(ctx context.Context, mech, user, pass string, req LoginRequest) (*Session, error) {
	t := c.s.passwordThrottle()
	ip := c.Raw.RemoteAddr().String()
	if err := auth.CheckPassword(user, pass); err != nil {
		t.Failure(ip, "") // never reaches the backend: the address pays
		return nil, err
	}
	authCtx, cancel := context.WithDeadline(ctx, c.Deadline) // the throttle's wait and the app-password check
	defer cancel()
	done, err := t.Begin(authCtx, ip, c.throttledUser(user, pass))
	if err != nil {
		return nil, err
	}
	if c.appPasswords() {
		sess, err := c.appPasswordLogin(ctx, authCtx, mech, user, pass, req, done)
		if !errors.Is(err, auth.ErrNotAppPassword) {
			return sess, err
		}
		if !c.passthrough() {
			done(auth.AttemptFailed)
			return nil, fmt.Errorf("%w: %w, and password passthrough is off", auth.ErrInvalidCredentials, err)
		}
	}
	bs, err := c.backendLogin(ctx, req, BackendAuth{AuthcID: user, Password: pass, Own: true})
	done(passwordOutcome(err))
	if err != nil {
		return nil, err
	}
	id := auth.Identity{User: strings.ToLower(user), Mechanism: mech, Source: sourcePassword}
	return &Session{BackendSession: bs, Identity: id, Password: true, Log: c.Log.With("user", id.User, "mech", mech)}, nil
}

// saslServer is auth's Server and PasswordServer, as exchange drives them.
type saslServer interface {
	Next([]byte) ([]byte, bool, error)
}

// exchange drives srv with the front's framing until it is done. dummy, if
// set, tells whether the next challenge is an error challenge, whose reply
// dummyReply takes (waiting at most wait).
func exchange(srv saslServer, resp []byte, step Stepper, dummy func() bool, wait time.Duration) error {
	for {
		chal, done, err := srv.Next(resp)
		if done || err != nil {
			return err
		}
		if step == nil {
			return fmt.Errorf("%w: the protocol has no continuation", auth.ErrMalformed)
		}
		if dummy != nil && dummy() {
			return dummyReply(srv, step, chal, wait)
		}
		resp, err = step(chal, 0)
		switch {
		case errors.Is(err, auth.ErrCanceled), errors.Is(err, auth.ErrMalformed):
			return err
		case err != nil:
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
}

// dummyReply sends the error challenge chal and ends the exchange with the
// refusal it announces, whatever the client answers: the RFC 7628 dummy
// reply, "*", a line that is not base64 at all (Thunderbird re-sends its
// whole AUTHENTICATE command), or nothing within wait (s-nail and
// isync/mbsync never answer). A client that goes away instead is refused
// all the same: the error is an *unheardRefusal.
func dummyReply(srv saslServer, step Stepper, chal []byte, wait time.Duration) error {
	_, stepErr := step(chal, wait)
	_, _, err := srv.Next([]byte{}) // what the client sent does not matter
	switch {
	case stepErr == nil, errors.Is(stepErr, ErrStepTimeout), errors.Is(stepErr, auth.ErrCanceled),
		errors.Is(stepErr, auth.ErrMalformed):
		return err
	}
	return &unheardRefusal{refusal: err, cause: stepErr}
}

// unheardRefusal is a refusal whose client went away after the error
// challenge. Classify takes it as the refusal (logged, counted, a failed
// authentication for the connection's limits); errors.Is(err,
// ErrClientGone) tells fronts that nobody is listening for the reply.
type unheardRefusal struct{ refusal, cause error }

func (e *unheardRefusal) Error() string {
	return e.refusal.Error() + "; the client went away after the error challenge: " + e.cause.Error()
}

func (e *unheardRefusal) Unwrap() []error { return []error{e.refusal, errClientGone} }
