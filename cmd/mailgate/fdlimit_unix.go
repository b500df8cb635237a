//go:build unix

package main

import "syscall"

// raiseOpenFiles raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does so too since Go 1.19; this makes it explicit and tells the
// result) and returns the soft limit now in force. On error limit is the
// soft limit as it was, or 0 if unknown.
func raiseOpenFiles() (limit uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur == rl.Max {
		return uint64(rl.Cur), nil
	}
	raised := rl
	raised.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		return uint64(rl.Cur), err
	}
	return uint64(raised.Cur), nil
}

// hardOpenFiles returns the hard RLIMIT_NOFILE (0 if unknown).
func hardOpenFiles() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return uint64(rl.Max)
}
