// Package testenv starts real mail and identity daemons for integration tests:
// a docker-mailserver-like Dovecot and Postfix of one of two generations, and
// an Ory Hydra v2.3.0 OpenID provider (a binary built by
// scripts/install-test-deps.sh).
//
// Every instance gets its own temporary directory (configuration, logs, queue,
// Maildirs) and free loopback ports picked at run time, so several test
// binaries can run at once. Nothing listens on anything but a loopback address.
//
// # Backend generations
//
// MAILGATE_BACKEND ([BackendEnv]) selects the Dovecot/Postfix generation for
// the whole test binary; tests do not change to run against either:
//
//   - deb12 (default): Dovecot 2.3 and Postfix 3.7, Debian 12's packages on
//     the host, listening on 127.0.0.1 (docker-mailserver up to v15).
//   - deb13: Dovecot 2.4 and Postfix 3.10 from Debian 13's packages, in a root
//     that scripts/install-test-deps.sh builds once with mmdebstrap into
//     [Deb13Root] (when MAILGATE_BACKENDS names deb13), started there with
//     chroot(2) (no /proc or /dev mounts needed), configured like DMS's
//     Debian 13 image in Dovecot 2.4 syntax (ssl = required, named passdb
//     blocks, the master passdb). They listen on 127.0.24.1, so a client on
//     127.0.0.1 is a trusted network but not "localhost" for Dovecot 2.4,
//     as a proxy in another container is: plaintext logins there get
//     NO [PRIVACYREQUIRED] (STARTTLS, implicit TLS or a PROXY v2 header with
//     the SSL TLV work).
//
// [Generation] ("2.3"/"2.4") and [PostfixGeneration] let a test branch where
// the generations legitimately differ; [Dovecot.LoginLogPrefix] is the one
// log format difference the harness papers over. Every path a test reads
// (Dir, LogPath, MaildirFor, CAFile, ...) is a host path, under the root for
// deb13. ExtraConfig and ExtraMain are verbatim, so in the generation's syntax.
//
// # POP3, ManageSieve and Sieve
//
// Dovecot also serves POP3 ([Dovecot.POP3Addr] with STLS,
// [Dovecot.POP3TLSAddr] implicit TLS) and ManageSieve ([Dovecot.SieveAddr],
// STARTTLS), each with a PROXY-protocol listener, as docker-mailserver does
// with ENABLE_POP3=1 and ENABLE_MANAGESIEVE=1; LMTP runs the Sieve plugin
// with each user's scripts in the mail home (~/sieve, active link
// ~/.dovecot.sieve). The master user, trusted networks and TLS rules are
// IMAP's. From login_trusted_networks both accept XCLIENT ADDR= PORT=
// SESSION= before authentication (POP3 greets with "+OK [XCLIENT]",
// ManageSieve lists "XCLIENT"), and the login line then carries the
// forwarded rip=. On 2.4.1 a SASL attempt refused with "SSL required"
// breaks the next one on the same connection ("plain: invalid input",
// counted as a failure): reconnect instead of retrying after STARTTLS.
//
// # Availability
//
// Dovecot and Postfix need root (their master processes drop privileges
// themselves), the Debian packages and the system user vmail; Hydra needs only
// its binary (see [HydraBinary]). [Require] and every Start function skip the
// test when something is missing, or fail it when MAILGATE_INTEGRATION=1 is
// set (as scripts/test.sh and CI do), so a missing dependency can never turn a
// CI run green silently.
//
// # Per-test instances
//
//	func TestLogin(t *testing.T) {
//		dc := testenv.StartDovecot(t, testenv.DovecotOptions{})
//		pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
//		idp := testenv.StartHydra(t, testenv.HydraOptions{})
//		tok := idp.MintToken(t, "alice@example.test", testenv.TokenOptions{})
//		...
//	}
//
// Start* register a t.Cleanup that stops the daemons and waits for every one
// of their processes to exit, and that prints the tail of the daemon's log when
// the test failed. Dovecot and Postfix start in about 0.1 s each, Hydra in
// about 1 s (it generates its signing keys); stopping takes milliseconds.
// Helpers that fail a test (WaitLog, WaitMessage, AppendDirect, MintToken, ...)
// also print the relevant log's tail.
//
// # One instance per test binary
//
// A package whose tests can share daemons starts them once:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := testenv.Shared(t) // Dovecot + Postfix + Hydra, started on first use
//		...
//	}
//
// [Main] runs the tests, then stops whatever [Shared], [SharedDovecot],
// [SharedPostfix] or [SharedHydra] started, and exits. The Shared functions
// fail the test if TestMain does not call Main, because the daemons would
// otherwise outlive the test binary. Shared instances accumulate log lines and
// mail from all tests: use unique markers (message ids, subjects, client IPs)
// and [Log.Mark] with [Log.WaitSince] to look only at what a test caused.
//
// # Without testing.TB
//
// [NewDovecot], [NewPostfix] and [NewHydra] start instances with a context that
// bounds only the start-up; the caller must call Stop.
//
// # More real components
//
//   - [StartRedis]: Debian's redis-server, no persistence, optionally with an
//     ACL user and TLS; Stop and Start keep its port (Redis going away).
//   - [StartHAProxy]: Debian's HAProxy in TCP mode in front of test servers,
//     with send-proxy-v2, HTTP health checks and a runtime API for states.
//   - [StartPostgres]: Debian's PostgreSQL in a temporary data directory, run
//     as the postgres user when the tests run as root.
//   - [Hydra.StartLoginApp]: Hydra's login and consent pages, accepting for
//     one address, for clients that drive a browser flow themselves; and
//     [Hydra.RegisterPublicClient] for public PKCE clients.
//   - [NewThunderbird]: a fresh Thunderbird profile (account prefs, add-ons,
//     a test CA trusted through certutil), started under its own Xvfb.
//   - [NewBrowser]: Debian's Chromium, headless, for chromedp (JS on or off).
//
// # Leaks
//
// Each daemon runs in a session of its own, beside a small watchdog shell
// process that stops the daemon's whole process group and removes its
// directory (in os.TempDir, mailgate-*) when the test binary dies, even by
// SIGKILL or go test's -timeout. MAILGATE_TESTENV_KEEP=1 keeps the directories
// of stopped instances, for debugging.
//
// # Pitfalls worth knowing when writing tests
//
//   - Dovecot delays failed authentications per remote IP (2, 4, 8, up to 15 s)
//     and Postfix's Dovecot SASL client times out after 10 s: a few failed logins
//     from 127.0.0.1 make later correct logins through Postfix fail with 454.
//     Send deliberate failures from another loopback address (127.0.0.2 ...) or
//     use a fresh instance.
//   - login_trusted_networks is 127.0.0.1/32 by default: connections from there
//     may send IMAP ID x-originating-ip and (2.3 only) count as secured;
//     connect from 127.0.0.2 to act as an untrusted client.
//   - The master user may by default only log in from 127.0.0.1
//     (allow_real_nets); see [DovecotOptions].
//   - Hydra accepts a JWT while now (in whole seconds) <= exp; [TokenOptions]
//     Expired waits until Hydra refuses the token.
//   - Hydra's introspection endpoint is on the admin port and ignores client
//     credentials.
package testenv
