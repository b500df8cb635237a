package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// keyDocs says what each key is for; the README's configuration table is
// generated from it (see Reference) and a test keeps the two in step.
var keyDocs = map[string]string{
	"log.level":                             "`debug`, `info`, `warn` or `error`",
	"log.format":                            "`text` or `json`",
	"tls.cert_file":                         "PEM certificate chain shown to clients (the default certificate)",
	"tls.key_file":                          "PEM private key of `tls.cert_file`",
	"tls.certificates":                      "more `{cert_file, key_file}` pairs, chosen by SNI; all files are re-read when they change and on SIGHUP",
	"tls.min_version":                       "`1.2` or `1.3`",
	"master.user":                           "Dovecot master user mailgate logs in as (DMS: `setup dovecot-master add`)",
	"master.password":                       "its password (prefer `master.password_file`)",
	"master.password_file":                  "file holding the master password",
	"master.check_mailbox":                  "an existing mailbox (e.g. `postmaster@example.com`) the start-up backend check logs in as, on its behalf, so that wrong master credentials show in the log and `/dependencies` before any user logs in; empty: the check does not log in",
	"imap.listen_tls":                       "IMAPS listener (implicit TLS); empty disables",
	"imap.listen_starttls":                  "IMAP listener requiring STARTTLS before authentication; empty disables",
	"imap.backend.address":                  "Dovecot's IMAP `host:port`",
	"imap.backend.tls":                      "`none`, `starttls` or `implicit`",
	"imap.backend.ca_file":                  "CA bundle for Dovecot's certificate (DMS is often self-signed)",
	"imap.backend.insecure_skip_verify":     "do not verify Dovecot's certificate (avoid)",
	"imap.backend.server_name":              "name checked in Dovecot's certificate (default: the host of `address`)",
	"imap.backend.client_ip":                "how Dovecot learns the client's address: `none`, `id` (IMAP ID, needs `login_trusted_networks`) or `proxy` (PROXY v2, needs `haproxy_trusted_networks`)",
	"smtp.listen_tls":                       "submissions listener (implicit TLS); empty disables",
	"smtp.listen_starttls":                  "submission listener requiring STARTTLS before AUTH; empty disables",
	"smtp.hostname":                         "name in the SMTP greeting and EHLO reply",
	"smtp.max_message_bytes":                "message size limit; 0 takes SIZE from the backend's EHLO",
	"smtp.enforce_sender":                   "MAIL FROM must be the verified address or one of its `sender_aliases`",
	"smtp.sender_aliases":                   "map of verified address to the extra senders it may use (`*@domain` allowed)",
	"smtp.backend.address":                  "Postfix submission `host:port`",
	"smtp.backend.tls":                      "`none`, `starttls` or `implicit`",
	"smtp.backend.ca_file":                  "CA bundle for Postfix's certificate",
	"smtp.backend.insecure_skip_verify":     "do not verify Postfix's certificate (avoid)",
	"smtp.backend.server_name":              "name checked in Postfix's certificate (default: the host of `address`)",
	"smtp.backend.client_ip":                "how Postfix learns the client's address: `none`, `xclient` (XCLIENT ADDR=, needs `smtpd_authorized_xclient_hosts`) or `proxy` (a PROXY v2 header, for a submission listener with `smtpd_upstream_proxy_protocol = haproxy`, which then takes only connections that send one)",
	"smtp.backend.login":                    "`master` (AUTH PLAIN as the master user) or `xclient` (XCLIENT LOGIN=)",
	"oauth2.mode":                           "`userinfo`, `introspection`, `jwt` or `auto`",
	"oauth2.userinfo_url":                   "OIDC userinfo endpoint (DMS's `OAUTH2_INTROSPECTION_URL`)",
	"oauth2.introspection_url":              "RFC 7662 introspection endpoint",
	"oauth2.introspection_auth":             "`client_secret_basic` or `client_secret_post`",
	"oauth2.client_id":                      "client id for introspection",
	"oauth2.client_secret":                  "its secret (prefer `client_secret_file`)",
	"oauth2.client_secret_file":             "file holding the client secret",
	"oauth2.issuer":                         "OIDC issuer: discovery and JWKS for `jwt`/`auto`, and the `openid-configuration` in RFC 7628 errors",
	"oauth2.audiences":                      "accepted `aud`/`azp` values (`jwt`, `introspection`, `auto`; not checkable in `userinfo` mode, where setting it is a warning)",
	"oauth2.required_scopes":                "scopes every token must carry",
	"oauth2.username_claim":                 "claim that names the mailbox: one plain address, taken exactly (only ASCII case folded)",
	"oauth2.require_email_verified":         "refuse tokens whose `email_verified` is not true (default `false` before; see Changes)",
	"oauth2.allowed_domains":                "mailbox domains accepted; empty = any",
	"oauth2.cache_ttl":                      "how long a validated token is trusted without asking again (never beyond its `exp`)",
	"oauth2.negative_cache_ttl":             "how long a refused token is refused without asking again",
	"oauth2.timeout":                        "provider request timeout",
	"pop3.listen_tls":                       "POP3S listener (implicit TLS); POP3 is served only when `pop3.backend.address` is set (DMS: `ENABLE_POP3=1`); empty disables",
	"pop3.listen_starttls":                  "POP3 listener requiring STLS before authentication; empty disables",
	"pop3.backend.address":                  "Dovecot's POP3 `host:port`; empty: no POP3",
	"pop3.backend.tls":                      "`none`, `starttls` (STLS) or `implicit`",
	"pop3.backend.ca_file":                  "CA bundle for Dovecot's certificate",
	"pop3.backend.insecure_skip_verify":     "do not verify Dovecot's certificate (avoid)",
	"pop3.backend.server_name":              "name checked in Dovecot's certificate (default: the host of `address`)",
	"pop3.backend.client_ip":                "how Dovecot learns the client's address: `none`, `xclient` (needs `login_trusted_networks`) or `proxy` (PROXY v2, needs `haproxy_trusted_networks`)",
	"sieve.listen":                          "ManageSieve listener (RFC 5804, STARTTLS required before authentication); served only when `sieve.backend.address` is set (DMS: `ENABLE_MANAGESIEVE=1`); empty disables",
	"sieve.backend.address":                 "Dovecot's ManageSieve `host:port`; empty: no ManageSieve",
	"sieve.backend.tls":                     "`none`, `starttls` or `implicit`",
	"sieve.backend.ca_file":                 "CA bundle for Dovecot's certificate",
	"sieve.backend.insecure_skip_verify":    "do not verify Dovecot's certificate (avoid)",
	"sieve.backend.server_name":             "name checked in Dovecot's certificate (default: the host of `address`)",
	"sieve.backend.client_ip":               "how Dovecot learns the client's address: `none`, `xclient` (needs `login_trusted_networks`) or `proxy` (PROXY v2, needs `haproxy_trusted_networks`)",
	"oauth2.ca_file":                        "CA bundle for the provider's certificate",
	"oauth2.session_lifetime":               "`none`, `token` (an IMAP session gets `* BYE` when its token's `exp` passes, an SMTP session `421` at its next command) or `revalidate` (that, and the token is asked about again every `revalidate_every`); password logins are not affected",
	"oauth2.revalidate_every":               "how often `revalidate` asks the provider again (bypassing the cache)",
	"oauth2.xoauth2_error_status":           "`status` of the XOAUTH2 error challenge after a refused token: `400` (what Gmail sends; K-9 Mail / Thunderbird for Android then fetch a fresh token and retry) or `401` (taken by them as a permanent failure); OAUTHBEARER always sends `invalid_token`",
	"auth.password_passthrough":             "also accept the user's own password (IMAP `LOGIN`, `AUTHENTICATE PLAIN`/`LOGIN`, SMTP `AUTH PLAIN`/`LOGIN`) after TLS and pass it to the backend as the user's login; throttled like tokens",
	"auth.password_passthrough_protocols":   "where `password_passthrough` applies: any of `imap`, `smtp`, `pop3`, `sieve`",
	"app_passwords.enabled":                 "accept app passwords (made by the user for a mail app that cannot do OAuth) with LOGIN/PLAIN after TLS on `app_passwords.protocols`, even with `auth.password_passthrough` off; the backend session opens as the master user on behalf of the mailbox; throttled like passwords",
	"app_passwords.database":                "the app-password store: `sqlite:///path/file.db` (one file; one replica) or `postgres://user@host/db?sslmode=verify-full` (several replicas); it holds only argon2id hashes",
	"app_passwords.protocols":               "what app passwords may be made for and used with: any of `imap`, `smtp`, `pop3`, `sieve`; removing one disables it for existing passwords too",
	"app_passwords.max_per_user":            "usable app passwords a user may have; 0 = no limit",
	"app_passwords.default_expiry":          "lifetime of an app password made without one; 0 = `max_expiry` (none when that is 0 too)",
	"app_passwords.max_expiry":              "longest lifetime an app password may have; 0 = no bound",
	"app_passwords.listen":                  "the self-service page's listener, where users sign in at the provider and make, list and revoke their app passwords; meant for the internet like `discovery.listen`; empty: no page (the operator command still works)",
	"app_passwords.tls":                     "serve the page over HTTPS with the `tls.*` certificates; `false`: plain HTTP for a reverse proxy that terminates TLS",
	"app_passwords.page_url":                "the page's public URL as browsers see it (https; http only on loopback); the provider must accept it + `callback` as a redirect URI",
	"app_passwords.oidc_client_id":          "the confidential OAuth client the page signs in with (authorization code + PKCE, scopes `openid offline_access` + `oauth2.required_scopes`); accepted as an audience",
	"app_passwords.oidc_client_secret":      "that client's secret; prefer `oidc_client_secret_file`",
	"app_passwords.oidc_client_secret_file": "file holding that client's secret",
	"app_passwords.recheck_interval":        "how often each open session of an app password checks that it is still valid (one read, no hash); a revoked, expired or suspended one ends the session (IMAP/ManageSieve `BYE`, SMTP `421 4.7.0` at the next command, POP3 closed); 0: sessions are not checked",
	"app_passwords.revalidate_interval":     "how often each user's refresh token (kept since the user's last sign-in on the page) is refreshed at the provider; when the provider refuses (user disabled, consent withdrawn) the user's app passwords stop until the user signs in again",
	"app_passwords.key_file":                "file holding the 32-byte key (`openssl rand -hex 32`) that seals the users' OAuth refresh tokens; empty: none stored",
	"limits.max_connections":                "logged-in sessions in total, all listeners; 0 = no limit; lowered at start when the open-files limit cannot hold it (logged)",
	"limits.max_connections_per_ip":         "logged-in sessions per client network (see `ipv4_prefix`); 0 = no limit",
	"limits.max_prelogin_connections":       "connections not logged in yet, all listeners; when full, the oldest one of the network holding the most is closed; 0 = no limit",
	"limits.max_prelogin_per_ip":            "connections not logged in yet per client network; a new one over it is refused; 0 = no limit",
	"limits.ipv4_prefix":                    "IPv4 addresses are grouped into client networks of this prefix length for the per-network caps and rate (8 to 32)",
	"limits.ipv6_prefix":                    "the same for IPv6 (16 to 128; e.g. 48 or 64)",
	"limits.connection_rate_per_ip":         "new connections per second per client network (token bucket); 0 = no rate limit",
	"limits.connection_burst_per_ip":        "new connections per client network allowed at once above that rate",
	"limits.exempt_networks":                "client networks (CIDR, e.g. the webmail server's `192.0.2.10/32`) that no per-network cap or rate applies to; the totals do",
	"limits.auth_failures_per_ip":           "failed logins per client network (see `ipv4_prefix`) per minute before logins slow down and then stop",
	"limits.preauth_timeout":                "time a client has to authenticate",
	"limits.idle_timeout":                   "IMAP session ends after this long without a byte from the client (IDLE needs > 29m)",
	"limits.handshake_timeout":              "time for one TLS handshake (implicit TLS or STARTTLS)",
	"limits.command_timeout":                "time to send one command before login, and one SMTP command after",
	"limits.dummy_reply_timeout":            "time a client has to answer the RFC 7628 error challenge after a refused token before it gets the failure reply (s-nail and isync/mbsync never answer it); more than 0 and less than `command_timeout`",
	"limits.data_timeout":                   "an SMTP DATA/BDAT upload ends (and nothing is delivered) after this long without a byte",
	"limits.max_line_bytes":                 "longest command line or SASL response accepted",
	"limits.max_literal_bytes":              "largest IMAP literal accepted before login",
	"limits.max_prelogin_bytes":             "bytes a client can make mailgate hold before login: one command with its literals and SASL responses, plus IMAP `ID` fields (at least 4096 and `max_line_bytes`)",
	"limits.max_auth_attempts":              "failed logins per connection before it is closed",
	"http.listen":                           "operations endpoint (`/metrics`, `/healthz`, `/readyz`, `/dependencies`); keep it private; empty disables",
	"http.readyz_dependencies":              "also answer 503 on `/readyz` when a backend or the provider is unreachable or a backend refuses mailgate's login (off: that shows in `/dependencies`, `mailgate_dependency_up` and `/readyz`'s body only, since a load balancer would take every replica out at once)",
	"clients":                               "OAuth clients of the provider whose tokens are accepted: a list of `{name, client_id, public, scopes, issuer}`; each `client_id` is accepted as the token's `aud`, `azp` or `client_id` (with `oauth2.audiences`), and the public one named by `discovery.client` is published to mail apps (`scopes` default to `openid email offline_access`; `issuer` defaults to `oauth2.issuer`: set it where the provider gives each application its own, as Authentik does)",
	"discovery.listen":                      "public onboarding listener (Thunderbird autoconfig, Outlook Autodiscover, Apple profile, PACC); unlike `http.listen` it is meant for the internet; empty disables",
	"discovery.tls":                         "serve HTTPS with the `tls.*` certificates; `false`: plain HTTP for a reverse proxy that terminates TLS",
	"discovery.domains":                     "mail domains published; empty: `oauth2.allowed_domains`",
	"discovery.hostname":                    "host name mail apps connect to; empty: `smtp.hostname`, else the machine's host name",
	"discovery.display_name":                "provider name mail apps show; empty: the domain",
	"discovery.client":                      "name of the `clients` entry published as the OAuth client (public, PKCE); empty: the public client named `thunderbird`, else the only public one",
	"cluster.redis.address":                 "Redis or Valkey `host:port` shared by the replicas (failure throttle, token cache); several, comma-separated: the seed nodes of a Redis Cluster; empty: each replica keeps its own",
	"cluster.redis.username":                "Redis ACL user (empty: the default user)",
	"cluster.redis.password":                "its password (prefer `password_file`)",
	"cluster.redis.password_file":           "file holding the Redis password",
	"cluster.redis.tls":                     "connect to Redis with TLS",
	"cluster.redis.ca_file":                 "CA bundle for Redis's certificate",
	"cluster.redis.server_name":             "name checked in Redis's certificate (default: the host of `address`)",
	"cluster.redis.key_prefix":              "prefix of every key mailgate writes (keys hold a token's SHA-256, never the token)",
	"cluster.redis.timeout":                 "longest a login waits on one Redis operation before using the replica's own state",
	"cluster.redis.when_down":               "while Redis is unreachable: `local` (each replica throttles failed logins on its own) or `refuse` (logins get a temporary failure); the token cache always falls back to the replica's own",
	"cluster.drain_delay":                   "after SIGTERM, `/readyz` answers 503 this long before the listeners close, so the load balancer stops sending new connections first",
	"proxy_protocol.trusted_networks":       "load balancers (CIDR) that must send a PROXY v1/v2 header; empty = PROXY protocol off",
}

// Reference returns the Markdown table of every key: its environment
// variable, its default and what it does.
func Reference() string {
	def := Default()
	var sb strings.Builder
	sb.WriteString("| key | environment variable | default | meaning |\n|---|---|---|---|\n")
	for _, l := range leaves() {
		if notOffered[l.key] {
			continue
		}
		fmt.Fprintf(&sb, "| `%s` | `%s` | %s | %s |\n", l.key, l.env(), defaultText(l.field(&def)), keyDocs[l.key])
	}
	return sb.String()
}

func defaultText(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return "`" + formatDuration(d) + "`"
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return "(empty)"
		}
		return "`" + v.String() + "`"
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return "(none)"
		}
		if ss, ok := v.Interface().([]string); ok {
			return "`" + strings.Join(ss, ",") + "`" // as in the environment variable
		}
	}
	return fmt.Sprintf("`%v`", v.Interface())
}

// formatDuration writes 5m rather than 5m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
