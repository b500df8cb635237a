// Package proxy is mailgate's network side: it owns the client listeners
// (implicit TLS and STARTTLS), the IMAP and SMTP pre-authentication
// conversations, the backend login as a Dovecot master user on behalf of the
// verified address (or, with opt-in password passthrough, with the user's own
// password), and the relay of the rest of the session.
//
// Around that: connection limits and PROXY protocol in (limits.go), graceful
// shutdown (server.go), session lifetime bound to the token (lifetime.go),
// and an Observer for metrics (observer.go).
//
// The pre-auth state machines (imap_*.go, smtp_*.go) run a conversation until
// authentication succeeds and a backend session is open; relay.go then copies
// bytes both ways and knows nothing about IMAP. SMTP is relayed command by
// command (the backend's replies passed verbatim), so that the client hears
// 250 for DATA only after the backend said 250.
//
// Errors from package auth and from the backends are mapped to protocol
// replies in one place per protocol (errors.go). Internal error text is logged,
// never sent to a client.
//
// References: RFC 9051 and RFC 3501 (IMAP), RFC 2971 (ID), RFC 7888
// (LITERAL+), RFC 4959 (SASL-IR), RFC 5530 (response codes), RFC 6409
// (submission), RFC 4954 (SMTP AUTH), RFC 3207 (STARTTLS), RFC 7628.
package proxy
