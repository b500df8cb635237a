package smtp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// The session after login: MAIL, RCPT, RSET, NOOP, VRFY, EXPN and HELP go
// to the backend one by one, as the client sent them (MAIL after the
// sender check, without AUTH=), and the client hears the backend's reply
// verbatim: Postfix's code, enhanced code and text. DATA and BDAT are
// data.go's. What the backend is never sent: a command mailgate does not
// know (XCLIENT, XFORWARD and the like would let a client speak for
// mailgate), AUTH and STARTTLS (answered here), EHLO/HELO (answered here;
// an open transaction is reset at the backend with RSET).

// session is a logged-in client's state.
type session struct {
	sc        *conn
	f         *Front
	ps        *proxy.Session
	log       *slog.Logger // with user and mech
	be        *backendSession
	stopWatch func() // ends the lifetime watch
	inTx      bool   // a MAIL was accepted by be and its transaction is open
	rcpts     int
	chunked   int64 // bytes of the open transaction's BDAT chunks
	messages  int
	started   time.Time
}

// dispatch runs one command of the session. Outside a transaction, a
// backend that ended the idle session first is dropped: its stale reply
// must not answer this command (the next MAIL logs in again).
func (s *session) dispatch(ctx context.Context, cmd command) error {
	if !s.inTx && s.be != nil && s.be.stale() {
		s.log.Info("backend ended the idle session; dropped")
		s.dropBackend(false)
	}
	switch verb := strings.ToUpper(cmd.Verb); verb {
	case "MAIL":
		return s.mail(ctx, cmd)
	case "RCPT":
		return s.rcpt(cmd)
	case "DATA":
		return s.data(cmd)
	case "BDAT":
		return s.bdat(cmd)
	case "RSET":
		return s.rset(cmd)
	case "NOOP", "VRFY", "EXPN", "HELP":
		if s.be == nil && verb == "NOOP" {
			s.sc.reply(replyOK)
			return nil
		}
		return s.forward(cmd.Line, nil)
	case "QUIT":
		s.sc.reply(replyBye)
		return errClose
	case "EHLO", "HELO":
		s.resetBackend()
		return s.sc.ehlo(cmd, verb == "EHLO")
	case "AUTH":
		return s.sc.fail(replyAuthed)
	case "STARTTLS":
		return s.sc.fail(replyTLSActive)
	default:
		return s.sc.fail(replyUnknown)
	}
}

// mail checks the sender, then forwards MAIL FROM without AUTH= (the
// backend knows who the user is), reconnecting the backend if an earlier
// connection failed.
func (s *session) mail(ctx context.Context, cmd command) error {
	if s.inTx {
		s.sc.reply(replyNestedMail)
		return nil
	}
	from, line, ok := parseMail(cmd.Args)
	if !ok {
		return s.sc.fail(replyBadMail)
	}
	if lim := s.f.opts.MaxMessageBytes; lim > 0 && declaredSize(line) > lim {
		s.sc.reply(replyTooBig)
		return nil
	}
	if s.f.opts.EnforceSender && !senderAllowed(s.ps.Identity.User, from, s.f.aliases) {
		s.log.Info("sender refused", "from", from)
		s.sc.reply(fmt.Sprintf(replySenderFmt, from))
		return nil
	}
	if s.be == nil {
		if err := s.reconnect(ctx); err != nil {
			return err
		}
		if s.be == nil {
			return nil
		}
	}
	return s.forward(line, func(code int) {
		if code/100 == 2 {
			s.setTx(true)
		}
	})
}

// rcpt forwards RCPT TO, within MaxRecipients.
func (s *session) rcpt(cmd command) error {
	switch {
	case s.be == nil:
		s.sc.reply(replyBackendLost) // the backend failed during this transaction
		return nil
	case s.inTx && s.rcpts >= s.f.opts.MaxRecipients:
		s.sc.reply(replyTooManyRcpts)
		return nil
	}
	return s.forward(cmd.Line, func(code int) {
		if code/100 == 2 {
			s.rcpts++
		}
	})
}

// rset forwards RSET, which ends the transaction.
func (s *session) rset(cmd command) error {
	s.setTx(false)
	if s.be == nil {
		s.sc.reply(replyOK)
		return nil
	}
	return s.forward(cmd.Line, nil)
}

// resetBackend ends an open transaction at the backend (for EHLO/HELO,
// whose reply is mailgate's own).
func (s *session) resetBackend() {
	if !s.inTx || s.be == nil {
		s.setTx(false)
		return
	}
	s.setTx(false)
	if _, _, err := s.be.roundTrip([]byte("RSET"), backendReplyTimeout); err != nil {
		s.backendFailed("RSET", err)
	}
}

// setTx records whether a transaction is open; Shutdown and the end of the
// token's lifetime wait for it (conn.busy).
func (s *session) setTx(open bool) {
	s.inTx = open
	if !open {
		s.rcpts, s.chunked = 0, 0
	}
	s.sc.busy.Store(open)
}

