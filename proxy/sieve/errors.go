package sieve

import (
	"errors"

	"github.com/mailgate/mailgate/proxy"
)

// errClose ends the pre-auth conversation after a final reply (or none,
// when nobody is listening) has been written.
var errClose = errors.New("sieve: close connection")

// Replies mailgate writes itself (RFC 5804 §1.3 for the response codes:
// ENCRYPT-NEEDED before TLS, TRYLATER for a temporary failure). Each
// ends in CRLF.
const (
	replyGreeting      = `OK "mailgate ready."` + "\r\n"
	replyBusy          = `BYE (TRYLATER) "Too many connections, try again later."` + "\r\n"
	replyShutdown      = `BYE (TRYLATER) "Server shutting down."` + "\r\n"
	replyEncryptNeeded = `NO (ENCRYPT-NEEDED) "Authentication requires TLS: use STARTTLS first."` + "\r\n"
	replyAuthFailed    = `NO "Authentication failed."` + "\r\n"
	replyTempFail      = `NO (TRYLATER) "Temporary authentication failure, try again later."` + "\r\n"
	replyTooManyAuth   = `BYE "Too many authentication failures."` + "\r\n"
	replyTooManyErrors = `BYE "Too many invalid commands."` + "\r\n"
)

// What a failed login counts against the connection's limits.
const (
	countNothing     = iota
	countError       // a protocol error (Limits.MaxErrors)
	countAuthFailure // a refused login (Limits.MaxAuthFailures)
)

// loginReply is what a failed login (or AUTHENTICATE initial response)
// comes to for the client: the reply to write ("" with a nil raw: close
// without a word) and what it counts.
type loginReply struct {
	line  string
	raw   []byte // the backend's refusal, verbatim (password passthrough)
	count int
}

// replyFor is the one place where login errors become ManageSieve replies.
// A refused token and a missing mailbox look the same to the client; an
// outage is temporary (TRYLATER), so clients keep their credentials. The
// RFC 7628 error challenge has been sent by then (Conn.Login's exchange).
func replyFor(err error) loginReply {
	var ref *proxy.Refusal
	switch {
	case errors.Is(err, proxy.ErrUnsupportedMechanism):
		return loginReply{line: `NO "Unsupported SASL mechanism."` + "\r\n", count: countError}
	case errors.As(err, &ref):
		if ref.Credentials {
			return loginReply{raw: ref.Reply, count: countAuthFailure}
		}
		return loginReply{raw: ref.Reply}
	}
	if unheard, failed := proxy.Unheard(err); unheard {
		if failed {
			return loginReply{count: countAuthFailure}
		}
		return loginReply{}
	}
	result, _ := proxy.Classify(err)
	switch result {
	case proxy.ResultInvalid:
		return loginReply{line: replyAuthFailed, count: countAuthFailure}
	case proxy.ResultBlocked:
		return loginReply{line: `NO (TRYLATER) "Too many failed logins from your network, try again later."` + "\r\n",
			count: countAuthFailure}
	case proxy.ResultLimited:
		return loginReply{line: `NO (TRYLATER) "Too many sessions, try again later."` + "\r\n"}
	case proxy.ResultMalformed:
		return loginReply{line: `NO "Invalid SASL message."` + "\r\n", count: countError}
	case proxy.ResultCanceled:
		return loginReply{line: `NO "Authentication canceled."` + "\r\n"}
	}
	return loginReply{line: replyTempFail}
}

// Fixes for the backend configuration problems the dialog and the probe
// find, as logged and reported by /readyz and check-config.
const (
	hintPrivacy = "Dovecot refuses authentication over a plaintext connection from mailgate's address: set " +
		"sieve.backend.tls to starttls or implicit (Dovecot 2.4 with ssl = required, which DMS sets, requires TLS " +
		"from every address but its own), or sieve.backend.client_ip: proxy towards a 'haproxy = yes' managesieve " +
		"listener (mailgate declares the client's TLS in the PROXY header); on Dovecot 2.3 adding mailgate's " +
		"address to login_trusted_networks also works"
	hintPlain    = "Dovecot does not offer SASL PLAIN for ManageSieve: add plain to auth_mechanisms"
	hintStartTLS = "the ManageSieve listener does not offer STARTTLS: set sieve.backend.tls to implicit or none " +
		"(with client_ip: proxy towards a 'haproxy = yes' listener), or enable ssl in Dovecot"
	hintXCLIENT = "Dovecot does not offer XCLIENT to mailgate, so clients' addresses are not passed on (Dovecot then " +
		"logs and penalizes failed logins by mailgate's address): add mailgate's address to " +
		"login_trusted_networks, or set sieve.backend.client_ip to proxy towards a 'haproxy = yes' listener"
	hintOptions = "set sieve.backend.tls to none, starttls or implicit and sieve.backend.client_ip to none, " +
		"xclient or proxy"
)

// problem is a configuration problem of the ManageSieve backend.
func problem(what, fix string) *proxy.BackendProblem {
	return &proxy.BackendProblem{Proto: proto, What: what, Fix: fix}
}
