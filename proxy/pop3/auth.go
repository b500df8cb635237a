package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// AUTH (RFC 5034) and USER/PASS (RFC 1939 §7): the logins, run by the
// proxy package's login sequence and answered by replyFor.

// auth runs AUTH [mechanism [initial-response]].
func (pc *conn) auth(ctx context.Context, cmd command) (*proxy.Session, error) {
	if !pc.isTLS {
		return nil, pc.write(replyNeedTLS)
	}
	if cmd.Args == nil {
		return nil, pc.write("+OK\r\n", pc.mechs("\r\n"), "\r\n.\r\n") // RFC 5034 §4: the list
	}
	mech, ir, err := authArgs(cmd.Args)
	switch {
	case errors.Is(err, errBadArgs):
		return nil, pc.fail(replyBadArgs)
	case err != nil:
		return nil, pc.loginFailed(err)
	}
	sess, err := pc.c.Login(ctx, pc.loginRequest(mech, ir))
	if err != nil {
		return nil, pc.loginFailed(err)
	}
	return sess, nil
}

// errBadArgs: AUTH's arguments are not a mechanism and an optional initial
// response, separated by one space.
var errBadArgs = errors.New("pop3: invalid AUTH arguments")

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

// loginRequest is a login through f's backend, framed by pc.step.
func (pc *conn) loginRequest(mech string, ir []byte) proxy.LoginRequest {
	return proxy.LoginRequest{
		Mech: mech, Initial: ir, Step: pc.step,
		Backend: pc.f.backend, Dialog: &dialog{f: pc.f, c: pc.c},
		ClientTLS: proxy.TLSVersion(pc.nc),
	}
}

// step is the Stepper: "+ <base64>", then one response line (under the long
// cap). With wait > 0 (the dummy reply to an RFC 7628 error challenge) a
// client that has not begun to answer within wait gets proxy.ErrStepTimeout,
// with nothing written: the login then answers. Other read errors are
// answered here.
func (pc *conn) step(chal []byte, wait time.Duration) ([]byte, error) {
	if err := pc.write("+ ", base64.StdEncoding.EncodeToString(chal), "\r\n"); err != nil {
		return nil, err
	}
	if err := pc.c.AwaitResponse(pc.nc, pc.r.BR, wait); err != nil {
		return nil, err
	}
	if !pc.c.ArmRead(pc.nc) {
		pc.write(replyShutdown)
		return nil, errClose
	}
	line, err := pc.r.ReadResponse()
	if err != nil {
		return nil, pc.readError(err)
	}
	return auth.DecodeResponse(string(line))
}

// loginFailed answers a failed login and applies the connection's limits.
func (pc *conn) loginFailed(err error) error {
	r := replyFor(err)
	if r.Line == nil { // nobody is listening
		if r.Count == countAuth {
			pc.authFailed()
		}
		return errClose
	}
	pc.nc.SetWriteDeadline(time.Now().Add(pc.c.Limits().WriteTimeout))
	if _, werr := pc.nc.Write(r.Line); werr != nil {
		return werr
	}
	switch r.Count {
	case countError:
		return pc.protocolError()
	case countAuth:
		return pc.authFailed()
	}
	return nil
}

// userCmd runs USER name: remembered for PASS (password passthrough only).
func (pc *conn) userCmd(cmd command) error {
	switch {
	case !pc.isTLS:
		return pc.write(replyNeedTLS)
	case !pc.c.Passwords():
		if err := pc.write(replyNoPasswd); err != nil {
			return err
		}
		return pc.authFailed()
	case len(cmd.Args) == 0:
		return pc.fail(replyBadArgs)
	}
	pc.user = string(cmd.Args)
	return pc.write(replyUserOK)
}

// pass runs PASS password (the rest of the line: it may hold spaces) for
// the name USER gave; either way the name is then forgotten.
func (pc *conn) pass(ctx context.Context, cmd command) (*proxy.Session, error) {
	switch {
	case !pc.isTLS:
		return nil, pc.write(replyNeedTLS)
	case !pc.c.Passwords():
		if err := pc.write(replyNoPasswd); err != nil {
			return nil, err
		}
		return nil, pc.authFailed()
	case pc.user == "":
		return nil, pc.fail(replyNoUser)
	}
	user := pc.user
	pc.user = ""
	sess, err := pc.c.LoginPassword(ctx, "USER", user, string(cmd.Args), pc.loginRequest("USER", nil))
	if err != nil {
		return nil, pc.loginFailed(err)
	}
	return sess, nil
}
