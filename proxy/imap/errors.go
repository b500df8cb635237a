package imap

import (
	"errors"

	"github.com/mailgate/mailgate/proxy"
)

// authError is the one place where a login's error becomes the client's
// reply (RFC 5530 response codes) and counts against the per-connection
// limits. A refused token and a missing mailbox look the same to the
// client; an outage is temporary. [UNAVAILABLE] is for what is temporary
// only (the provider or backend down, the session cap reached, an
// unexpected error): Thunderbird stops retrying after it, so a refused
// token must never get it, nor a blocked network ([LIMIT]). The login
// sequence has logged the error and counted it; the client never sees its
// text.
func (c *conn) authError(cmd *command, err error) error {
	var ref *proxy.Refusal
	if errors.As(err, &ref) {
		// Password passthrough: the backend's NO or BAD, verbatim.
		if werr := c.writeRaw(ref.Reply); werr != nil {
			return werr
		}
		if ref.Credentials {
			return c.authFailed()
		}
		return nil
	}
	if errors.Is(err, proxy.ErrUnsupportedMechanism) {
		return c.writeLine("%s NO Unsupported authentication mechanism.", cmd.Tag)
	}
	var text string
	if unheard, failed := proxy.Unheard(err); unheard {
		if failed {
			c.authFailures++
		}
		return errCloseConn
	}
	result, _ := proxy.Classify(err)
	switch result {
	case proxy.ResultCanceled:
		return c.writeLine("%s BAD AUTHENTICATE canceled.", cmd.Tag)
	case proxy.ResultMalformed:
		text = "BAD Invalid SASL message."
		if errors.Is(err, errBadBase64) {
			text = "BAD Invalid base64 in the SASL response"
		}
	case proxy.ResultLimited:
		text = "NO [UNAVAILABLE] Too many sessions, try again later."
	case proxy.ResultBlocked:
		text = "NO [LIMIT] Too many failed logins from your network, try again later."
	case proxy.ResultInvalid:
		text = "NO [AUTHENTICATIONFAILED] Authentication failed."
	default: // unavailable, or an unexpected error (the login sequence logged it loudly)
		text = "NO [UNAVAILABLE] Temporary authentication failure, try again later."
	}
	if werr := c.writeLine("%s %s", cmd.Tag, text); werr != nil {
		return werr
	}
	switch result {
	case proxy.ResultMalformed:
		return c.protocolError()
	case proxy.ResultInvalid, proxy.ResultBlocked:
		return c.authFailed()
	}
	return nil
}
