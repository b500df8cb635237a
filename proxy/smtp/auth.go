package smtp

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// AUTH: go-smtp drives the SASL exchange itself (334 challenges, "*" and
// base64 on its side) through a sasl.Server, and the login sequence
// (proxy.Conn.Login: auth's SASL servers, the throttle, the token check, a
// seat, the backend login, one log line and metric) wants a Stepper. The
// saslBridge joins the two: the first Next starts the login in a goroutine
// with the initial response, each Stepper call hands its challenge to
// go-smtp as Next's return, and Next's next response goes back to it. The
// login's result is Next's last return; the client hears 235 only once the
// backend accepted the user.
//
// go-smtp answers some responses itself and never calls Next again ("*":
// 501, bad base64: 454); the bridge sees that reply go out (tlsView.Write)
// and ends the login with the matching error, so that it is logged as
// canceled or malformed at once.

// Auth starts a SASL exchange (see saslBridge).
func (ss *session) Auth(mech string) (sasl.Server, error) {
	cc := ss.cc
	if int(cc.authFailures.Load()) >= ss.f.lim.MaxAuthFailures {
		cc.closeAfterWrite.Store(true)
		return nil, replyTooManyAuth
	}
	mech = strings.ToUpper(mech)
	switch {
	case mech == auth.MechXOAUTH2, mech == auth.MechOAUTHBEARER:
	case (mech == auth.MechPLAIN || mech == auth.MechLOGIN) && cc.pc.Passwords():
	default:
		return nil, ss.authReply(proxy.ErrUnsupportedMechanism)
	}
	b := &saslBridge{
		ss:     ss,
		mech:   mech,
		dialog: ss.f.dialog(cc, cc.log),
		chal:   make(chan []byte),
		resp:   make(chan []byte),
		done:   make(chan loginResult, 1),
		gaveUp: make(chan error, 1),
	}
	b.ctx, b.cancel = context.WithCancel(cc.ctx)
	ss.mu.Lock()
	if ss.exchange != nil {
		ss.exchange.abandon(errAbandoned) // one go-smtp gave up on without a word
	}
	ss.exchange = b
	ss.mu.Unlock()
	return b, nil
}

// Errors a login gets when go-smtp ended its exchange without calling Next.
var (
	errResponseBase64 = fmt.Errorf("%w: invalid base64 in the SASL response", auth.ErrMalformed)
	errAbandoned      = fmt.Errorf("%w: the SMTP server ended the exchange", proxy.ErrClientGone)
)

// saslBridge is one AUTH exchange: a sasl.Server for go-smtp that runs the
// login sequence.
type saslBridge struct {
	ss     *session
	mech   string
	dialog *dialog
	ctx    context.Context // ends the login: Logout, or another AUTH
	cancel context.CancelFunc

	started bool             // Next has started the login
	chal    chan []byte      // Stepper -> Next: the next challenge
	resp    chan []byte      // Next -> Stepper: the client's response
	done    chan loginResult // the login's result
	gaveUp  chan error       // go-smtp ended the exchange without Next
	phase   atomic.Int32     // of the last challenge on the wire (wrote)
}

type loginResult struct {
	sess *proxy.Session
	err  error
}

// Phases of a challenge on the wire, as wrote sees them.
const (
	phaseNone     = iota
	phaseSent     // Next returned a challenge: go-smtp writes the 334 next
	phaseAwaiting // the 334 is out: the next write is go-smtp's own reply
)

var _ sasl.Server = (*saslBridge)(nil)

// Next implements sasl.Server. The first call starts the login with resp
// as the initial response (nil: none).
func (b *saslBridge) Next(resp []byte) ([]byte, bool, error) {
	b.phase.Store(phaseNone)
	b.ss.cc.exchange.CompareAndSwap(b, nil)
	if !b.started {
		b.started = true
		if b.mech == auth.MechLOGIN && len(resp) == 0 {
			resp = nil // an empty initial response gives no user name: ask for it
		}
		go b.run(resp)
	} else {
		select {
		case b.resp <- resp:
		case r := <-b.done: // the login went on without it (the dummy reply's bounded wait)
			return b.finish(r)
		}
	}
	select {
	case chal := <-b.chal:
		b.phase.Store(phaseSent)
		b.ss.cc.exchange.Store(b)
		return chal, false, nil
	case r := <-b.done:
		return b.finish(r)
	}
}

