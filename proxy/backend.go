package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// backendKeepAlive is the TCP keepalive period on backend connections.
const backendKeepAlive = 30 * time.Second

// dialBackend connects to b.Address, writes preface first if there is one
// (a PROXY protocol header), and with implicit TLS completes the handshake.
// STARTTLS is the protocol code's business.
func dialBackend(ctx context.Context, b Backend, preface []byte) (net.Conn, error) {
	d := net.Dialer{KeepAlive: backendKeepAlive}
	conn, err := d.DialContext(ctx, "tcp", b.Address)
	if err != nil {
		return nil, err
	}
	if len(preface) > 0 {
		if dl, ok := ctx.Deadline(); ok {
			conn.SetWriteDeadline(dl)
		}
		if _, err := conn.Write(preface); err != nil {
			conn.Close()
			return nil, fmt.Errorf("proxy header: %w", err)
		}
		conn.SetWriteDeadline(time.Time{})
	}
	if b.TLS == TLSImplicit {
		tc, err := backendHandshake(ctx, conn, b)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	return conn, nil
}

// proxyHeader is a PROXY protocol v2 header naming client as the source and
// local (the address the client connected to) as the destination. When the
// client's leg is TLS (tlsVersion not 0) it carries the SSL TLV with
// PP2_CLIENT_SSL and the version, as HAProxy's send-proxy-v2-ssl does:
// Dovecot 2.4 counts such a session as secured (ssl = required) although
// mailgate's own leg to it is plaintext, and logs it with TLS.
func proxyHeader(client, local net.Addr, tlsVersion uint16) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, client, local)
	if tlsVersion != 0 {
		ssl := tlvparse.PP2SSL{
			Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
			TLV: []proxyproto.TLV{{
				Type:  proxyproto.PP2_SUBTYPE_SSL_VERSION,
				Value: []byte(tlsVersionName(tlsVersion)),
			}},
		}
		tlv, err := ssl.Marshal()
		if err != nil {
			return nil, err
		}
		if err := h.SetTLVs([]proxyproto.TLV{tlv}); err != nil {
			return nil, err
		}
	}
	return h.Format()
}

// tlvVersion is the client TLS version to announce in the PROXY header to b:
// only when mailgate's own leg to b is plaintext (with STARTTLS or implicit
// TLS the session is secured by that leg, and Dovecot 2.4 would refuse a
// STARTTLS on a connection the TLV already declared TLS).
func tlvVersion(b Backend, client uint16) uint16 {
	if b.TLS != "" && b.TLS != TLSNone {
		return 0
	}
	return client
}

// tlsVersionName is the version as OpenSSL names it ("TLSv1.3").
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return "TLS"
}

// backendSessionCacheSize is the number of TLS sessions kept per backend
// (one per backend name, so a few suffice; more for several SNI names).
const backendSessionCacheSize = 64

// backendClientTLS returns the client TLS config for b that every backend
// connection clones: b's verification settings, a session cache shared by
// all its connections, so that logins after the first resume a TLS session
// (an abbreviated handshake: no certificate chain, no signature) instead of
// paying a full one, and a hook that reports each handshake to the observer.
func (s *Server) backendClientTLS(b Backend, proto string) *tls.Config {
	cfg := backendTLSConfig(b)
	if cfg.ClientSessionCache == nil {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(backendSessionCacheSize)
	}
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		s.obs.BackendTLS(proto, cs.DidResume)
		return nil
	}
	return cfg
}

// backendHandshake runs a client TLS handshake with b's verification settings.
func backendHandshake(ctx context.Context, conn net.Conn, b Backend) (*tls.Conn, error) {
	tc := tls.Client(&batchConn{Conn: conn}, backendTLSConfig(b)) // bulk writes: see batchWrite
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

func backendTLSConfig(b Backend) *tls.Config {
	var cfg *tls.Config
	if b.TLSConfig != nil {
		cfg = b.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(b.Address); err == nil {
			cfg.ServerName = host
		}
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// maxBackendLine caps one backend response line during the login.
const maxBackendLine = 64 << 10

// readBackendLine reads one line from the backend, without its CRLF.
func readBackendLine(br *bufio.Reader) ([]byte, error) {
	line, err := readLimitedLine(br, maxBackendLine)
	if errors.Is(err, errLineTooLong) {
		return nil, fmt.Errorf("backend line longer than %d bytes", maxBackendLine)
	}
	return line, err
}
