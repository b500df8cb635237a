package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Results of a login, as logged, counted and mapped to replies by fronts.
const (
	ResultOK          = resultOK
	ResultInvalid     = resultInvalid     // refused token or credentials, no such mailbox
	ResultUnavailable = resultUnavailable // provider or backend down: a temporary failure
	ResultMalformed   = resultMalformed   // a SASL message that does not parse
	ResultCanceled    = "canceled"        // the client canceled the exchange ("*")
	ResultLimited     = resultLimited     // no seat in the logged-in pool
	ResultAborted     = resultAborted     // the client went away during the login
	ResultBlocked     = resultBlocked     // the client's network is blocked after many failures
)

// Classify is what a login error comes to: its result, and whether it was
// unexpected (internal: to be logged loudly; the client gets a temporary
// failure). A *Refusal is ResultInvalid or ResultUnavailable like any other
// error; fronts check for it first to pass the backend's reply on. A token
// refused after which the client went away is the refusal's result, and
// wraps ErrClientGone too: nobody is listening for the reply.
func Classify(err error) (result string, internal bool) {
	if u := (*unheardRefusal)(nil); errors.As(err, &u) {
		return Classify(u.refusal)
	}
	switch {
	case err == nil:
		return ResultOK, false
	case errors.Is(err, errClientGone), errors.Is(err, context.Canceled):
		return ResultAborted, false
	case errors.Is(err, errTooManySessions):
		return ResultLimited, false
	case errors.Is(err, auth.ErrBlocked):
		return ResultBlocked, false
	case errors.Is(err, auth.ErrCanceled):
		return ResultCanceled, false
	case errors.Is(err, auth.ErrMalformed):
		return ResultMalformed, false
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrThrottled), errors.Is(err, errBackendAuthz),
		errors.Is(err, errBackendRefused):
		return ResultInvalid, false
	case errors.Is(err, auth.ErrUnavailable), errors.Is(err, errBackendUnavailable):
		return ResultUnavailable, false
	}
	return ResultUnavailable, true
}

// loginDone logs one line and counts one login for every attempt but an
// unsupported mechanism (nothing was attempted).
func (c *Conn) loginDone(mech string, start time.Time, sess *Session, err error) {
	if errors.Is(err, ErrUnsupportedMechanism) {
		return
	}
	d := time.Since(start)
	result, internal := Classify(err)
	c.s.obs.Login(c.proto, mech, result, d)
	if err == nil {
		sess.Log.Info("login", "result", result, "source", sess.Identity.Source, "auth", d.Round(time.Millisecond))
		return
	}
	lvl := c.Log.Info
	if internal || (result == ResultUnavailable && errors.As(err, new(*Refusal))) {
		lvl = c.Log.Warn
	}
	args := append([]any{"result", result, "mech", mech}, appPasswordAttrs(err)...)
	lvl("login", append(args, "err", err, "auth", d.Round(time.Millisecond))...)
}

// Unheard reports whether nobody is listening for a login's reply (the
// client went away), and if so whether the login still counts as a failed
// authentication against the connection's limits: a token refused before
// the client hung up after the error challenge does.
func Unheard(err error) (unheard, failed bool) {
	result, _ := Classify(err)
	if !errors.Is(err, ErrClientGone) && result != ResultAborted {
		return false, false
	}
	return true, result == ResultInvalid || result == ResultBlocked
}

// LoginReply is what a line-based front answers a failed login with: Line
// (with CRLF; nil: nobody is listening, close) and what the failure counts
// against the connection's limits.
type LoginReply struct {
	Line  []byte
	Count int
}

// What a failed login counts against the connection's limits.
const (
	CountNone  = iota
	CountError // a protocol error (Limits.MaxErrors)
	CountAuth  // a failed authentication (Limits.MaxAuthFailures)
)

// BackendReply is the part of a front's reply mapping that is the same for
// every protocol: a *Refusal's backend reply verbatim (a failed
// authentication when it judged the credentials), and nothing when nobody
// is listening (see Unheard). ok is false when the front maps err itself.
func BackendReply(err error) (r LoginReply, ok bool) {
	var ref *Refusal
	if errors.As(err, &ref) && len(ref.Reply) > 0 {
		if ref.Credentials {
			return LoginReply{Line: ref.Reply, Count: CountAuth}, true
		}
		return LoginReply{Line: ref.Reply}, true
	}
	if unheard, failed := Unheard(err); unheard {
		if failed {
			return LoginReply{Count: CountAuth}, true
		}
		return LoginReply{}, true
	}
	return LoginReply{}, false
}