// run is the login, in its own goroutine.
func (b *saslBridge) run(ir []byte) {
	cc := b.ss.cc
	req := b.ss.f.loginRequest(b.dialog, cc)
	req.Mech, req.Initial, req.Step = b.mech, ir, b.step
	sess, err := cc.pc.Login(b.ctx, req)
	b.done <- loginResult{sess, err}
}

// step is the login's proxy.Stepper: it hands chal to go-smtp (through
// Next) and waits for the response. The bounded wait for a dummy reply
// ends the login (log line, metric, throttle) in time, but go-smtp keeps
// reading the client's line: a client that never sends one still hears
// its 421 only at the command timeout (go-smtp owns that read).
func (b *saslBridge) step(chal []byte, wait time.Duration) ([]byte, error) {
	select {
	case b.chal <- chal:
	case <-b.ctx.Done():
		return nil, b.ctx.Err()
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-b.resp:
		return r, nil
	case err := <-b.gaveUp:
		return nil, err
	case <-timeout:
		// The login goes on without the response; go-smtp still waits for
		// it and gets the result with it (Next).
		return nil, proxy.ErrStepTimeout
	case <-b.ctx.Done():
		return nil, b.ctx.Err()
	}
}

// wrote is told what go-smtp writes while a challenge is on the wire: the
// 334 itself, then, if go-smtp gave up on the exchange instead of calling
// Next, its own reply, which ends the login.
func (b *saslBridge) wrote(p []byte) {
	switch b.phase.Load() {
	case phaseSent:
		if bytes.HasPrefix(p, []byte("334")) {
			b.phase.Store(phaseAwaiting)
			return
		}
	case phaseAwaiting:
	default:
		return
	}
	b.phase.Store(phaseNone)
	b.ss.cc.exchange.CompareAndSwap(b, nil)
	err := errAbandoned
	switch {
	case bytes.HasPrefix(p, []byte("501")): // "*": Negotiation cancelled
		err = auth.ErrCanceled
	case bytes.HasPrefix(p, []byte("454")): // Invalid base64 data
		err = errResponseBase64
	}
	b.giveUp(err)
}

// giveUp ends a login waiting for a response with err.
func (b *saslBridge) giveUp(err error) {
	select {
	case b.gaveUp <- err:
	default:
	}
}

// abandon ends the login, whatever it is doing, with err. Called with
// session.mu held.
func (b *saslBridge) abandon(err error) {
	b.giveUp(err)
	b.cancel()
}

// finish answers go-smtp with the login's result.
func (b *saslBridge) finish(r loginResult) ([]byte, bool, error) {
	ss := b.ss
	ss.mu.Lock()
	if ss.exchange == b {
		ss.exchange = nil
	}
	ss.mu.Unlock()
	b.cancel()
	if r.err != nil {
		return nil, true, ss.authReply(r.err)
	}
	ss.loggedIn(r.sess, b.dialog.session)
	return nil, true, nil
}

// loggedIn records a successful login: the session is open on be, and,
// for a token, watched for the end of its lifetime (the next command
// outside a transaction is then answered 421, see clientConn.Read).
func (ss *session) loggedIn(sess *proxy.Session, be *backendSession) {
	cc := ss.cc
	ss.mu.Lock()
	ss.sess, ss.id, ss.be, ss.started = sess, sess.Identity, be, time.Now()
	ss.stopWatch = cc.pc.Watch(sess, func(why string) {
		end := int32(endExpired)
		if why == proxy.EndRevoked {
			end = endRevoked
		}
		cc.ended.CompareAndSwap(0, end)
	})
	ss.mu.Unlock()
	cc.authed.Store(true)
	cc.log = sess.Log
}
