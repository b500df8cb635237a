package proxy

// handleLogin refuses LOGIN: mailgate takes OAuth bearer tokens only (password
// passthrough is a separate, opt-in feature). Before TLS the refusal is the
// one RFC 9051 asks for; afterwards the text tells the user what to do.
// A LOGIN counts as a failed authentication for the per-connection limit.
func (c *imapConn) handleLogin(cmd *imapCommand) error {
	if !c.isTLS {
		return c.writeLine("%s NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS.", cmd.Tag)
	}
	if err := c.writeLine("%s NO [CANNOT] Password login is not offered here; use OAuth (AUTHENTICATE XOAUTH2 or OAUTHBEARER).", cmd.Tag); err != nil {
		return err
	}
	return c.authFailed()
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
