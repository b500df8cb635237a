package smtp

import (
	"bytes"
	"context"
	"strconv"
	"strings"
)

// The commands before login. On the STARTTLS port everything but EHLO,
// HELO, NOOP, RSET, QUIT and STARTTLS is refused until TLS is up (RFC
// 3207); AUTH needs TLS and an EHLO (RFC 4954); the mail commands need a
// login.

// preauth runs one command before login.
func (sc *conn) preauth(ctx context.Context, cmd command) error {
	switch strings.ToUpper(cmd.Verb) {
	case "EHLO":
		return sc.ehlo(cmd, true)
	case "HELO":
		return sc.ehlo(cmd, false)
	case "NOOP", "RSET":
		sc.reply(replyOK)
		return nil
	case "QUIT":
		sc.reply(replyBye)
		return errClose
	case "STARTTLS":
		return sc.starttls(cmd)
	case "AUTH": // the line is not logged: it may hold a credential
		return sc.auth(ctx, cmd)
	case "BDAT":
		return sc.skipBDAT(cmd)
	case "MAIL", "RCPT", "DATA", "VRFY", "EXPN", "HELP", "ETRN":
		sc.reply(sc.needAuth())
		return nil
	default:
		return sc.fail(replyUnknown)
	}
}

// skipBDAT refuses BDAT before login. Its chunk follows without waiting
// for the reply: it is read and dropped if it fits the pre-login budget;
// otherwise the connection is closed (the stream cannot be followed).
func (sc *conn) skipBDAT(cmd command) error {
	sc.reply(sc.needAuth())
	size, _, ok := parseBDAT(cmd.Args)
	if !ok || size > int64(sc.c.Limits().MaxPreloginBytes) {
		return errClose
	}
	if _, err := sc.r.BR.Discard(int(size)); err != nil {
		return errClose
	}
	return nil
}

// needAuth is the refusal of a mail command before login.
func (sc *conn) needAuth() string {
	if !sc.isTLS {
		return replyNeedTLS
	}
	return replyAuthRequired
}

// ehlo answers EHLO (extended) or HELO; the session's transaction, if
// any, is reset (RFC 5321 section 4.1.4).
func (sc *conn) ehlo(cmd command, extended bool) error {
	if len(bytes.TrimSpace(cmd.Args)) == 0 {
		if extended {
			return sc.fail(replyBadEHLO)
		}
		return sc.fail(replyBadHELO)
	}
	sc.helo = true
	host := sc.f.opts.Hostname
	if !extended {
		sc.reply("250 ", host, "\r\n")
		return nil
	}
	ext := sc.extensions()
	sc.reply("250-", host, "\r\n")
	for i, e := range ext {
		sep := "-"
		if i == len(ext)-1 {
			sep = " "
		}
		sc.reply("250", sep, e, "\r\n")
	}
	return nil
}

// extensions is what EHLO offers: before TLS only STARTTLS; after it,
// AUTH and what the backend offers of the extensions whose parameters
// mailgate passes on (SIZE the smaller of the configured and the
// backend's limit).
func (sc *conn) extensions() []string {
	if !sc.isTLS {
		return []string{"PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES"}
	}
	caps := sc.f.currentCaps()
	ext := []string{"PIPELINING"}
	if size := sc.f.maxSize(caps); size > 0 {
		ext = append(ext, "SIZE "+strconv.FormatInt(size, 10))
	} else {
		ext = append(ext, "SIZE")
	}
	ext = append(ext, "ENHANCEDSTATUSCODES", "8BITMIME")
	for _, e := range []struct {
		on   bool
		name string
	}{{caps.dsn, "DSN"}, {caps.utf8, "SMTPUTF8"}, {caps.chunking, "CHUNKING"}, {caps.chunking && caps.binary, "BINARYMIME"}} {
		if e.on {
			ext = append(ext, e.name)
		}
	}
	if sc.sess == nil {
		ext = append(ext, "AUTH "+sc.mechs())
	}
	return ext
}

// mechs lists the SASL mechanisms offered.
func (sc *conn) mechs() string {
	if sc.c.Passwords() {
		return "OAUTHBEARER XOAUTH2 PLAIN LOGIN"
	}
	return "OAUTHBEARER XOAUTH2"
}

// starttls upgrades the connection (RFC 3207). Whatever the client sent
// behind STARTTLS arrived in plaintext, where a man in the middle could
// have put it: it is discarded with the old reader, never run after the
// handshake (CVE-2011-0411). All pre-TLS state (EHLO) is forgotten.
func (sc *conn) starttls(cmd command) error {
	switch {
	case sc.isTLS:
		return sc.fail(replyTLSActive)
	case cmd.Args != nil:
		return sc.fail(replyBadSTARTTLS)
	}
	if sc.r.Buffered() {
		sc.c.Log.Info("dropped plaintext pipelined after STARTTLS (possible command injection)")
	}
	if err := sc.write(replyReadyTLS); err != nil {
		return err
	}
	tc, err := sc.c.Handshake(sc.c.Raw)
	if err != nil {
		sc.c.Log.Debug("starttls handshake failed", "err", err)
		return errClose
	}
	sc.helo = false
	sc.setStream(tc, true)
	return nil
}
