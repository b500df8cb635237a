package pop3

import (
	"errors"

	"github.com/mailgate/mailgate/proxy"
)

// Replies of the pre-auth conversation, with CRLF. Response codes are RFC
// 2449's and RFC 3206's: [AUTH] only where the credentials were judged
// (clients then ask the user for new ones), [SYS/TEMP] for what goes away
// by itself (try again later), [SYS/PERM] for what needs the user or an
// administrator to change a setting. Texts never carry internals.
const (
	replyGreeting = "+OK mailgate ready.\r\n"
	replyBusy     = "-ERR [SYS/TEMP] Too many connections, try again later.\r\n"
	replyShutdown = "-ERR [SYS/TEMP] Server shutting down.\r\n"
	replyNeedTLS  = "-ERR [SYS/PERM] Command not permitted before STLS.\r\n"
	replyNoPasswd = "-ERR [SYS/PERM] Password login is not offered here; use OAuth (AUTH XOAUTH2 or OAUTHBEARER).\r\n"

	replyUnknown     = "-ERR Unknown command.\r\n"
	replyNotLoggedIn = "-ERR Not logged in.\r\n"
	replyBadArgs     = "-ERR Invalid arguments.\r\n"
	replyNoUser      = "-ERR No username given.\r\n"
	replyUserOK      = "+OK\r\n"
	replyQuit        = "+OK Logging out.\r\n"
	replySTLS        = "+OK Begin TLS negotiation now.\r\n"
	replyTLSActive   = "-ERR TLS is already active.\r\n"

	replyLineTooLong = "-ERR Line too long.\r\n"
	replyTooLarge    = "-ERR Command too large.\r\n"
	replyIdle        = "-ERR Disconnected for inactivity.\r\n"
	replyPreauthOver = "-ERR Pre-authentication time limit reached.\r\n"
)

// Login replies, as replyFor maps errors to them.
const (
	replyUnsupported = "-ERR Unsupported authentication mechanism.\r\n"
	replyInvalid     = "-ERR [AUTH] Authentication failed.\r\n"
	replyTempFail    = "-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n"
	replyLimited     = "-ERR [SYS/TEMP] Too many sessions, try again later.\r\n"
	replyBlocked     = "-ERR [SYS/TEMP] Too many failed logins from your network, try again later.\r\n"
	replyMalformed   = "-ERR Invalid SASL message.\r\n"
	replyCanceled    = "-ERR AUTH canceled.\r\n"
)

// reply is what the client hears after a failed login.
type reply = proxy.LoginReply

const (
	countError = proxy.CountError
	countAuth  = proxy.CountAuth
)

// replyFor is the one place where a login error (from Conn.Login,
// Conn.LoginPassword or decoding an initial response) becomes a POP3
// reply. A refused token and a missing mailbox look the same ([AUTH]); an
// outage or a full pool is temporary ([SYS/TEMP]). A network blocked after
// many failures is [SYS/TEMP] too: the block ends by itself, and [AUTH]
// would make the client throw away a password or token that may be good
// (RFC 2449's [LOGIN-DELAY] is about logging in too often, not failures).
// A *proxy.Refusal carries the backend's own reply, passed on verbatim.
func replyFor(err error) reply {
	if errors.Is(err, proxy.ErrUnsupportedMechanism) {
		return reply{Line: []byte(replyUnsupported)}
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
		return reply{Line: []byte(replyLimited)}
	case proxy.ResultMalformed:
		return reply{Line: []byte(replyMalformed), Count: countError}
	case proxy.ResultCanceled:
		return reply{Line: []byte(replyCanceled)}
	}
	return reply{Line: []byte(replyTempFail)} // unavailable, or unexpected (logged loudly by the login)
}
