package pop3

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/mailgate/mailgate/proxy"
)

// What Dovecot's replies to mailgate's login mean, for logins and probes,
// and the settings to change when they refuse every login.

// Fixes, as logged and reported by readiness and check-config.
const (
	// hintPrivacy: Dovecot refuses authentication over this connection
	// (2.4 with ssl = required from any address but its own; 2.3 with
	// disable_plaintext_auth from outside login_trusted_networks).
	hintPrivacy = "Dovecot refuses authentication over a plaintext connection from mailgate's address: " +
		"set pop3.backend.tls to starttls or implicit (Dovecot 2.4 with ssl = required, which DMS sets, requires TLS " +
		"from every address but its own), or pop3.backend.client_ip: proxy towards a 'haproxy = yes' listener " +
		"(mailgate declares the client's TLS in the PROXY header); on Dovecot 2.3 adding mailgate's address to " +
		"login_trusted_networks also works"
	hintPlain   = "Dovecot does not offer SASL PLAIN: add plain to auth_mechanisms"
	hintXCLIENT = "Dovecot does not take XCLIENT from mailgate: add mailgate's address to login_trusted_networks, " +
		"or set pop3.backend.client_ip to proxy (PROXY v2, haproxy_trusted_networks) or none"
)

// loginRefused classifies Dovecot's -ERR (or anything but +OK) to AUTH
// PLAIN, for proxy.BackendDialog: a configuration problem, the user's own
// credentials refused (own: passed on verbatim), no such mailbox, or an
// outage. [IN-USE] and [LOGIN-DELAY] (RFC 2449) are about the mailbox, not
// mailgate: the client hears them verbatim, as it would from Dovecot.
func loginRefused(line []byte, own bool) error {
	code := respCode(line)
	what := "refused the login: " + proxy.Truncate(line)
	switch {
	case plaintextRefused(line):
		return &proxy.BackendProblem{Proto: proto, What: what, Fix: hintPrivacy}
	case own:
		return &proxy.Refusal{Reply: withCRLF(line), Credentials: code == "AUTH"}
	case code == "AUTH" && bytes.Contains(bytes.ToLower(line), []byte("authorization failed")):
		return fmt.Errorf("%w: %q", proxy.ErrMailboxRefused, proxy.Truncate(line))
	case code == "AUTH":
		// Suspected: Dovecot 2.4.1 also says this after a poisoned
		// exchange, and a per-user passdb rule could refuse one mailbox.
		return &proxy.BackendProblem{Proto: proto, What: "refused the master login: " + proxy.Truncate(line),
			Fix: proxy.HintDovecotMaster, Suspected: true}
	case code == "IN-USE" || code == "LOGIN-DELAY":
		return &proxy.Refusal{Reply: withCRLF(line)}
	}
	return unavailable(fmt.Errorf("login refused: %q", proxy.Truncate(line)))
}

// plaintextRefused reports Dovecot's refusal to authenticate without TLS:
// 2.3 "Plaintext authentication disallowed on non-secure (SSL/TLS)
// connections.", 2.4 "Authentication disallowed on non-secure ...".
func plaintextRefused(line []byte) bool {
	l := strings.ToLower(string(line))
	return strings.Contains(l, "non-secure") || strings.Contains(l, "plaintext authentication disabled")
}

// respCode is the response code of "-ERR [CODE] text" (RFC 2449 §8),
// upper case, or "".
func respCode(line []byte) string {
	rest, ok := bytes.CutPrefix(line, []byte("-ERR ["))
	if !ok {
		return ""
	}
	code, _, ok := bytes.Cut(rest, []byte("]"))
	if !ok {
		return ""
	}
	return strings.ToUpper(string(code))
}

func withCRLF(line []byte) []byte { return append(bytes.Clone(line), '\r', '\n') }
