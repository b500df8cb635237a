package smtp

import (
	"errors"

	"github.com/mailgate/mailgate/proxy"
)

// mailgate's own replies, with CRLF (RFC 5321, RFC 3463 enhanced codes,
// RFC 4954 for AUTH). Once logged in, the replies to the mail commands are
// Postfix's own, passed on verbatim (session.go); these are only what
// mailgate says itself. Where Postfix has a text for the same situation,
// it is Postfix's. Texts never carry internals.
const (
	replyBusy     = "421 4.7.0 Too many connections, try again later\r\n"
	replyShutdown = "421 4.3.2 Service shutting down, try again later\r\n"
	replyOK       = "250 2.0.0 Ok\r\n"
	replyBye      = "221 2.0.0 Bye\r\n"
	replyUnknown  = "502 5.5.2 Error: command not recognized\r\n"

	replyNeedTLS      = "530 5.7.0 Must issue a STARTTLS command first\r\n"
	replyAuthTLS      = "523 5.7.10 TLS is required\r\n"
	replyAuthRequired = "530 5.7.0 Authentication required\r\n"
	replyNeedHELO     = "503 5.5.1 Error: send HELO/EHLO first\r\n"
	replyReadyTLS     = "220 2.0.0 Ready to start TLS\r\n"
	replyTLSActive    = "554 5.5.1 Error: TLS already active\r\n"
	replyBadSTARTTLS  = "501 5.5.4 Syntax: STARTTLS\r\n"
	replyBadEHLO      = "501 5.5.4 Syntax: EHLO hostname\r\n"
	replyBadHELO      = "501 5.5.4 Syntax: HELO hostname\r\n"
	replyAuthed       = "503 5.5.1 Error: already authenticated\r\n"

	replyLineTooLong   = "500 5.5.6 Line too long\r\n"
	replyTooLarge      = "500 5.5.6 Command too large\r\n"
	replyTimeout       = "421 4.4.2 Error: timeout exceeded, closing connection\r\n"
	replyPreauthOver   = "421 4.4.2 Pre-authentication time limit reached, closing connection\r\n"
	replyTooManyErrors = "421 4.7.0 Too many errors, closing connection\r\n"
	replyTooManyAuth   = "421 4.7.0 Too many authentication failures, closing connection\r\n"
	replyExpired       = "421 4.7.0 Access token expired, log in again\r\n"
	replyRevoked       = "421 4.7.0 Access token no longer valid, log in again\r\n"
	replyAppPassword   = "421 4.7.0 App password no longer valid\r\n"
)

// Replies of the session that are mailgate's (session.go, data.go).
const (
	// replyBackendLost: the backend connection failed; the session
	// reconnects at the next MAIL.
	replyBackendLost = "451 4.4.2 Connection to the mail server lost, try again\r\n"
	replyBackendDown = "451 4.4.1 Mail server unavailable, try again later\r\n"
	// replyBackendGone: the backend connection of a password session
	// failed; mailgate does not keep the password to reconnect.
	replyBackendGone  = "421 4.4.2 Connection to the mail server lost, log in again\r\n"
	replyNeedMail     = "503 5.5.1 Error: need MAIL command\r\n"
	replyNestedMail   = "503 5.5.1 Error: nested MAIL command\r\n"
	replyBadMail      = "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	replyTooManyRcpts = "452 4.5.3 Error: too many recipients\r\n"
	replyTooBig       = "552 5.3.4 Message size exceeds fixed limit\r\n"
	replyBadBDAT      = "501 5.5.4 Syntax: BDAT count [LAST]\r\n"
	replyDataTimeout  = "421 4.4.2 Timeout waiting for message data, closing connection\r\n"
	replySenderFmt    = "553 5.7.1 <%s>: Sender address rejected: not owned by the authenticated user\r\n"
)

// Replies of a failed login, as replyFor maps errors to them.
const (
	replyAuthOK          = "235 2.7.0 Authentication successful\r\n"
	replyUnsupported     = "504 5.5.4 Unrecognized authentication type\r\n"
	replyInvalid         = "535 5.7.8 Authentication credentials invalid\r\n"
	replyTempFail        = "454 4.7.0 Temporary authentication failure, try again later\r\n"
	replyTooManySessions = "454 4.7.0 Too many sessions, try again later\r\n"
	replyBlocked         = "454 4.7.0 Too many failed logins from your network, try again later\r\n"
	replyMalformed       = "501 5.5.2 Invalid SASL message\r\n"
	replyCanceled        = "501 5.7.0 Authentication aborted\r\n"
	replyBadAUTH         = "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
)

// reply is what the client hears after a failed login.
type reply = proxy.LoginReply

const (
	countError = proxy.CountError
	countAuth  = proxy.CountAuth
)

// replyFor is the one place where a login error (from Conn.Login,
// Conn.LoginPassword or decoding an initial response) becomes an SMTP
// reply. A refused token and a missing mailbox look the same (535 5.7.8);
// an outage or a full pool is temporary (454 4.7.0), and so is a network
// blocked after many failures: the block ends by itself. A malformed or
// canceled exchange is 501 (RFC 4954: never a 4xx, or the client would
// retry the same bytes) and counts as a failed authentication, like a
// refused one; a reply to the error challenge after a refused token is
// neither, whatever it holds: it is the dummy response (535 5.7.8). A
// *proxy.Refusal carries the backend's own reply (the user's own password
// refused), passed on verbatim.
func replyFor(err error) reply {
	if errors.Is(err, proxy.ErrUnsupportedMechanism) {
		return reply{Line: []byte(replyUnsupported), Count: countError}
	}
	if r, ok := proxy.BackendReply(err); ok {
		return r
	}
	switch result, _ := proxy.Classify(err); result {
	case proxy.ResultInvalid:
		return reply{Line: []byte(replyInvalid), Count: countAuth}
	case proxy.ResultBlocked:
		return reply{Line: []byte(replyBlocked), Count: countAuth}
	case proxy.ResultLimited:
		return reply{Line: []byte(replyTooManySessions)}
	case proxy.ResultMalformed:
		return reply{Line: []byte(replyMalformed), Count: countAuth}
	case proxy.ResultCanceled:
		return reply{Line: []byte(replyCanceled), Count: countAuth}
	}
	return reply{Line: []byte(replyTempFail)} // unavailable, or unexpected (logged loudly by the login)
}
