package imap

// handleStartTLS upgrades the connection (RFC 9051 §6.2.1). Anything the
// client pipelined behind STARTTLS arrived in plaintext and could have been
// injected by a man in the middle, so the command is refused and the
// connection closed instead of letting those bytes run after the handshake.
func (c *conn) handleStartTLS(cmd *command) error {
	if len(cmd.Args) != 0 {
		return c.bad(cmd, "STARTTLS takes no arguments")
	}
	if c.isTLS {
		return c.bad(cmd, "TLS is already active")
	}
	if c.r.br.Buffered() > 0 {
		c.log.Warn("STARTTLS with pipelined plaintext refused (possible command injection)", "buffered", c.r.br.Buffered())
		c.writeLine("%s BAD STARTTLS must be the last command in its packet.", cmd.Tag)
		c.writeLine("* BYE Closing connection.")
		return errCloseConn
	}
	if err := c.writeLine("%s OK Begin TLS negotiation now.", cmd.Tag); err != nil {
		return err
	}
	tc, err := c.pc.Handshake(c.pc.Raw)
	if err != nil {
		c.log.Debug("starttls handshake failed", "err", err)
		return errCloseConn
	}
	// All pre-TLS state is forgotten, per RFC 9051: only the ID fields are
	// dropped here (and what they held of the command budget); caps are
	// derived from isTLS.
	c.nc, c.isTLS, c.clientID, c.r.kept = tc, true, nil, 0
	c.setStream(tc)
	return nil
}
