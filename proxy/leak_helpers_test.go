package proxy

import (
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// openConnCount is the number of client connections s is handling.
func openConnCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// waitConnsClosed waits until s handles no client connection.
func waitConnsClosed(t *testing.T, s *Server) {
	t.Helper()
	proxytest.WaitFor(t, "mailgate to close every client connection", func() bool { return openConnCount(s) == 0 })
}
