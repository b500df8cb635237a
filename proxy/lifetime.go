package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Session lifetime (Options.Lifetime): a watch per token-authenticated
// session fires when the token's expiry passes and, with revalidate, when
// the provider no longer accepts the token. It holds no goroutine while it
// waits (two timers), so idle sessions stay cheap. What "ending" means is
// the protocol's business: IMAP stops the relay and says BYE, SMTP answers
// the next command with 421.

// sessionEnd says why a session's authentication ended (0: it has not).
type sessionEnd int32

const (
	endExpired     sessionEnd = iota + 1 // the token's exp passed
	endRevoked                           // the provider refused the token on revalidation
	endAppPassword                       // the app password was revoked, expired or suspended
)

func (e sessionEnd) String() string {
	switch e {
	case endExpired:
		return EndExpired
	case endRevoked:
		return EndRevoked
	case endAppPassword:
		return EndAppPassword
	}
	return ""
}

// revalidateTimeout bounds one revalidation (the provider call).
const revalidateTimeout = 30 * time.Second

// lifetime returns the lifetime options with defaults.
func (s *Server) lifetime() LifetimeOptions { return s.opts.Lifetime.withDefaults() }

// tokenAuthenticator returns the Authenticator for one token login on the
// connection connID (passed on in Credentials.ConnID, for the refusal's log
// line) and, with revalidate, a pointer to where the accepted token is then
// kept (the session needs it later; auth.Server does not hand it out).
// Without revalidate the token is not kept and the pointer is nil.
func (s *Server) tokenAuthenticator(connID string) (Authenticator, *string) {
	var token *string
	if s.lifetime().Mode == LifetimeRevalidate {
		token = new(string)
	}
	a := AuthenticatorFunc(func(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
		c.ConnID = connID
		id, err := s.opts.Authenticator.Authenticate(ctx, c)
		if err == nil && token != nil {
			*token = c.Token
		}
		return id, err
	})
	return a, token
}

// sessionWatch is the lifetime watch of one session.
type sessionWatch struct {
	s      *Server
	id     auth.Identity
	token  string // revalidate only; never logged
	remote string
	log    *slog.Logger
	every  time.Duration
	end    func(sessionEnd)
	// check asks whether the session may go on (nil: yes; an error
	// wrapping auth.ErrInvalidCredentials: no; others: cannot tell), and
	// refused is how the session then ends.
	check   func(ctx context.Context) error
	refused sessionEnd

	ctx    context.Context // ends with stop: cancels a provider call in flight
	cancel context.CancelFunc

	mu      sync.Mutex
	stopped bool
	fired   bool
	expiry  *time.Timer
	recheck *time.Timer
}

// watchSession arranges for end to be called, at most once and from another
// goroutine, when the session authenticated as id must end (see
// LifetimeOptions). token is needed with revalidate only. The returned stop
// must be called when the session ends; after it returns end is not called
// (a call already under way may still be finishing).
func (s *Server) watchSession(id auth.Identity, token, remote string, log *slog.Logger, end func(sessionEnd)) (stop func()) {
	lt := s.lifetime()
	if lt.Mode == LifetimeNone {
		return func() {}
	}
	w := &sessionWatch{s: s, id: id, token: token, remote: remote, log: log, every: lt.RevalidateEvery, end: end, refused: endRevoked}
	w.check = w.revalidateToken
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.mu.Lock()
	defer w.mu.Unlock()
	if !id.Expiry.IsZero() {
		w.expiry = time.AfterFunc(time.Until(id.Expiry), func() {
			w.log.Info("session ends: token expired", "expiry", id.Expiry.UTC().Format(time.RFC3339))
			w.fire(endExpired)
		})
	} else if lt.Mode == LifetimeToken {
		log.Debug("token expiry unknown: the session is not bounded by it")
	}
	if lt.Mode == LifetimeRevalidate {
		if token == "" {
			// Cannot happen: the token is captured at login.
			log.Error("session lifetime: no token to revalidate; the session is not revalidated")
		} else {
			w.recheck = time.AfterFunc(w.every, w.revalidate)
		}
	}
	return w.stop
}

// fire calls end once, unless the watch was stopped.
func (w *sessionWatch) fire(why sessionEnd) {
	w.mu.Lock()
	if w.stopped || w.fired {
		w.mu.Unlock()
		return
	}
	w.fired = true
	w.mu.Unlock()
	w.end(why)
}

func (w *sessionWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.token = ""
	if w.expiry != nil {
		w.expiry.Stop()
	}
	if w.recheck != nil {
		w.recheck.Stop()
	}
	w.cancel()
}

// watchAppPassword arranges for end to be called, at most once and from
// another goroutine, when the app password that opened sess no longer
// may (AppPasswordOptions.Checker, every RecheckEvery). The returned stop
// must be called when the session ends.
func (s *Server) watchAppPassword(sess *Session, proto, remote string, end func(sessionEnd)) (stop func()) {
	o := s.opts.AppPasswords
	if o.Checker == nil || o.RecheckEvery <= 0 {
		return func() {}
	}
	id, user := sess.AppPassword, sess.Identity.User
	w := &sessionWatch{s: s, id: sess.Identity, remote: remote, log: sess.Log, every: o.RecheckEvery, end: end, refused: endAppPassword,
		check: func(ctx context.Context) error { return o.Checker.StillValid(ctx, id, user, proto) }}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recheck = time.AfterFunc(w.every, w.revalidate)
	return w.stop
}

// what names what the watch checks, for the log.
func (w *sessionWatch) what() string {
	if w.refused == endAppPassword {
		return "app password"
	}
	return "token"
}

// revalidateToken asks the provider about the session's token.
func (w *sessionWatch) revalidateToken(ctx context.Context) error {
	w.mu.Lock()
	token := w.token
	w.mu.Unlock()
	if token == "" { // stopped
		return context.Canceled
	}
	return w.s.opts.Lifetime.Revalidator.Revalidate(ctx, auth.Credentials{
		Mechanism: w.id.Mechanism, User: w.id.User, Token: token, RemoteAddr: w.remote,
	})
}

// revalidate runs the check and re-arms itself.
func (w *sessionWatch) revalidate() {
	ctx, cancel := context.WithTimeout(w.ctx, revalidateTimeout)
	err := w.check(ctx)
	cancel()
	switch {
	case w.ctx.Err() != nil: // stopped meanwhile
		return
	case err == nil:
		w.log.Debug(w.what() + " revalidated")
	case errors.Is(err, auth.ErrInvalidCredentials) && !errors.Is(err, auth.ErrUnavailable):
		w.log.Info("session ends: "+w.refused.String(), "err", err)
		w.fire(w.refused)
		return
	default:
		w.log.Warn(w.what()+" revalidation failed; the session goes on", "err", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped && !w.fired {
		w.recheck.Reset(w.every)
	}
}
