package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// Connection admission: a total cap and a per-client-address cap, checked
// when a connection arrives (after any PROXY header, so that the address is
// the real client's). A refused client gets its protocol's "try again later"
// reply, then the connection is closed.

// admit counts c against the limits; release must be called when c ends.
func (s *Server) admit(c net.Conn) (release func(), ok bool) {
	key := clientKey(c.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if max := s.limits.MaxConnections; max > 0 && s.active >= max {
		return nil, false
	}
	if max := s.limits.MaxConnectionsPerIP; max > 0 && key.IsValid() && s.perIP[key] >= max {
		return nil, false
	}
	s.active++
	if key.IsValid() {
		s.perIP[key]++
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.active--
		if key.IsValid() {
			if s.perIP[key]--; s.perIP[key] <= 0 {
				delete(s.perIP, key)
			}
		}
	}, true
}

// clientKey groups addresses the way limits count them: IPv4 addresses one
// by one, IPv6 by /64 (one subscriber usually has a whole /64).
func clientKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// rejectBusy tells a client that arrived over the limits to come back later.
func (s *Server) rejectBusy(c net.Conn, proto string, implicitTLS bool) {
	dl := time.Now().Add(s.limits.HandshakeTimeout)
	c.SetDeadline(dl)
	var w net.Conn = c
	if implicitTLS {
		tc := tls.Server(c, s.opts.TLSConfig)
		if tc.Handshake() != nil {
			return
		}
		w = tc
	}
	if proto == "imap" {
		w.Write([]byte("* BYE [UNAVAILABLE] Too many connections, try again later.\r\n"))
	} else {
		w.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
	}
	if tc, ok := w.(*tls.Conn); ok {
		tc.CloseWrite()
	}
}

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
