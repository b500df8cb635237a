// Package apppass stores and verifies app passwords: random passwords a
// user creates on mailgate's page for a mail client that cannot do OAuth,
// each limited to some protocols and maybe to a lifetime, and revocable
// one by one. A login with one opens the backend session as the master
// user on behalf of its mailbox, like an OAuth login.
//
// Typical usage:
//
//	st, err := apppass.Open(ctx, "sqlite:///var/lib/mailgate/apppass.db", apppass.Options{
//		Policy: apppass.Policy{MaxPerUser: 10, MaxExpiry: 365 * 24 * time.Hour},
//		Keys:   keyring, // for provider links; see ParseKeyFile, NewKeyring
//	})
//	defer st.Close()
//	pw, rec, err := st.Create(ctx, "alice@example.org", "phone", []apppass.Protocol{apppass.IMAP, apppass.SMTP}, 0)
//	// show pw once; it is not stored
//	rec, err = st.Verify(ctx, user, password, apppass.IMAP, remoteAddr)
//	switch {
//	case errors.Is(err, apppass.ErrNotAppPassword): // try password passthrough, if on
//	case err != nil: // refused (auth.ErrInvalidCredentials) or store down (auth.ErrUnavailable)
//	}
//
// Throttling is the caller's: Verify costs one hash per attempt, so the
// caller's per-IP and per-user throttle bounds the hashing an attacker
// can cause.
//
// # Password format
//
//	mgp_<id>_<secret>     e.g. mgp_k5vqa2hxo3dpgmzt_3f7xq2mbwnyk4c6rj5hdtluapezso7gi
//
// 53 characters: the prefix "mgp_", a public lookup id of 80 random bits
// and a secret of 160 random bits (crypto/rand), both lower-case RFC 4648
// base32 without padding. Why:
//
//   - The id lets a login find its one row, so a login costs one hash
//     whatever the number of passwords (no trying every hash of the user).
//     80 bits make collisions negligible; the id is not secret (it names
//     the password in lists, logs and "revoke").
//   - 160 bits of secret are beyond any online or offline guessing, even
//     of a stolen hash; the slow hash is defence in depth.
//   - base32 has one letter case and no 0/O, 1/l/I: it survives being
//     read aloud or typed on a phone (any case is accepted). Nothing in
//     the password needs quoting in an IMAP atom, a SASL message, a URL
//     or a shell, and "_" (unlike "-") keeps the whole value one word for
//     double-click selection.
//   - The fixed prefix and shape let Verify recognise a non-app password
//     without touching the store (ErrNotAppPassword, so the caller can
//     fall back to password passthrough), and let secret scanners find
//     leaked app passwords.
//
// # Hashing
//
// Only an argon2id hash of the whole password (lower case) is stored, in
// the PHC string format, with its parameters, so that they can change
// later without invalidating stored hashes. Defaults (Argon2id's zero
// value): t=2 passes, m=19 MiB, p=1 lane, a 32-byte key, a 16-byte random
// salt per password: OWASP's argon2id minimum. On the 2-core reference
// machine one hash takes 27-35 ms (BenchmarkVerify: p50 28.5 ms, p99 52 ms;
// a whole Verify under 1 ms more), 35-50 ms when the machine is loaded;
// 50 concurrent logins take about 1.2 s. One lane, because a proxy runs
// many logins at once. At most Options.MaxConcurrentHashes (default
// GOMAXPROCS) hashes run at once, which bounds their memory (19 MiB each).
//
// Every well-formed password costs exactly one hash: a comparison with
// the stored hash, or, when the id is unknown or revoked (or the user
// name invalid), a fresh hash of the same cost, so that timing does not
// reveal which ids exist. The
// comparison is constant time. The scope (ErrProtocol) and a suspended
// provider link (ErrSuspended) are only revealed once the secret matched.
//
// # Databases
//
// Open takes a URL:
//
//	sqlite:///var/lib/mailgate/apppass.db   SQLite, the default: one file, embedded
//	sqlite:apppass.db                       relative to the working directory
//	sqlite::memory:                         in memory, for tests
//	postgres://user:pw@host/db?sslmode=verify-full   PostgreSQL, for several replicas
//
// SQLite is modernc.org/sqlite, a pure-Go translation (the binary stays
// static and CGO-free), in WAL mode (readers never wait for the writer)
// with synchronous=NORMAL, a busy timeout equal to OpTimeout and every
// transaction BEGIN IMMEDIATE (no lock upgrade, so no immediate "database
// is locked"). PostgreSQL is github.com/jackc/pgx/v5 through database/sql;
// transactions that count a user's passwords take an advisory lock on
// the user. Both use one SQL text ($N placeholders) and a pool of
// MaxConns connections. Any database failure is an error wrapping
// auth.ErrUnavailable: a temporary failure for the client, never a
// refusal.
//
// A login reads one row (joined with the user's provider link) and writes
// the last use only when the stored one is over a minute old, so that
// concurrent logins with one password do not queue on a write lock.
//
// # Schema
//
// Times are microseconds since 1970 UTC (BIGINT; NULL: never), identical
// in both dialects:
//
//	schema_migrations (version PK, applied_at)
//	app_passwords     (id PK, username, name, hash, protocols "imap,smtp",
//	                   created_at, expires_at, last_used_at, last_used_ip,
//	                   revoked_at)             index (username, created_at)
//	provider_links    (username PK, key_id, refresh_token (sealed), linked_at,
//	                   revalidated_at, suspended_at, suspend_reason)
//	web_sessions      (id_hash PK (SHA-256 of the session id), username, csrf,
//	                   created_at, expires_at)  index (username)
//	web_signins       (state_hash PK (SHA-256 of the state), verifier,
//	                   expires_at)              index (expires_at)
//
// Hashes and sealed tokens are BLOB in SQLite, BYTEA in PostgreSQL.
// Revoked rows keep no hash and stay until Purge, so that a login with a
// revoked password is logged as "revoked". Migrations are embedded SQL
// files, migrations/<dialect>/NNNN_name.sql, applied at Open in one
// transaction under a lock (replicas may start together); a database at a
// version above this code's is refused (ErrSchemaTooNew), never changed.
//
// # Provider links
//
// When the page creates an app password it also stores the user's OAuth
// refresh token (SetRefreshToken), sealed with AES-256-GCM under a 32-byte
// key from a file (ParseKeyFile; make one with "openssl rand -hex 32").
// Each row names its key by id (derived from the key), so keys can rotate:
// NewKeyring(newKey, oldKey) opens both, Rekey re-seals old rows, then the
// old key can go. The additional data binds a sealed token to its user.
// The revalidation loop takes DueForRevalidation users and, for each,
// claims its refresh (ClaimRevalidation, or ClaimRevalidationRetry, whose
// unreported claim lapses after a shorter retry), refreshes the claimed token at
// the provider, and reports with Revalidated (storing a rotated token) or,
// when the provider refuses, Refused: the user's app passwords then fail
// with ErrSuspended until the user signs in again (SetRefreshToken).
//
// The claim is one conditional UPDATE that moves the user's revalidation
// time to now, so that of several replicas sharing a database exactly one
// refreshes a given token: providers that rotate refresh tokens (Ory
// Hydra) take the reuse of an old one for theft and revoke the whole
// chain. A claim remembers the link's sign-in time (linked_at, which
// every SetRefreshToken moves forward): if the user signs in while the
// refresh is in flight, Revalidated and Refused fail with ErrNotDue and
// change nothing, so the new sign-in's token is neither overwritten by
// the old chain's nor suspended. MarkRevalidated and Suspend are the
// unconditional forms, for a single replica. Keys and tokens never
// appear in errors or logs.
//
// # Page sessions
//
// The self-service page signs users in with OAuth 2.0 (authorization code
// with PKCE) and keeps its sessions here, server-side, so that signing out
// really ends a session and replicas sharing PostgreSQL see the same
// sessions:
//
//	in, err := st.BeginSignIn(ctx, 10*time.Minute)
//	// in.State: in the authorization request and a cookie;
//	// S256(in.Verifier): the code_challenge
//	verifier, err := st.TakeSignIn(ctx, stateFromCallback) // once only
//	// exchange the code with verifier, then:
//	id, sess, err := st.CreateSession(ctx, user, 8*time.Hour) // id: the cookie
//	sess, err = st.Session(ctx, idFromCookie)                 // each request
//	ok := sess.ValidCSRF(formToken)                            // each form post
//	err = st.EndSession(ctx, idFromCookie)                     // sign-out
//
// Session ids, CSRF tokens, states and verifiers are 256 random bits in
// base64url without padding (43 characters). Only the SHA-256 of a
// session id or a state is stored, so a copy of the database opens no
// session; a value that is not a well-formed token is refused
// (ErrNoSession) without a database query. TakeSignIn deletes the sign-in
// in the same statement that reads it, so a state works once. Expired
// sessions and sign-ins are refused at once and deleted by Purge (and,
// cheaply, by CreateSession for the user and BeginSignIn).
package apppass
