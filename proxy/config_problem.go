package proxy

import (
	"sync"
	"time"
)

// A backend that refuses mailgate's master login for a configuration reason
// fails every user's login the same way. The reason and the setting to
// change are logged at ERROR, once per configProblemEvery, and kept for
// readiness checks (Server.BackendProblem) until a login or a probe
// succeeds.

// HintHAProxyTrust is the fix when a backend closed the connection right
// after mailgate's PROXY header (a front's probe tells this from an
// outage), as logged and reported by /readyz and check-config.
const HintHAProxyTrust = "the backend closed the connection after mailgate's PROXY header: add mailgate's address to " +
	"haproxy_trusted_networks (Dovecot) or check postscreen_upstream_proxy_protocol / smtpd_upstream_proxy_protocol " +
	"(Postfix), or set client_ip to another method"

// HintDovecotMaster is the fix when Dovecot refuses the master user's own
// credentials on a master login (an unknown target mailbox is refused as
// AUTHORIZATIONFAILED instead).
const HintDovecotMaster = "Dovecot refuses the master user's credentials: check master.user and master.password against " +
	"Dovecot's master passdb (DMS: setup.sh dovecot-master add, file dovecot-masters.cf; its allow_real_nets, " +
	"if set, must hold mailgate's address)"

// configProblemEvery is the least time between two log lines for one problem.
const configProblemEvery = time.Minute

type configProblems struct {
	mu      sync.Mutex
	logged  map[string]time.Time // by proto: last log line
	reason  map[string]string    // by proto: what and fix
	probed  map[string]time.Time // by proto, while a problem stands: last probe
	probing map[string]bool
	login   map[string]bool // by proto: the standing problem was found by logging in
}

func (p *configProblems) setLogin(proto string, login bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.login == nil {
		p.login = map[string]bool{}
	}
	p.login[proto] = login
}

// configProblem logs a configuration problem of proto's backend: what it
// does ("refused the master login: <reply>") and the fix. A standing one is
// also kept for readiness; a suspected one only logged (a signal a client
// could provoke, such as a login refusal that also has an innocent reading,
// must not take mailgate out of a load balancer).
func (s *Server) configProblem(proto, what, fix string, standing bool) {
	p := &s.problems
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logged == nil {
		p.logged, p.reason = map[string]time.Time{}, map[string]string{}
		p.probed, p.probing = map[string]time.Time{}, map[string]bool{}
	}
	if standing {
		p.reason[proto] = what + ": " + fix
		if _, ok := p.probed[proto]; !ok {
			p.probed[proto] = time.Now()
		}
	}
	if now := time.Now(); now.Sub(p.logged[proto]) >= configProblemEvery {
		p.logged[proto] = now
		s.log.Error("backend configuration problem: every login will fail", "proto", proto, "backend", what, "fix", fix)
	}
}

// BackendProblem returns the standing configuration problem of proto's
// backend ("imap", "smtp", ...), or "" if none was seen since the last
// successful master login or probe. While one stands it is probed again
// in the background every reprobeEvery.
func (s *Server) BackendProblem(proto string) string {
	s.problems.mu.Lock()
	r := s.problems.reason[proto]
	s.problems.mu.Unlock()
	if r != "" {
		s.reprobe(proto)
	}
	return r
}

// backendOK clears proto's configuration problem after a successful login
// or probe.
func (s *Server) backendOK(proto string) {
	p := &s.problems
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reason[proto] != "" {
		s.log.Info("backend configuration problem gone", "proto", proto)
	}
	delete(p.reason, proto)
	delete(p.probed, proto)
	delete(p.login, proto)
}
