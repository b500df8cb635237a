package imap

import (
	"context"

	"github.com/mailgate/mailgate/proxy"
)

// handleLogin runs LOGIN. Without password passthrough or app passwords
// (proxy.Conn.Passwords) it is refused:
// mailgate takes OAuth bearer tokens only. Before TLS the refusal is the one
// RFC 9051 asks for (whether passthrough is on or not); afterwards the text
// tells the user what to do, and the refusal counts as a failed
// authentication for the per-connection limit. With either the user name
// and password go through proxy.Conn.LoginPassword.
func (c *conn) handleLogin(ctx context.Context, cmd *command) (*proxy.Session, error) {
	if !c.isTLS {
		return nil, c.writeLine("%s NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS.", cmd.Tag)
	}
	if !c.pc.Passwords() {
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
	return c.login(cmd, proxy.LoginRequest{}, func(req proxy.LoginRequest) (*proxy.Session, error) {
		return c.pc.LoginPassword(ctx, "LOGIN", user, pass, req)
	})
}
