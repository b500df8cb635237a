package pop3

import (
	"context"
	"strings"

	"github.com/mailgate/mailgate/proxy"
)

// Commands of the AUTHORIZATION state (RFC 1939 §4) and its extensions.

// dispatch runs one command. A session means the login succeeded; an error
// ends the conversation.
func (pc *conn) dispatch(ctx context.Context, cmd command) (*proxy.Session, error) {
	switch strings.ToUpper(cmd.Verb) {
	case "CAPA":
		return nil, pc.capa()
	case "QUIT":
		pc.write(replyQuit)
		return nil, errClose
	case "STLS":
		return nil, pc.stls(cmd)
	case "AUTH":
		return pc.auth(ctx, cmd)
	case "USER":
		return nil, pc.userCmd(cmd)
	case "PASS":
		return pc.pass(ctx, cmd)
	case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
		return nil, pc.fail(replyNotLoggedIn) // TRANSACTION state only (RFC 1939 §5)
	default: // APOP too: the greeting offers no timestamp
		return nil, pc.fail(replyUnknown)
	}
}

// Capabilities (RFC 2449). TOP and UIDL are Dovecot's, listed before login
// as Dovecot itself does, for clients that read CAPA only once. SASL and
// USER appear only where authentication is allowed (after TLS).
const (
	capsCommon = "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
	mechsToken = "XOAUTH2 OAUTHBEARER"
	mechsPass  = " PLAIN LOGIN"
)

// capa answers CAPA.
func (pc *conn) capa() error {
	s := []string{"+OK Capability list follows\r\n"}
	if !pc.isTLS {
		s = append(s, "STLS\r\n")
	}
	s = append(s, capsCommon)
	if pc.isTLS {
		s = append(s, "SASL ", pc.mechs(" "), "\r\n")
		if pc.c.Passwords() {
			s = append(s, "USER\r\n")
		}
	}
	return pc.write(append(s, ".\r\n")...)
}

// mechs lists the SASL mechanisms offered, separated by sep.
func (pc *conn) mechs(sep string) string {
	m := mechsToken
	if pc.c.Passwords() {
		m += mechsPass
	}
	return strings.ReplaceAll(m, " ", sep)
}

// stls upgrades the connection (RFC 2595 §4). Whatever the client sent
// behind STLS arrived in plaintext, where a man in the middle could have
// put it: it is discarded with the old reader, never run after the
// handshake. All pre-TLS state (a USER name) is forgotten.
func (pc *conn) stls(cmd command) error {
	switch {
	case pc.isTLS:
		return pc.fail(replyTLSActive)
	case cmd.Args != nil:
		return pc.fail(replyBadArgs)
	}
	if n := pc.r.BR.Buffered(); n > 0 {
		pc.c.Log.Warn("STLS with pipelined plaintext; discarded (possible command injection)", "discarded", n)
	}
	if err := pc.write(replySTLS); err != nil {
		return err
	}
	tc, err := pc.c.Handshake(pc.c.Raw)
	if err != nil {
		pc.c.Log.Debug("stls handshake failed", "err", err)
		return errClose
	}
	pc.user = ""
	pc.setStream(tc, true)
	return nil
}
