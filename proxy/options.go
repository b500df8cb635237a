package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Authenticator verifies what a client presented. auth.TokenAuthenticator
// and friends implement it; tests use AuthenticatorFunc.
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, c auth.Credentials) (auth.Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, c auth.Credentials) (auth.Identity, error) {
	return f(ctx, c)
}

var _ Authenticator = AuthenticatorFunc(nil)

// TLSMode is how mailgate talks TLS to a backend.
type TLSMode string

const (
	TLSNone     TLSMode = "none"     // plain TCP (loopback or a trusted network)
	TLSStartTLS TLSMode = "starttls" // plain, then STARTTLS before anything else
	TLSImplicit TLSMode = "implicit" // TLS from the first byte
)

// Backend says how to reach Dovecot (IMAP) or Postfix (submission).
type Backend struct {
	// Address is host:port.
	Address string
	// TLS is the transport security towards the backend; "" means none.
	TLS TLSMode
	// TLSConfig verifies the backend's certificate (RootCAs, ServerName,
	// InsecureSkipVerify). Nil means the system roots and the host of Address.
	TLSConfig *tls.Config
	// ClientIP is how the client's address is passed on: IMAP "none" | "id";
	// SMTP "none" | "xclient"; both "proxy" (a PROXY v2 header). "" means none.
	ClientIP string
	// Login is the SMTP backend login: "master" (AUTH PLAIN authzid=user,
	// authcid=master; the default) or "xclient" (XCLIENT LOGIN=user).
	Login string
}

// Master is the Dovecot master user mailgate logs in as.
type Master struct {
	User     string
	Password string
	// CheckMailbox is an existing mailbox the start-up check logs in as (on
	// its behalf), so that wrong master credentials are reported before any
	// user logs in (see CheckBackend). Empty: the check does not log in.
	CheckMailbox string
}

// Limits bound every phase of a connection. Zero fields take the defaults
// documented on each field.
type Limits struct {
	// MaxLine caps one command line (and one SASL response line). Default 64 KiB:
	// a JWT bearer token base64-encoded inside XOAUTH2 can take several KiB.
	MaxLine int
	// MaxLiteral caps an IMAP literal before authentication. Default 64 KiB.
	MaxLiteral int
	// HandshakeTimeout bounds a TLS handshake (implicit or STARTTLS). Default 15 s.
	HandshakeTimeout time.Duration
	// CommandTimeout bounds reading one pre-auth command. Default 30 s.
	CommandTimeout time.Duration
	// DummyReplyWait bounds the wait for the client's dummy reply to the
	// RFC 7628 error challenge after a refused token: then the failure
	// reply is sent. Default 5 s; keep it below CommandTimeout. Some clients
	// never answer the challenge (s-nail, isync/mbsync with the XOAUTH2
	// plugin, PHP's Net_Sieve) and would otherwise hang until then.
	DummyReplyWait time.Duration
	// PreauthTimeout bounds the whole conversation before the relay starts. Default 60 s.
	PreauthTimeout time.Duration
	// WriteTimeout bounds one write to the client before the relay. Default 30 s.
	WriteTimeout time.Duration
	// IdleTimeout ends a relayed IMAP session after this long without a byte
	// from the client. Default 31 min (IDLE clients re-issue every 29 min).
	IdleTimeout time.Duration
	// DialTimeout bounds connecting and logging in to a backend. Default 10 s.
	DialTimeout time.Duration
	// MaxAuthFailures per connection before it is closed. Default 3.
	MaxAuthFailures int
	// MaxErrors is the number of protocol errors before the connection is closed. Default 3.
	MaxErrors int
	// MaxConnections caps logged-in (relayed) sessions, all listeners.
	// Default 10000; negative: no cap.
	MaxConnections int
	// MaxConnectionsPerIP caps logged-in sessions per client network (see
	// IPv4Prefix). Default 50; negative: no cap.
	MaxConnectionsPerIP int
	// MaxPrelogin caps connections that have not logged in yet, all
	// listeners. When it is reached, the oldest pre-login connection of the
	// client network holding the most is closed to make room. Default 1000;
	// negative: no cap.
	MaxPrelogin int
	// MaxPreloginPerIP caps pre-login connections per client network; a new
	// connection over it is refused. Default 20; negative: no cap.
	MaxPreloginPerIP int
	// IPv4Prefix and IPv6Prefix group client addresses into the networks that
	// the per-network caps and the connection rate count. Default 32 and 56.
	IPv4Prefix, IPv6Prefix int
	// ConnRate is the sustained rate of new connections per client network
	// (per second) and ConnBurst the burst above it. Default 20/s and 100;
	// a negative ConnRate: no rate limit.
	ConnRate  float64
	ConnBurst int
	// ExemptNetworks are client networks (a webmail server, a monitoring
	// probe) that no per-network cap or rate applies to. The totals do.
	ExemptNetworks []netip.Prefix
	// MaxPreloginBytes is the budget of bytes a client can make mailgate hold
	// before login: one command with its literals and SASL responses, plus
	// what the connection keeps (IMAP ID fields). Default 64 KiB.
	MaxPreloginBytes int
}

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&l.MaxLine, 64<<10)
	defInt(&l.MaxLiteral, 64<<10)
	def(&l.HandshakeTimeout, 15*time.Second)
	def(&l.CommandTimeout, 30*time.Second)
	def(&l.DummyReplyWait, 5*time.Second)
	def(&l.PreauthTimeout, 60*time.Second)
	def(&l.WriteTimeout, 30*time.Second)
	def(&l.IdleTimeout, 31*time.Minute)
	def(&l.DialTimeout, 10*time.Second)
	defInt(&l.MaxAuthFailures, 3)
	defInt(&l.MaxErrors, 3)
	if l.MaxConnections == 0 {
		l.MaxConnections = 10000
	}
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = 50
	}
	if l.MaxPrelogin == 0 {
		l.MaxPrelogin = 1000
	}
	if l.MaxPreloginPerIP == 0 {
		l.MaxPreloginPerIP = 20
	}
	defInt(&l.IPv4Prefix, 32)
	defInt(&l.IPv6Prefix, 56)
	l.IPv4Prefix, l.IPv6Prefix = min(l.IPv4Prefix, 32), min(l.IPv6Prefix, 128)
	if l.ConnRate == 0 {
		l.ConnRate = 20
	}
	defInt(&l.ConnBurst, 100)
	defInt(&l.MaxPreloginBytes, 64<<10)
	return l
}

