// Package pop3 is mailgate's POP3 front: the pre-authentication
// conversation of a POP3 client (RFC 1939), up to a backend session on
// Dovecot logged in for the user, after which the proxy package's
// protocol-blind relay takes over.
//
// Typical use:
//
//	front := pop3.New(srv, pop3.Options{Backend: proxy.Backend{
//		Address: "mailserver:110", TLS: proxy.TLSStartTLS, ClientIP: "xclient",
//	}})
//	go srv.Serve(ctx, ln995, true, front)  // POP3S: implicit TLS
//	go srv.Serve(ctx, ln110, false, front) // POP3: STLS before authentication
//
// Before login a client can say CAPA (RFC 2449), STLS (RFC 2595), AUTH
// (RFC 5034) with XOAUTH2 or OAUTHBEARER (RFC 7628), USER/PASS and AUTH
// PLAIN/LOGIN with password passthrough, and QUIT. Authentication is
// refused before TLS. Pipelining (RFC 2449) is supported: commands sent
// behind a successful login reach Dovecot, except after STLS, where
// anything pipelined in plaintext is discarded (STARTTLS command
// injection, CVE-2011-0411). Command lines are capped at maxCommandLine,
// except AUTH lines and SASL responses, which carry bearer tokens and may
// take Limits.MaxLine.
//
// Errors are POP3 -ERR replies with the response codes of RFC 2449 and
// RFC 3206 ([AUTH], [SYS/TEMP], [SYS/PERM], passed on from Dovecot:
// [IN-USE], [LOGIN-DELAY]); the mapping is in one function, replyFor.
//
// Towards Dovecot the front reads the greeting, says STLS when the
// backend's TLS mode is starttls, forwards the client's address with
// XCLIENT (from login_trusted_networks) or a PROXY v2 header, and logs in
// with AUTH PLAIN as the master user on behalf of the verified user (or
// with the user's own password for passthrough).
package pop3
