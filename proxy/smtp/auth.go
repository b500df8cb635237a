package smtp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// AUTH (RFC 4954): the login, run by the proxy package's login sequence
// (auth's SASL servers, the throttle, the token check, a seat, the backend
// login, one log line and metric) and answered by replyFor. The client
// hears 235 only once the backend accepted the user.

// auth runs AUTH mechanism [initial-response].
func (sc *conn) auth(ctx context.Context, cmd command) error {
	switch {
	case !sc.isTLS: // not a protocol error: nothing was looked at
		sc.reply(replyAuthTLS)
		return nil
	case !sc.helo:
		return sc.fail(replyNeedHELO)
	}
	mech, ir, err := authArgs(cmd.Args)
	switch {
	case errors.Is(err, errBadArgs):
		return sc.fail(replyBadAUTH)
	case err != nil:
		return sc.loginFailed(err)
	}
	d := sc.f.dialog(sc)
	sess, err := sc.c.Login(ctx, sc.loginRequest(d, mech, ir))
	if err != nil {
		return sc.loginFailed(err)
	}
	sc.loggedIn(sess, d.session)
	sc.reply(replyAuthOK)
	return nil
}

// errBadArgs: AUTH's arguments are not a mechanism and an optional initial
// response, separated by one space.
var errBadArgs = errors.New("smtp: invalid AUTH arguments")

// authArgs splits AUTH's arguments into the mechanism and the decoded
// initial response (nil: none; "=" is an empty one). Errors: errBadArgs,
// or auth.DecodeResponse's (auth.ErrMalformed, auth.ErrCanceled).
func authArgs(args []byte) (mech string, ir []byte, err error) {
	m, resp, hasIR := bytes.Cut(args, []byte{' '})
	if len(m) == 0 || bytes.IndexByte(resp, ' ') >= 0 {
		return "", nil, errBadArgs
	}
	if hasIR {
		if ir, err = auth.DecodeResponse(string(resp)); err != nil {
			return "", nil, err
		}
	}
	return string(m), ir, nil
}

// loginRequest is a login through d, framed by sc.step.
func (sc *conn) loginRequest(d *dialog, mech string, ir []byte) proxy.LoginRequest {
	return proxy.LoginRequest{
		Mech: mech, Initial: ir, Step: sc.step,
		Backend: sc.f.backend, Dialog: d, ClientTLS: proxy.TLSVersion(sc.nc),
	}
}

// step is the Stepper: "334 <base64>", then one response line (under the
// long cap). With wait > 0 (the dummy reply to an RFC 7628 error
// challenge) a client that has not begun to answer within wait gets
// proxy.ErrStepTimeout, with nothing written: the login then answers.
// Other read errors are answered here.
func (sc *conn) step(chal []byte, wait time.Duration) ([]byte, error) {
	if err := sc.write("334 ", base64.StdEncoding.EncodeToString(chal), "\r\n"); err != nil {
		return nil, err
	}
	if err := sc.c.AwaitResponse(sc.nc, sc.r.BR, wait); err != nil {
		return nil, err
	}
	if !sc.c.ArmRead(sc.nc) {
		sc.write(replyShutdown)
		return nil, errClose
	}
	line, err := sc.r.ReadResponse()
	if err != nil {
		return nil, sc.readError(err)
	}
	return auth.DecodeResponse(string(line))
}

// loginFailed answers a failed login and applies the connection's limits.
func (sc *conn) loginFailed(err error) error {
	r := replyFor(err)
	if r.Line == nil { // nobody is listening
		if r.Count == countAuth {
			sc.authFailures++
		}
		return errClose
	}
	sc.replyBytes(r.Line)
	switch r.Count {
	case countError:
		return sc.protocolError()
	case countAuth:
		return sc.authFailed()
	}
	return nil
}

// loggedIn starts the session: the reader takes the session's caps, and,
// for a token, the session is watched for the end of its lifetime (the
// next command outside a transaction is then answered 421, see next).
func (sc *conn) loggedIn(sess *proxy.Session, be *backendSession) {
	loggedIn(sc.r)
	sc.sess = &session{sc: sc, f: sc.f, ps: sess, log: sess.Log, be: be, started: time.Now()}
	sc.sess.stopWatch = sc.c.Watch(sess, func(why string) {
		end := int32(endExpired)
		switch why {
		case proxy.EndRevoked:
			end = endRevoked
		case proxy.EndAppPassword:
			end = endAppPassword
		}
		sc.ended.CompareAndSwap(0, end)
	})
}
