package testenv

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// maxStartAttempts bounds restarts with new ports after a port was taken
// between choosing it and the daemon binding it.
const maxStartAttempts = 3

// pickPorts is freePorts, replaceable by tests.
var pickPorts = freePorts

// freePorts returns n distinct ports of the loopback address host that were
// free a moment ago: it binds host:0 n times, then closes the listeners.
func freePorts(host string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// loopback returns "127.0.0.1:port".
func loopback(port int) string { return hostPort("127.0.0.1", port) }

// hostPort returns "host:port".
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// portConflict reports whether a daemon's output says a port was taken.
func portConflict(output string) bool {
	return strings.Contains(output, "Address already in use") || strings.Contains(output, "address already in use")
}

// FreeAddr returns a 127.0.0.1:port that was free a moment ago, for a
// listener the test configures before it starts (as mailgate's listen
// keys are); it fails tb if none can be bound.
func FreeAddr(tb interface {
	Helper()
	Fatal(...any)
}) string {
	tb.Helper()
	ports, err := freePorts("127.0.0.1", 1)
	if err != nil {
		tb.Fatal(err)
	}
	return loopback(ports[0])
}
