package proxy

import (
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
