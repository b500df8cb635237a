// Package sieve is mailgate's ManageSieve front (RFC 5804): clients such as
// Roundcube's managesieve plugin, Thunderbird's Sieve add-on or sieve-connect
// log in with an OAuth token (SASL XOAUTH2 or OAUTHBEARER, RFC 7628) or,
// with password passthrough, PLAIN or LOGIN, and are then relayed to
// Dovecot's ManageSieve service (Pigeonhole), logged in as the Dovecot
// master user on behalf of the verified address.
//
// Typical use:
//
//	front := sieve.New(srv, sieve.Options{Backend: proxy.Backend{
//		Address: "mail:4190", TLS: proxy.TLSStartTLS, ClientIP: "xclient"}})
//	go srv.Serve(ctx, ln, false, front) // port 4190: STARTTLS, then AUTHENTICATE
//
// The package runs only the pre-auth conversation: the capability greeting,
// CAPABILITY, NOOP, LOGOUT, STARTTLS and AUTHENTICATE, read by a capped
// command reader (reader.go) under the core's deadlines and limits. The
// login itself (the SASL exchange, the token check, a seat, the backend
// dial) is the core's proxy.Conn.Login, with this package's framing of the
// SASL exchange (authenticate.go) and backend dialog (backend.go): read the
// greeting, STARTTLS, XCLIENT with the client's address, AUTHENTICATE
// "PLAIN". Login errors become replies in one place (errors.go). After the
// login the core's protocol-blind relay takes over; a goodbye (server
// shutdown, token expired) is added only between two response lines
// (relay.go).
//
// Authentication needs TLS: on a plaintext listener the SASL capability is
// empty and AUTHENTICATE gets NO (ENCRYPT-NEEDED) until STARTTLS. A refused
// token gets the RFC 7628 error challenge as a quoted base64 string; a
// client that never answers it (PHP's Net_Sieve, as Roundcube uses it) gets
// the refusal after a few seconds. Temporary failures carry TRYLATER.
//
// References: RFC 5804 (ManageSieve), RFC 4422 (SASL), RFC 4616 (PLAIN),
// RFC 7628 (OAUTHBEARER), Google's XOAUTH2, Dovecot's XCLIENT for
// ManageSieve (Pigeonhole's managesieve-login).
package sieve
