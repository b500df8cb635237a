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
// local (the address the client connected to) as the destination.
func proxyHeader(client, local net.Addr) ([]byte, error) {
	return proxyproto.HeaderProxyFromAddrs(2, client, local).Format()
}

// backendHandshake runs a client TLS handshake with b's verification settings.
func backendHandshake(ctx context.Context, conn net.Conn, b Backend) (*tls.Conn, error) {
	tc := tls.Client(conn, backendTLSConfig(b))
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
