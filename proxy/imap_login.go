package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// handleLogin runs LOGIN. Without password passthrough it is refused:
// mailgate takes OAuth bearer tokens only. Before TLS the refusal is the one
// RFC 9051 asks for (whether passthrough is on or not); afterwards the text
// tells the user what to do, and the refusal counts as a failed
// authentication for the per-connection limit.
func (c *imapConn) handleLogin(ctx context.Context, cmd *imapCommand) (*imapSession, error) {
	if !c.isTLS {
		return nil, c.writeLine("%s NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS.", cmd.Tag)
	}
	if !c.s.opts.Passwords.IMAP {
		if err := c.writeLine("%s NO [CANNOT] Password login is not offered here; use OAuth (AUTHENTICATE XOAUTH2 or OAUTHBEARER).", cmd.Tag); err != nil {
			return nil, err
		}
		return nil, c.authFailed()
	}
	if len(cmd.Args) != 2 {
		return nil, c.bad(cmd, "LOGIN expects a user name and a password")
	}
	user, ok1 := cmd.Args[0].astring()
	pass, ok2 := cmd.Args[1].astring()
	if !ok1 || !ok2 {
		return nil, c.bad(cmd, "LOGIN expects a user name and a password")
	}
	return c.passwordLogin(ctx, cmd, "LOGIN", user, pass, time.Now())
}

// handlePasswordAuthenticate runs AUTHENTICATE PLAIN or LOGIN for password
// passthrough; resp is the initial response (nil: none).
func (c *imapConn) handlePasswordAuthenticate(ctx context.Context, cmd *imapCommand, mech string, resp []byte) (*imapSession, error) {
	start := time.Now()
	var user, pass string
	switch mech {
	case auth.MechPLAIN:
		if resp == nil {
			r, ok, err := c.saslStep(cmd, nil)
			if !ok {
				return nil, err
			}
			resp = r
		}
		var err error
		if user, pass, err = plainCredentials(resp); err != nil {
			return nil, c.authError(cmd, mech, start, err)
		}
	default: // LOGIN; an initial response is the user name
		if len(resp) == 0 {
			r, ok, err := c.saslStep(cmd, loginUserChallenge)
			if !ok {
				return nil, err
			}
			resp = r
		}
		user = string(resp)
		r, ok, err := c.saslStep(cmd, loginPassChallenge)
		if !ok {
			return nil, err
		}
		pass = string(r)
	}
	return c.passwordLogin(ctx, cmd, mech, user, pass, start)
}

// saslStep sends a continuation request with chal and returns the client's
// decoded response. When ok is false the exchange is over (canceled, bad
// base64, or the connection failed) and err is for the caller to return.
func (c *imapConn) saslStep(cmd *imapCommand, chal []byte) (resp []byte, ok bool, err error) {
	if err := c.writeLine("+ %s", base64.StdEncoding.EncodeToString(chal)); err != nil {
		return nil, false, err
	}
	line, err := c.readClientLine()
	if err != nil {
		return nil, false, err
	}
	if len(line) == 1 && line[0] == '*' {
		return nil, false, c.writeLine("%s BAD AUTHENTICATE canceled.", cmd.Tag)
	}
	resp, ok = decodeSASL(string(line))
	if !ok {
		return nil, false, c.bad(cmd, "Invalid base64 in the SASL response")
	}
	return resp, true, nil
}

// passwordLogin logs in to the backend with the user's own credentials
// (password passthrough), after the throttle has let the attempt through.
// The backend's tagged reply, success or refusal, goes to the client
// verbatim; a refusal of the credentials counts as a failure for the
// throttle and the per-connection limit.
func (c *imapConn) passwordLogin(ctx context.Context, cmd *imapCommand, mech, user, pass string, start time.Time) (*imapSession, error) {
	t := c.s.passwordThrottle()
	ip := c.raw.RemoteAddr().String()
	if err := checkPassword(user, pass); err != nil {
		t.Failure(ip, "") // never reaches the backend: the address pays
		return nil, c.authError(cmd, mech, start, err)
	}
	authCtx, cancel := context.WithDeadline(ctx, c.deadline)
	done, err := t.Begin(authCtx, ip, user)
	cancel()
	if err != nil {
		return nil, c.authError(cmd, mech, start, err)
	}
	log := c.log.With("user", user, "mech", mech)
	sess, err := c.backendLogin(ctx, cmd.Tag, imapLogin{authcid: user, password: pass, own: true}, log)
	done(passwordOutcome(err))
	var ref *imapRefusal
	switch {
	case errors.As(err, &ref):
		result, lvl := resultUnavailable, log.Warn
		if ref.credentials() {
			result, lvl = resultInvalid, log.Info
		}
		lvl("login", "result", result, "source", sourcePassword, "err", err, "auth", time.Since(start).Round(time.Millisecond))
		c.s.obs.Login("imap", mech, result, time.Since(start))
		if werr := c.writeRaw(ref.reply); werr != nil {
			return nil, werr
		}
		if result == resultInvalid {
			return nil, c.authFailed()
		}
		return nil, nil
	case err != nil:
		return nil, c.authError(cmd, mech, start, err)
	}
	sess.id = auth.Identity{User: strings.ToLower(user), Mechanism: mech, Source: sourcePassword}
	sess.password = true
	log.Info("login", "result", resultOK, "source", sourcePassword, "auth", time.Since(start).Round(time.Millisecond))
	c.s.obs.Login("imap", mech, resultOK, time.Since(start))
	return sess, nil
}

// authFailed counts a failed authentication and closes after too many.
func (c *imapConn) authFailed() error {
	c.authFailures++
	if c.authFailures >= c.s.limits.MaxAuthFailures {
		c.writeLine("* BYE Too many authentication failures.")
		return errCloseConn
	}
	return nil
}