// forward sends line to the backend and queues its reply for the client;
// then, if the exchange worked, calls after with the reply's code. A
// failed backend is answered replyBackendLost (the next MAIL reconnects),
// a backend's 421 is passed on and ends the connection.
func (s *session) forward(line []byte, after func(code int)) error {
	if s.be == nil {
		s.sc.reply(replyBackendLost)
		return nil
	}
	code, raw, err := s.be.roundTrip(line, backendReplyTimeout)
	if err != nil {
		s.backendFailed(verbOf(line), err)
		return nil
	}
	s.sc.replyBytes(raw)
	if code == 421 { // the backend is closing the connection
		s.log.Info("backend closing", "cmd", verbOf(line), "reply", proxy.Truncate(raw))
		s.dropBackend(false)
		return errClose
	}
	if after != nil {
		after(code)
	}
	return nil
}

// backendFailed drops a backend whose connection failed and answers the
// command replyBackendLost.
func (s *session) backendFailed(cmd string, err error) {
	s.log.Warn("backend connection failed", "cmd", cmd, "err", err)
	s.dropBackend(false)
	s.sc.reply(replyBackendLost)
}

// reconnect logs in to the backend again after an earlier connection
// failed. A password session cannot (mailgate does not keep the
// password): it is closed.
func (s *session) reconnect(ctx context.Context) error {
	sc := s.sc
	if s.ps.Password {
		s.log.Info("backend connection lost; a password session cannot reconnect: closing")
		sc.reply(replyBackendGone)
		return errClose
	}
	d := s.f.dialog(sc)
	if _, err := sc.c.Reconnect(ctx, s.ps, sc.loginRequest(d, "", nil)); err != nil {
		s.log.Warn("backend reconnect failed", "err", err)
		sc.reply(replyBackendDown)
		return nil
	}
	s.log.Info("backend reconnected")
	s.be = d.session
	return nil
}

// dropBackend closes the backend session, with QUIT if graceful. The
// transaction, if any, is over.
func (s *session) dropBackend(graceful bool) {
	be := s.be
	s.be = nil
	s.setTx(false)
	if be == nil {
		return
	}
	if graceful {
		be.quit()
	} else {
		be.abort()
	}
	s.sc.clearBackend(be.raw)
}

// end closes the session: the lifetime watch, the backend (QUIT).
func (s *session) end() {
	s.stopWatch()
	s.dropBackend(true)
	s.log.Info("session ended", "messages", s.messages, "duration", time.Since(s.started).Round(time.Millisecond))
}

// verbOf is the first word of a command line, for logs.
func verbOf(line []byte) string {
	v, _, _ := bytes.Cut(line, []byte{' '})
	return strings.ToUpper(string(v))
}

// parseMail parses MAIL's arguments, FROM:<address> [parameters] (the
// angle brackets are required, as RFC 5321 says), and returns the address
// and the line to send to the backend: the client's own, or, if it carried
// an AUTH= parameter, one without it.
func parseMail(args []byte) (from string, line []byte, ok bool) {
	if len(args) < 5 || !strings.EqualFold(string(args[:5]), "FROM:") {
		return "", nil, false
	}
	rest := bytes.TrimLeft(args[5:], " ")
	if len(rest) == 0 || rest[0] != '<' {
		return "", nil, false
	}
	end := closingBracket(rest)
	if end < 0 || end+1 < len(rest) && rest[end+1] != ' ' {
		return "", nil, false
	}
	path, params := rest[:end+1], rest[end+1:]
	fields := strings.Fields(string(params))
	kept := fields[:0]
	for _, p := range fields {
		if len(p) >= 5 && strings.EqualFold(p[:5], "AUTH=") {
			continue
		}
		kept = append(kept, p)
	}
	from = string(rest[1:end])
	if len(kept) == len(fields) {
		return from, append([]byte("MAIL "), args...), true
	}
	line = append([]byte("MAIL FROM:"), path...)
	for _, p := range kept {
		line = append(append(line, ' '), p...)
	}
	return from, line, true
}

// declaredSize is the SIZE= parameter of a MAIL line (RFC 1870), 0 if
// none or not a number.
func declaredSize(line []byte) int64 {
	for _, p := range strings.Fields(string(line)) {
		if len(p) > 5 && strings.EqualFold(p[:5], "SIZE=") {
			n, _ := strconv.ParseInt(p[5:], 10, 64)
			return n
		}
	}
	return 0
}

// closingBracket is the index of the '>' that closes the path starting at
// b[0] == '<', skipping quoted strings and quoted pairs; -1 if none.
func closingBracket(b []byte) int {
	quoted := false
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return i
		}
	}
	return -1
}

// senderAllowed reports whether user may use from as MAIL FROM: their own
// address, or one of aliases[user], where "*@domain" stands for any address
// at domain. The null sender is never allowed. user and the aliases are
// lower case (normalizeAliases); from is compared case-insensitively.
func senderAllowed(user, from string, aliases map[string][]string) bool {
	from = strings.ToLower(from)
	if from == "" {
		return false
	}
	if from == user {
		return true
	}
	at := strings.LastIndexByte(from, '@')
	for _, a := range aliases[user] {
		if dom, ok := strings.CutPrefix(a, "*@"); ok {
			if at > 0 && from[at+1:] == dom {
				return true
			}
		} else if a == from {
			return true
		}
	}
	return false
}

// normalizeAliases lower-cases keys and values of a sender alias map.
func normalizeAliases(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		k = strings.ToLower(strings.TrimSpace(k))
		for _, a := range v {
			out[k] = append(out[k], strings.ToLower(strings.TrimSpace(a)))
		}
	}
	return out
}
