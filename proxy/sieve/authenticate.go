package sieve

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// handleAuthenticate runs AUTHENTICATE (RFC 5804 §2.1): XOAUTH2 and
// OAUTHBEARER, and PLAIN and LOGIN with password passthrough, through the
// core's login sequence. The mechanism and the initial response are
// strings (quoted or literals); so are the client's responses to the
// server's challenges, which are quoted base64 strings. On success the
// backend's OK has been passed to the client and the session is ready for
// the relay.
func (c *conn) handleAuthenticate(ctx context.Context, cmd *command) (*proxy.Session, error) {
	if len(cmd.args) < 1 || len(cmd.args) > 2 {
		return nil, c.refuse(`"AUTHENTICATE takes a mechanism and an optional initial response."`)
	}
	if !c.isTLS {
		return nil, c.write(replyEncryptNeeded)
	}
	mech := strings.ToUpper(cmd.args[0].value)
	var ir []byte // nil: no initial response
	if len(cmd.args) == 2 {
		var err error
		if ir, err = auth.DecodeResponse(cmd.args[1].value); err != nil {
			c.log.Debug("invalid initial response", "mech", mech, "err", err)
			return nil, c.loginFailed(err)
		}
	}
	sess, err := c.pc.Login(ctx, proxy.LoginRequest{
		Mech: mech, Initial: ir, Step: c.step,
		Backend: c.f.backend, Dialog: &dialog{f: c.f, log: c.log},
		ClientTLS: proxy.TLSVersion(c.nc),
	})
	if err != nil {
		return nil, c.loginFailed(err)
	}
	reply := sess.Reply
	if reply == nil {
		reply = []byte(`OK "Logged in."` + "\r\n")
	}
	if err := c.write(string(reply)); err != nil {
		sess.Conn.Close()
		return nil, errClose
	}
	return sess, nil
}

// loginFailed answers a failed login (replyFor) and applies the
// connection's limits.
func (c *conn) loginFailed(err error) error {
	r := replyFor(err)
	if r.line == "" && r.raw == nil { // nobody is listening, or the client was told already
		if r.count == countAuthFailure {
			c.authFailures++
		}
		return errClose
	}
	out := r.line
	if r.raw != nil {
		out = string(r.raw)
	}
	if werr := c.write(out); werr != nil {
		return werr
	}
	return c.count(r.count)
}

// step is the proxy.Stepper: it sends chal as a quoted base64 string and
// returns the client's decoded response. With wait > 0 (the dummy reply
// to an RFC 7628 error challenge, which some clients never send) a client
// that has not begun to answer within wait gets proxy.ErrStepTimeout.
// Other errors have been answered (BYE) or need no answer.
func (c *conn) step(chal []byte, wait time.Duration) ([]byte, error) {
	if err := c.write(`"` + base64.StdEncoding.EncodeToString(chal) + `"` + "\r\n"); err != nil {
		return nil, err
	}
	if err := c.pc.AwaitResponse(c.nc, c.r.br, wait); err != nil {
		return nil, err
	}
	if !c.pc.ArmRead(c.nc) {
		c.write(replyShutdown)
		return nil, errClose
	}
	v, err := c.r.readResponse()
	var se *syntaxError
	switch {
	case errors.As(err, &se):
		return nil, fmt.Errorf("%w: %v", auth.ErrMalformed, se)
	case err != nil:
		return nil, c.readError(err)
	}
	return auth.DecodeResponse(v)
}
