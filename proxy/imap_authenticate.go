package proxy

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// handleAuthenticate runs AUTHENTICATE (RFC 9051 §6.2.2, SASL-IR RFC 4959)
// for XOAUTH2 and OAUTHBEARER, then logs in to the backend as the master user
// on behalf of the verified address; with password passthrough PLAIN and
// LOGIN go to handlePasswordAuthenticate. On success the backend's tagged
// reply has been sent to the client and the session is ready for the relay.
func (c *imapConn) handleAuthenticate(ctx context.Context, cmd *imapCommand) (*imapSession, error) {
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != argAtom || (len(cmd.Args) == 2 && cmd.Args[1].Kind != argAtom) {
		return nil, c.bad(cmd, "AUTHENTICATE expects a mechanism and an optional initial response")
	}
	if !c.isTLS {
		return nil, c.writeLine("%s NO [PRIVACYREQUIRED] Authentication is disabled before STARTTLS.", cmd.Tag)
	}
	mech := strings.ToUpper(cmd.Args[0].Value)
	password := c.s.opts.Passwords.IMAP && (mech == auth.MechPLAIN || mech == mechLOGIN)
	if mech != "XOAUTH2" && mech != "OAUTHBEARER" && !password {
		return nil, c.writeLine("%s NO Unsupported authentication mechanism.", cmd.Tag)
	}
	var resp []byte // nil: no initial response
	if len(cmd.Args) == 2 {
		ir, ok := decodeSASL(cmd.Args[1].Value)
		if !ok {
			return nil, c.bad(cmd, "Invalid base64 in the initial response")
		}
		resp = ir
	}
	if password {
		return c.handlePasswordAuthenticate(ctx, cmd, mech, resp)
	}

	authCtx, cancel := context.WithDeadline(ctx, c.deadline)
	defer cancel()
	start := time.Now()
	authn, token := c.s.tokenAuthenticator()
	srv, err := auth.NewServer(authCtx, mech, authn, c.raw.RemoteAddr().String(), c.s.opts.Challenge)
	if err != nil {
		return nil, c.writeLine("%s NO Unsupported authentication mechanism.", cmd.Tag)
	}
	for {
		chal, done, err := srv.Next(resp)
		if done || err != nil {
			if err != nil {
				return nil, c.authError(cmd, mech, start, err)
			}
			break
		}
		var ok bool
		if resp, ok, err = c.saslStep(cmd, chal); !ok {
			return nil, err
		}
	}

	id, _ := srv.Identity()
	if err := safeIdentity(id); err != nil {
		return nil, c.authError(cmd, mech, start, err)
	}
	log := c.log.With("user", id.User, "mech", mech)
	sess, err := c.backendLogin(ctx, cmd.Tag, c.s.masterLogin(id.User), log)
	if err != nil {
		return nil, c.authError(cmd, mech, start, err)
	}
	sess.id = id
	if token != nil {
		sess.token = *token
	}
	log.Info("login", "result", "ok", "source", id.Source, "auth", time.Since(start).Round(time.Millisecond))
	c.s.obs.Login("imap", mech, resultOK, time.Since(start))
	return sess, nil
}

// decodeSASL decodes one base64 SASL message; "=" and "" stand for an empty
// one (RFC 4959, and Roundcube's empty dummy reply).
func decodeSASL(s string) ([]byte, bool) {
	if s == "" || s == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

// authError answers a failed AUTHENTICATE and applies the per-connection limits.
func (c *imapConn) authError(cmd *imapCommand, mech string, start time.Time, err error) error {
	r := imapAuthReply(err)
	lvl := c.log.Info
	if r.internal {
		lvl = c.log.Warn
	}
	lvl("login", "result", r.result, "mech", mech, "err", err, "auth", time.Since(start).Round(time.Millisecond))
	c.s.obs.Login("imap", mech, r.result, time.Since(start))
	if r.result == resultAborted {
		return errCloseConn // nobody is listening
	}
	if werr := c.writeLine("%s %s", cmd.Tag, r.text); werr != nil {
		return werr
	}
	switch r.result {
	case resultMalformed:
		return c.protocolError()
	case resultInvalid, resultBlocked:
		return c.authFailed()
	}
	return nil
}
