package imap

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

// handleAuthenticate runs AUTHENTICATE (RFC 9051 §6.2.2, SASL-IR RFC 4959)
// for XOAUTH2 and OAUTHBEARER, and with password passthrough PLAIN and
// LOGIN, through the login sequence (proxy.Conn.Login) with IMAP's framing
// of the exchange (stepper). On success the backend's reply has been sent to
// the client and the session is ready for the relay.
func (c *conn) handleAuthenticate(ctx context.Context, cmd *command) (*proxy.Session, error) {
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != argAtom || (len(cmd.Args) == 2 && cmd.Args[1].Kind != argAtom) {
		return nil, c.bad(cmd, "AUTHENTICATE expects a mechanism and an optional initial response")
	}
	if !c.isTLS {
		return nil, c.writeLine("%s NO [PRIVACYREQUIRED] Authentication is disabled before STARTTLS.", cmd.Tag)
	}
	mech := strings.ToUpper(cmd.Args[0].Value)
	password := c.pc.Passwords() && (mech == auth.MechPLAIN || mech == auth.MechLOGIN)
	if mech != auth.MechXOAUTH2 && mech != auth.MechOAUTHBEARER && !password {
		return nil, c.authError(cmd, proxy.ErrUnsupportedMechanism)
	}
	var ir []byte // nil: no initial response
	if len(cmd.Args) == 2 {
		r, err := auth.DecodeResponse(cmd.Args[1].Value)
		if err != nil { // "*" too: there is nothing to cancel yet
			return nil, c.bad(cmd, "Invalid base64 in the initial response")
		}
		ir = r
	}
	if mech == auth.MechLOGIN && len(ir) == 0 {
		ir = nil // an empty initial response gives no user name: ask for it
	}
	req := proxy.LoginRequest{Mech: mech, Initial: ir, Step: c.stepper()}
	return c.login(cmd, req, func(req proxy.LoginRequest) (*proxy.Session, error) { return c.pc.Login(ctx, req) })
}

// errBadBase64: a SASL response that is not base64; answered with its own
// BAD text (a malformed SASL message gets another).
var errBadBase64 = fmt.Errorf("%w: invalid base64 in the SASL response", auth.ErrMalformed)

// stepper frames one SASL exchange the IMAP way: "+ " and the base64
// challenge, then one line: base64, "=" or empty for an empty response,
// "*" to cancel (auth.ErrCanceled). See proxy.Stepper for wait.
func (c *conn) stepper() proxy.Stepper {
	return func(chal []byte, wait time.Duration) ([]byte, error) {
		if err := c.writeLine("+ %s", base64.StdEncoding.EncodeToString(chal)); err != nil {
			return nil, err
		}
		line, err := c.readResponse(wait)
		if err != nil {
			return nil, err
		}
		resp, err := auth.DecodeResponse(string(line))
		if errors.Is(err, auth.ErrMalformed) {
			return nil, errBadBase64
		}
		return resp, err
	}
}

// login runs the login sequence with run (Login or LoginPassword) and
// answers it: the backend's reply on success, or the mapped error.
func (c *conn) login(cmd *command, req proxy.LoginRequest, run func(proxy.LoginRequest) (*proxy.Session, error)) (*proxy.Session, error) {
	req.Backend = c.f.backend
	req.Dialog = &dialog{b: c.f.backend, tag: cmd.Tag, clientID: c.clientID, log: c.log}
	req.ClientTLS = proxy.TLSVersion(c.nc)
	sess, err := run(req)
	if err != nil {
		return nil, c.authError(cmd, err)
	}
	// The backend's untagged and tagged replies, verbatim: the client
	// sees the post-login CAPABILITY code.
	if err := c.writeRaw(sess.Reply); err != nil {
		sess.Log.Info("client gone before the login reply", "err", err)
		sess.Conn.Close()
		return nil, errCloseConn
	}
	return sess, nil
}
