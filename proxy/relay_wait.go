package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// waitReadable blocks until c has bytes to read, an EOF or an error, without
// holding a buffer while it waits: idle sessions then cost no copy buffer.
// It honours c's read deadline. ok is false when c cannot be waited on this
// way (not a TCP connection); the caller then simply reads.
func waitReadable(c net.Conn) (ok bool, err error) {
	tc, isTCP := c.(*net.TCPConn)
	if !isTCP {
		return false, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var peek [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing yet, let the poller wait. Anything else (data,
		// EOF, an error) is for the real Read to report.
		return !errors.Is(rerr, syscall.EAGAIN)
	})
	return true, err
}

// PeerSpoke reports, without reading or waiting, whether c's peer has sent
// bytes nobody has read yet or has closed its side: a backend that ended
// an idle session (Postfix's smtpd_timeout: a 421, then a close) while
// mailgate was not asking. c is a TCP connection, or a TLS connection
// mailgate made over one (its records count as bytes). False when it
// cannot tell.
func PeerSpoke(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if bc, ok := c.(*batchConn); ok {
		c = bc.Conn
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return false
	}
	spoke := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		spoke = err == nil // a byte waits, or 0 bytes: the peer closed
	})
	return spoke
}
