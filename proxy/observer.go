package proxy

import "time"

// Observer receives what a Server does, for metrics. Methods are called on
// hot paths: implementations must be fast and safe for concurrent use.
// Label values come from small fixed sets (proto "imap", "smtp", "pop3" or
// "sieve"; listener "tls" or "starttls"; results as in result.go) so they
// can be metric labels.
type Observer interface {
	// ConnOpened and ConnClosed bracket an admitted client connection.
	ConnOpened(proto, listener string)
	ConnClosed(proto, listener string)
	// ConnRefused counts a connection turned away (reason "limit").
	ConnRefused(proto, listener, reason string)
	// Login is one authentication attempt: mech, and result ok, invalid,
	// unavailable or malformed; d spans the token check and the backend login.
	Login(proto, mech, result string, d time.Duration)
	// BackendLogin is one backend dial + login; err is nil on success.
	BackendLogin(proto string, d time.Duration, err error)
	// BackendTLS is one TLS handshake with a backend; resumed: an
	// abbreviated handshake that resumed an earlier session.
	BackendTLS(proto string, resumed bool)
	// Relayed counts bytes copied, dir "up" (client to backend) or "down".
	Relayed(proto, dir string, n int)
	// SMTPMessage is one relayed message: result "ok", "rejected" (the backend
	// said no) or "aborted"; bytes is the size of the body relayed.
	SMTPMessage(result string, bytes int64)
}

// NopObserver ignores everything; it is used when Options.Observer is nil.
type NopObserver struct{}

func (NopObserver) ConnOpened(proto, listener string)                 {}
func (NopObserver) ConnClosed(proto, listener string)                 {}
func (NopObserver) ConnRefused(proto, listener, reason string)        {}
func (NopObserver) Login(proto, mech, result string, d time.Duration) {}
func (NopObserver) BackendLogin(proto string, d time.Duration, err error) {
}
func (NopObserver) BackendTLS(proto string, resumed bool)  {}
func (NopObserver) Relayed(proto, dir string, n int)       {}
func (NopObserver) SMTPMessage(result string, bytes int64) {}

var _ Observer = NopObserver{}
