// Package proxy is what mailgate's protocol fronts share: listeners and
// admission, TLS towards clients, the login sequence (SASL through package
// auth, throttle, token check, backend login as a Dovecot master user on
// behalf of the verified address, or, with opt-in password passthrough,
// with the user's own password), backend dialing and TLS, the
// protocol-blind relay, session lifetime, backend probes and the Observer.
// Each protocol's pre-auth conversation, reply mapping and backend
// conversation live in a package of its own: proxy/imap, proxy/smtp,
// proxy/pop3 and proxy/sieve (ManageSieve), none of which imports another;
// cmd/mailgate wires them (cmd/mailgate/fronts.go):
//
//	srv, _ := proxy.New(opts)
//	f := imap.New(srv, imap.Options{Backend: dovecot})
//	go srv.Serve(ctx, ln, implicitTLS, f) // for every listener
//	...
//	srv.Shutdown(drainCtx)
//
// # The walk of a login, from accept to relay
//
//  1. Accept (server.go: Server.Serve in front.go, serve, handleConn). One
//     loop per listener; a listener from ProxyProtocolFrom reads the PROXY
//     header first (limits.go: wrapProxyProtocol), and a front that is a
//     ConnWrapper wraps the connection. Accept errors are waited out
//     (limits.go: acceptBackoff).
//  2. Admission (pools.go, rate.go). The connection takes a seat in the
//     pre-login pool, per client network, within the network's connection
//     rate; one over a cap is refused cheaply (limits.go: rejectBusy writes
//     the front's Busy line on a plaintext port), or displaces the oldest
//     pre-login connection of the busiest network.
//  3. Front.ServeConn (front.go: Conn). The front gets a Conn: the raw
//     connection, its log, the pre-auth Deadline, and the shared steps:
//     Handshake (implicit TLS, or after its own STARTTLS; tls.go gives
//     each protocol its own ALPN), ArmRead for each command, OnShutdown to
//     wake a waiting read, Passwords and Limits.
//  4. The pre-auth machine is the front's (proxy/imap: conn.go, reader.go;
//     proxy/smtp and proxy/pop3: conn.go, commands.go, over the shared
//     CommandReader, cmdreader.go; proxy/sieve: conn.go, reader.go):
//     greeting, capabilities, STARTTLS/STLS, until the client
//     authenticates.
//  5. Conn.Login (login.go), or Conn.LoginPassword for a protocol's own
//     user/password command (IMAP LOGIN, POP3 USER/PASS). The SASL exchange runs package
//     auth's servers (auth.Server for XOAUTH2 and OAUTHBEARER,
//     auth.PasswordServer for PLAIN and LOGIN), framed by the front's
//     Stepper (any reply to an RFC 7628 error challenge is the dummy
//     reply, and the wait for it is Limits.DummyReplyWait); passwords
//     go through the Throttle (password.go) and auth.CheckPassword; tokens
//     through the Authenticator (with Lifetime revalidate, lifetime.go keeps
//     the token), then safeIdentity (errors.go).
//  6. The backend login (login_backend.go: backendLogin). A seat in the
//     logged-in pool (pools.go; refused: ErrTooManySessions), the dial with
//     the PROXY header and implicit TLS (backend.go: dialBackend,
//     proxyHeader), and the front's BackendDialog on the connection
//     (backend.go in each front's package), under the backend
//     login timeout. The dialog's refusals come back as *Refusal (the
//     user's own password), *BackendProblem (a configuration problem:
//     logged with its fix, kept for readiness, config_problem.go),
//     ErrMailboxRefused or ErrBackendUnavailable.
//  7. Classify (result.go): one log line and one Observer.Login per login
//     (loginDone), and the result the front's one reply mapper turns into
//     its protocol's answer (errors.go in each front's package). A refusal
//     whose client hung up after the error challenge is still the refusal,
//     and wraps ErrClientGone: the mapper counts it and says nothing.
//     Internal error text is logged, never sent to a client.
//  8. Conn.Relay (session.go, relay.go): the front writes the backend's
//     login reply (Session.Reply) and hands over; the relay copies bytes
//     both ways, read-ahead bytes first, knowing nothing of the protocol,
//     until either side closes, the client idles, the drain time of
//     Shutdown ends (server.go) or the token's lifetime does (Conn.Watch,
//     lifetime.go); the front's goodbye is written at a line boundary.
//     SMTP relays command by command instead (proxy/smtp: session.go,
//     data.go: Postfix's replies verbatim, message bytes as sent), with
//     Conn.Watch, Conn.OnDrainEnd and Conn.Reconnect.
//
// Backend probes (probe.go): each front registers a Prober (RegisterProbe)
// that connects the way its logins do; CheckBackend runs it at start-up and
// for check-config, and BackendProblem reports, and re-probes, a standing
// configuration problem for /readyz.
//
// References: RFC 9051 and RFC 3501 (IMAP), RFC 6409 (submission), RFC
// 4954 (SMTP AUTH), RFC 3207 (STARTTLS), RFC 1939, 2449 and 5034 (POP3,
// CAPA, SASL), RFC 2595 (STLS), RFC 5804 (ManageSieve), RFC 4422 (SASL),
// RFC 7628 (OAUTHBEARER), the PROXY protocol (HAProxy's
// proxy-protocol.txt).
package proxy
