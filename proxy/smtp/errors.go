package smtp

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/proxy"
)

// go-smtp sends an *smtp.SMTPError as is and err.Error() for anything else
// (a type assertion, not errors.As), and 554 for a failed DATA, so every
// error given back to it is one of these replies. Internal error text is
// logged, never sent.

// Replies of the authentication phase (RFC 4954, RFC 3463).
var (
	replyMalformed       = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid SASL message"}
	replyInvalid         = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	replyTempFail        = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	replyTooManySessions = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many sessions, try again later"}
	replyBlocked         = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins from your network, try again later"}
	replyTooManyAuth     = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures"}
)

// Replies of the transaction phase.
var (
	replyAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	// replyBackendLost: the backend connection failed; the session
	// reconnects at the next MAIL.
	replyBackendLost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to the mail server lost, try again"}
	replyBackendDown = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Mail server unavailable, try again later"}
	replyNoUTF8      = &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "SMTPUTF8 is not supported by the mail server"}
	// replyBackendGone: the backend connection of a password session
	// failed; mailgate does not keep the password to reconnect, so the
	// client must log in again.
	replyBackendGone = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to the mail server lost, log in again"}
)

func replySenderRefused(from string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: fmt.Sprintf("<%s>: Sender address rejected: not owned by the authenticated user", from)}
}

// authReply is the one place where a login's error becomes the client's
// reply: a refused token and a missing mailbox look the same to the client
// (535 5.7.8); an outage is temporary (454 4.7.0). It counts failures
// against the per-connection limit, closing the connection after the reply
// to the last one allowed. The login sequence has logged the error and
// counted it.
func (ss *session) authReply(err error) error {
	if errors.Is(err, proxy.ErrUnsupportedMechanism) {
		return smtp.ErrAuthUnknownMechanism
	}
	cc := ss.cc
	var reply *smtp.SMTPError
	result, _ := proxy.Classify(err)
	switch result {
	case proxy.ResultLimited:
		reply = replyTooManySessions
	case proxy.ResultBlocked:
		reply = replyBlocked
	case proxy.ResultMalformed, proxy.ResultCanceled:
		reply = replyMalformed
	case proxy.ResultInvalid:
		reply = replyInvalid
	default: // unavailable, aborted (nobody listens), or unexpected (logged loudly)
		reply = replyTempFail
	}
	switch result {
	case proxy.ResultInvalid, proxy.ResultMalformed, proxy.ResultCanceled, proxy.ResultBlocked:
		if n := cc.authFailures.Add(1); int(n) >= ss.f.lim.MaxAuthFailures {
			cc.log.Info("too many authentication failures: closing")
			cc.closeAfterWrite.Store(true)
		}
	}
	return reply
}
