package proxy

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// What happens to connections that cannot be served: refused cheaply and
// counted, and accept errors waited out (pools.go decides who is refused).

// rejectBusyTimeout bounds writing the one-line refusal on a plaintext port.
const rejectBusyTimeout = time.Second

// rejectBusy turns away a client that arrived over the limits, as cheaply as
// possible: on an implicit-TLS port the connection is just closed (a TLS
// handshake would cost more than the refusal is worth); on a plaintext port
// the client gets busy, one short line of its protocol's "try again later".
func (s *Server) rejectBusy(c net.Conn, busy string, implicitTLS bool) {
	if implicitTLS || busy == "" {
		return
	}
	c.SetWriteDeadline(time.Now().Add(rejectBusyTimeout))
	c.Write([]byte(busy))
}

// refused counts a refused (or evicted) connection and logs it, at most one
// line per refusalLogEvery for each reason, with the number left unsaid.
func (s *Server) refused(proto, listener, reason string, remote net.Addr) {
	s.obs.ConnRefused(proto, listener, reason)
	if n, ok := s.refusal.due(reason, time.Now()); ok {
		s.log.Warn("connection refused", "proto", proto, "listener", listener, "reason", reason,
			"remote", remote.String(), "suppressed", n)
	}
}

// refusalLogEvery is the least time between two log lines for one reason.
const refusalLogEvery = 10 * time.Second

// refusalLog rate-limits the refusal log lines, per reason.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	skip map[string]int
}

// due reports whether a line for reason may be logged now, and how many
// were suppressed since the last one.
func (r *refusalLog) due(reason string, now time.Time) (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.skip = map[string]time.Time{}, map[string]int{}
	}
	if now.Sub(r.last[reason]) < refusalLogEvery {
		r.skip[reason]++
		return 0, false
	}
	r.last[reason] = now
	n := r.skip[reason]
	r.skip[reason] = 0
	return n, true
}

// acceptBackoff waits after a failed Accept: 5 ms, doubling up to 1 s, and
// logs at most one line per second of failures.
type acceptBackoff struct {
	delay   time.Duration
	lastLog time.Time
}

const maxAcceptBackoff = time.Second

func (b *acceptBackoff) wait(log *slog.Logger, proto, listener string, err error) {
	b.delay = min(max(2*b.delay, 5*time.Millisecond), maxAcceptBackoff)
	if now := time.Now(); now.Sub(b.lastLog) >= time.Second {
		b.lastLog = now
		log.Warn("accept failed; retrying", "proto", proto, "listener", listener, "err", err, "retry_in", b.delay)
	}
	time.Sleep(b.delay)
}

func (b *acceptBackoff) reset() { b.delay = 0 }

// wrapProxyProtocol makes ln accept a PROXY protocol v1/v2 header from the
// trusted networks (required from them: IMAP and SMTP servers speak first,
// so an optional header could only be detected by waiting), and take
// connections from anywhere else as they are, without looking for a header.
func (s *Server) wrapProxyProtocol(ln net.Listener) net.Listener {
	if len(s.opts.ProxyProtocolFrom) == 0 {
		return ln
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ConnPolicy:        proxyproto.MustPolicyFromRanges(s.opts.ProxyProtocolFrom, proxyproto.REQUIRE, proxyproto.SKIP),
		ReadHeaderTimeout: s.limits.HandshakeTimeout,
	}
}
