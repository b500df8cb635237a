package proxy

import (
	"sync"
	"time"
)

// A backend that refuses mailgate's master login for a configuration reason
// fails every user's login the same way. The reason and the setting to
// change are logged at ERROR, once per configProblemEvery, and kept for
// readiness checks (Server.BackendProblem).

// imapHintPrivacy: Dovecot refused the master login because the connection
// is not secured (Dovecot 2.4 with ssl = required, or 2.3 with
// disable_plaintext_auth from an untrusted network).
const imapHintPrivacy = "Dovecot refuses authentication over a plaintext connection (Dovecot 2.4 with ssl = required, " +
	"which DMS sets, requires TLS from every address except its own): set imap.backend.tls to starttls or implicit, " +
	"or imap.backend.client_ip: proxy with imap.backend.tls: none towards a 'haproxy = yes' listener whose " +
	"haproxy_trusted_networks holds mailgate's address (mailgate then declares the client's TLS in the PROXY header)"

// configProblemEvery is the least time between two log lines for one problem.
const configProblemEvery = time.Minute

type configProblems struct {
	mu     sync.Mutex
	last   map[string]time.Time // by proto
	reason map[string]string
}

// configProblem records a configuration problem of proto's backend.
func (s *Server) configProblem(proto, hint string, reply []byte) {
	p := &s.problems
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last, p.reason = map[string]time.Time{}, map[string]string{}
	}
	p.reason[proto] = hint
	if now := time.Now(); now.Sub(p.last[proto]) >= configProblemEvery {
		p.last[proto] = now
		s.log.Error("backend refuses the master login: configuration", "proto", proto, "reply", truncate(reply), "fix", hint)
	}
}

// BackendProblem returns the last configuration problem seen with proto's
// backend ("imap" or "smtp"), or "" if none was seen since the last
// successful master login.
func (s *Server) BackendProblem(proto string) string {
	s.problems.mu.Lock()
	defer s.problems.mu.Unlock()
	return s.problems.reason[proto]
}

// backendOK clears proto's configuration problem after a successful login.
func (s *Server) backendOK(proto string) {
	s.problems.mu.Lock()
	defer s.problems.mu.Unlock()
	delete(s.problems.reason, proto)
}
