package testenv

import (
	"net"
	"testing"
)

// TestPortConflictRetry hands Dovecot a port that is taken, as can happen
// between choosing a free port and the daemon binding it.
func TestPortConflictRetry(t *testing.T) {
	Require(t, PartDovecot)
	l, err := net.Listen("tcp", net.JoinHostPort(BackendHost(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPorts = func(host string, n int) ([]int, error) {
		calls++
		ports, err := freePorts(host, n)
		if err == nil && calls == 1 {
			ports[0] = taken
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()
	d := StartDovecot(t, DovecotOptions{})
	if calls != 2 || d.IMAPAddr == hostPort(BackendHost(), taken) {
		t.Fatalf("%d port choices, IMAP on %s (taken: %d)", calls, d.IMAPAddr, taken)
	}
	if !d.LogContains("Address already in use") {
		t.Errorf("the first attempt did not fail on the taken port:\n%s", d.Log.Tail(10))
	}
}