// Options configure a Server. Authenticator and TLSConfig are required.
type Options struct {
	// Authenticator validates the credentials a client presents.
	Authenticator Authenticator
	// TLSConfig is what clients see (certificates, usually via GetCertificate
	// so that reloads reach new handshakes). Required.
	TLSConfig *tls.Config
	// Challenge goes into the RFC 7628 error challenge after a refused
	// token (and sets XOAUTH2's error status; see auth.ChallengeOptions).
	Challenge auth.ChallengeOptions
	// Master is the Dovecot master user for backend logins.
	Master Master
	// Limits bound each phase; zero fields take defaults.
	Limits Limits
	// ProxyProtocolFrom lists the networks (CIDR) that must send a PROXY
	// protocol v1/v2 header (a load balancer); the header's source address is
	// then the client's. Connections from elsewhere are taken as they are.
	// Empty: PROXY protocol off.
	ProxyProtocolFrom []string
	// Passwords configures password passthrough (off unless a protocol
	// flag is set).
	Passwords PasswordOptions
	// AppPasswords configures app passwords (off unless Verifier is set and
	// a protocol flag is set).
	AppPasswords AppPasswordOptions
	// Lifetime bounds sessions authenticated by a token (the zero value:
	// not bounded).
	Lifetime LifetimeOptions
	// Observer receives events for metrics. Nil means NopObserver.
	Observer Observer
	// Logger receives one line per connection event. Nil means slog.Default().
	Logger *slog.Logger
}

// PasswordOptions configure password passthrough: a client that cannot do
// OAuth logs in with its own user name and password, which mailgate passes
// to the backend as they are (no master user), after TLS only. The backend's
// verdict is the client's. Passwords are never logged, cached or kept after
// the backend login.
type PasswordOptions struct {
	// IMAP accepts LOGIN and AUTHENTICATE PLAIN / LOGIN (and advertises
	// AUTH=PLAIN AUTH=LOGIN without LOGINDISABLED) after TLS.
	IMAP bool
	// SMTP accepts AUTH PLAIN / LOGIN (and advertises them) after TLS.
	SMTP bool
	// POP3 accepts USER/PASS and AUTH PLAIN / LOGIN after TLS.
	POP3 bool
	// Sieve accepts AUTHENTICATE "PLAIN" / "LOGIN" after TLS (ManageSieve).
	Sieve bool
	// Throttle is asked before every password attempt reaches the backend
	// (it may wait or refuse) and told the backend's verdict, so that a
	// password guesser is slowed down by mailgate, per client address and
	// per user, before the backend's own penalty hits mailgate's address.
	// *auth.Throttle implements it; share the token logins' one. Nil: no
	// throttling.
	Throttle Throttle
}

// allowed reports whether passthrough is on for proto.
func (o PasswordOptions) allowed(proto string) bool {
	return protoOn(proto, o.IMAP, o.SMTP, o.POP3, o.Sieve)
}

// AppPasswordOptions configure app passwords: a client that cannot do
// OAuth logs in with LOGIN/PLAIN (after TLS only) and an app password the
// user made for it; once Verifier accepts it, the backend session opens as
// the master user on behalf of the mailbox, as after a token. A value that
// is not an app password (auth.ErrNotAppPassword) goes on to password
// passthrough when that is on for the protocol, else it is refused. The
// attempt is throttled as a password (PasswordOptions.Throttle): one
// Begin per attempt, whichever way it goes.
type AppPasswordOptions struct {
	// Verifier checks app passwords. Nil: app passwords are off.
	Verifier auth.AppPasswords
	// IMAP, SMTP, POP3 and Sieve accept app passwords on that protocol
	// (and offer LOGIN/PLAIN as PasswordOptions does).
	IMAP, SMTP, POP3, Sieve bool
	// Checker, every RecheckEvery, asks whether the app password of each
	// session it opened still may; when not (revoked, expired, suspended)
	// the session ends as a token session whose token was found invalid
	// (IMAP and ManageSieve BYE, SMTP 421 at the next command, POP3
	// closed). Nil or RecheckEvery <= 0: sessions last as long as the
	// client and the backend want.
	Checker      AppPasswordChecker
	RecheckEvery time.Duration
}

