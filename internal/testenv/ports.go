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

// freePorts returns n distinct loopback ports that were free a moment ago:
// it binds 127.0.0.1:0 n times, then closes the listeners.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// loopback returns "127.0.0.1:port".
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// portConflict reports whether a daemon's output says a port was taken.
func portConflict(output string) bool {
	return strings.Contains(output, "Address already in use") || strings.Contains(output, "address already in use")
}
