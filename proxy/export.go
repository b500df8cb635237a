package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
)

// Building blocks for fronts' pre-auth readers and backend dialogs.

// ErrLineTooLong: a line exceeded the cap given to ReadLine.
var ErrLineTooLong = errLineTooLong

// ReadLine returns one line without its CRLF (a bare LF is tolerated), or
// ErrLineTooLong once it would exceed max bytes, never buffering more. The
// slice may point into br's buffer: valid until the next read. EOF inside a
// line is io.ErrUnexpectedEOF.
func ReadLine(br *bufio.Reader, max int) ([]byte, error) { return readLimitedLine(br, max) }

// ReadBackendLine reads one backend line during a login, capped at 64 KiB.
func ReadBackendLine(br *bufio.Reader) ([]byte, error) { return readBackendLine(br) }

// BackendHandshake runs the client TLS handshake with b (after a backend's
// STARTTLS), with b's verification settings and session cache.
func BackendHandshake(ctx context.Context, conn net.Conn, b Backend) (*tls.Conn, error) {
	return backendHandshake(ctx, conn, b)
}

// Truncate shortens a backend line for a log message or an error.
func Truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// TakeBuffered returns a copy of what br has read ahead (nil if nothing):
// a front's pending bytes for Relay, so that pre-auth buffers can go.
func TakeBuffered(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

// SplitAddr splits a's host and port (ok false if a is nil or not
// host:port), for the client address a front forwards (ID, XCLIENT).
func SplitAddr(a net.Addr) (ip, port string, ok bool) {
	if a == nil {
		return "", "", false
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", "", false
	}
	return host, port, true
}

// A Prober checks a front's backend the way its logins reach it, without
// credentials unless loginAs is set (see CheckBackend); fronts register
// theirs with RegisterProbe. Problems are *BackendProblem.
type Prober interface {
	Probe(ctx context.Context, loginAs string) error
}

// RegisterProbe makes CheckBackend(proto) and readiness use p.
func (s *Server) RegisterProbe(proto string, p Prober) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.probers == nil {
		s.probers = map[string]Prober{}
	}
	s.probers[proto] = p
}

// ProbeDial connects to b as a login does, for a probe: the PROXY header
// (with the probe's own addresses, declaring a TLS client) and implicit TLS.
// The connection's deadline is ctx's, or 20 s.
func (s *Server) ProbeDial(ctx context.Context, b Backend) (net.Conn, error) {
	return s.probeDial(ctx, b)
}

// BatchWrite writes p to dst; when dst is a TLS connection made by
// mailgate (Conn.Handshake, BackendHandshake) and p spans several TLS
// records, the records leave in as few system calls as fit (see batchWrite).
func BatchWrite(dst net.Conn, p []byte) (int, error) { return batchWrite(dst, p) }