// AppPasswordChecker says whether the app password id, which opened a
// session of user over proto, still may: nil, or an error wrapping
// auth.ErrInvalidCredentials (the session ends); any other error (the
// store failed) keeps the session. It costs no hash.
type AppPasswordChecker interface {
	StillValid(ctx context.Context, id, user, proto string) error
}

// allowed reports whether app passwords are on for proto.
func (o AppPasswordOptions) allowed(proto string) bool {
	return o.Verifier != nil && protoOn(proto, o.IMAP, o.SMTP, o.POP3, o.Sieve)
}

func protoOn(proto string, imap, smtp, pop3, sieve bool) bool {
	switch proto {
	case "imap":
		return imap
	case "smtp":
		return smtp
	case "pop3":
		return pop3
	case "sieve":
		return sieve
	}
	return false
}

// Throttle slows down password guessing. *auth.Throttle implements it (see
// there); ip is "ip:port" or an address, user the claimed user name.
type Throttle interface {
	// Begin is called before a password attempt reaches the backend. It
	// waits for user's turn (one attempt per user at a time) and for the
	// delay ip and user have earned, and returns done, to be called once
	// with the backend's verdict. An error wrapping auth.ErrThrottled (or
	// auth.ErrBlocked) means the attempt must not go on.
	Begin(ctx context.Context, ip, user string) (done func(auth.Outcome), err error)
	// Failure records a refused attempt that never reached the backend (a
	// malformed one): it costs the address only when user is "".
	Failure(ip, user string)
}

var _ Throttle = (*auth.Throttle)(nil)

// Values of LifetimeOptions.Mode.
const (
	LifetimeNone       = "none"       // sessions last as long as the client and the backend want
	LifetimeToken      = "token"      // a session ends when its token expires
	LifetimeRevalidate = "revalidate" // as token, and the token is checked again every RevalidateEvery
)

// LifetimeOptions bound sessions authenticated by a token (sessions
// authenticated by password are never affected). When a session's token has
// expired or been found invalid, an IMAP session gets "* BYE [EXPIRED]" (at
// once, at a line boundary of the relayed stream, or it is just closed) and
// an SMTP session gets "421 4.7.0" at its next command outside a mail
// transaction; the client then logs in again with a fresh token.
type LifetimeOptions struct {
	// Mode is LifetimeNone ("" means the same), LifetimeToken or
	// LifetimeRevalidate. A token whose expiry is unknown (auth.Identity.
	// Expiry is zero) is not bounded by LifetimeToken.
	Mode string
	// RevalidateEvery is how often LifetimeRevalidate checks a session's
	// token with the provider. Default 5 min.
	RevalidateEvery time.Duration
	// Revalidator checks a token again for LifetimeRevalidate, bypassing
	// any cache. Required with LifetimeRevalidate. With it the session's
	// token is kept in memory for the whole session (never logged).
	Revalidator Revalidator
}

// Revalidator checks again whether the token that authenticated a session is
// still good. c carries the token, the session's user (the mailbox: the
// token must still name it), the mechanism and the client's address. An
// error wrapping auth.ErrInvalidCredentials ends the session; any other
// error (auth.ErrUnavailable: the provider did not answer) keeps it.
type Revalidator interface {
	Revalidate(ctx context.Context, c auth.Credentials) error
}

// RevalidatorFunc adapts a function to Revalidator.
type RevalidatorFunc func(ctx context.Context, c auth.Credentials) error

// Revalidate calls f.
func (f RevalidatorFunc) Revalidate(ctx context.Context, c auth.Credentials) error { return f(ctx, c) }

var _ Revalidator = RevalidatorFunc(nil)

// defaultRevalidateEvery is LifetimeOptions.RevalidateEvery's default.
const defaultRevalidateEvery = 5 * time.Minute

// check refuses an unknown Mode and LifetimeRevalidate without a Revalidator.
func (o LifetimeOptions) check() error {
	switch o.Mode {
	case "", LifetimeNone, LifetimeToken:
	case LifetimeRevalidate:
		if o.Revalidator == nil {
			return errors.New("proxy: Options.Lifetime: revalidate needs a Revalidator")
		}
	default:
		return fmt.Errorf("proxy: Options.Lifetime: unknown mode %q (want none, token or revalidate)", o.Mode)
	}
	return nil
}

func (o LifetimeOptions) withDefaults() LifetimeOptions {
	if o.Mode == "" {
		o.Mode = LifetimeNone
	}
	if o.RevalidateEvery <= 0 {
		o.RevalidateEvery = defaultRevalidateEvery
	}
	return o
}
