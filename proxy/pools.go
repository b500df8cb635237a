package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mailgate/mailgate/internal/ratelimit"
)

// Connection admission. Every client connection holds a seat in one of two
// pools, counted per client network (Limits.IPv4Prefix / IPv6Prefix):
//
//   - the pre-login pool, from accept until the backend login starts: small
//     (Limits.MaxPrelogin in total, MaxPreloginPerIP per network). A new
//     connection over the network's cap is refused; one that finds the pool
//     full takes the seat of the oldest pre-login connection of the network
//     that holds the most, which is closed.
//   - the logged-in pool (MaxConnections, MaxConnectionsPerIP), entered when
//     a verified user's backend login starts and left when the session ends.
//
// So a flood of idle connections, from one network or many, can only crowd
// the pre-login pool, and never keeps a user who has logged in, or who is
// logging in, out of the logged-in one. New connections are also limited in
// rate per network (Limits.ConnRate, ConnBurst). Exempt networks pay no
// per-network cap or rate; the totals apply to them too.

// Reasons a connection is refused, for Observer.ConnRefused and the log.
const (
	refusedRate     = "rate"            // the network's connection rate
	refusedPerIP    = "prelogin_per_ip" // the network's pre-login cap
	refusedFull     = "prelogin_full"   // the pre-login pool, with nothing to evict
	refusedEvicted  = "evicted"         // closed to make room for a newer one
	refusedSessions = "sessions_limit"  // the logged-in pool, at login
)

// errTooManySessions: the logged-in pool has no seat for the client's network
// or at all. Temporary: the client may try again later.
var errTooManySessions = errors.New("too many sessions")

type seatState uint8

const (
	seatPrelogin seatState = iota
	seatLoggedIn
	seatGone
)

// seat is one client connection's place in the pools.
type seat struct {
	p      *pools
	key    netip.Prefix // the client network; invalid when unknown
	exempt bool
	conn   net.Conn // closed when the seat is taken by a newer connection
	seq    uint64   // admission order
	state  seatState
}

// pools holds the seats of all client connections of one Server.
type pools struct {
	lim  Limits
	rate *ratelimit.Table

	mu       sync.Mutex
	pre      map[netip.Prefix][]*seat // pre-login seats per network, oldest first
	preTotal int
	in       map[netip.Prefix]int // logged-in seats per network
	inTotal  int
	seq      uint64
}

func newPools(lim Limits) *pools {
	p := &pools{lim: lim, pre: map[netip.Prefix][]*seat{}, in: map[netip.Prefix]int{}}
	if lim.ConnRate > 0 {
		p.rate = ratelimit.New(lim.ConnRate, lim.ConnBurst, time.Now)
	}
	return p
}

// key returns the network a client address counts in, and whether it is exempt.
func (p *pools) key(a net.Addr) (netip.Prefix, bool) {
	ip := ratelimit.AddrIP(a)
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	for _, n := range p.lim.ExemptNetworks {
		if n.Contains(ip) {
			return netip.PrefixFrom(ip, ip.BitLen()), true
		}
	}
	return ratelimit.Network(ip, p.lim.IPv4Prefix, p.lim.IPv6Prefix), false
}

// admit gives c a pre-login seat, or returns the reason it is refused. When
// the pool is full the connection it displaces is returned, for the caller
// to close outside the lock.
func (p *pools) admit(c net.Conn) (st *seat, evicted net.Conn, reason string) {
	key, exempt := p.key(c.RemoteAddr())
	if !exempt && key.IsValid() && p.rate != nil && !p.rate.Allow(key) {
		return nil, nil, refusedRate
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if max := p.lim.MaxPreloginPerIP; max > 0 && !exempt && key.IsValid() && len(p.pre[key]) >= max {
		return nil, nil, refusedPerIP
	}
	if max := p.lim.MaxPrelogin; max > 0 && p.preTotal >= max {
		victim := p.busiestLocked()
		if victim == nil {
			return nil, nil, refusedFull
		}
		p.removePreLocked(victim)
		victim.state = seatGone
		evicted = victim.conn
	}
	p.seq++
	st = &seat{p: p, key: key, exempt: exempt, conn: c, seq: p.seq}
	p.pre[key] = append(p.pre[key], st)
	p.preTotal++
	return st, evicted, ""
}

// busiestLocked returns the oldest pre-login seat of the network holding the
// most, preferring networks that are not exempt; among networks holding as
// many, the one whose oldest seat is oldest.
func (p *pools) busiestLocked() *seat {
	var best []*seat
	for _, list := range p.pre {
		if len(list) > 0 && (best == nil || evictBefore(list, best)) {
			best = list
		}
	}
	if best == nil {
		return nil
	}
	return best[0]
}

// evictBefore reports whether network a's oldest seat goes before b's.
func evictBefore(a, b []*seat) bool {
	if ea, eb := a[0].exempt, b[0].exempt; ea != eb {
		return eb
	}
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a[0].seq < b[0].seq
}

func (p *pools) removePreLocked(st *seat) {
	list := p.pre[st.key]
	for i, s := range list {
		if s == st {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.pre, st.key)
	} else {
		p.pre[st.key] = list
	}
	p.preTotal--
}

// login moves st to the logged-in pool, when a backend login starts, and
// reports whether it did: a seat already logged in (a backend reconnect)
// stays so. It returns errTooManySessions when that pool has no seat for
// st's network, and errClientGone when the seat was taken away.
func (st *seat) login() (moved bool, err error) {
	if st == nil {
		return false, nil
	}
	p := st.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch st.state {
	case seatLoggedIn:
		return false, nil
	case seatGone:
		return false, errClientGone
	}
	if max := p.lim.MaxConnections; max > 0 && p.inTotal >= max {
		return false, errTooManySessions
	}
	if max := p.lim.MaxConnectionsPerIP; max > 0 && !st.exempt && st.key.IsValid() && p.in[st.key] >= max {
		return false, errTooManySessions
	}
	p.removePreLocked(st)
	p.in[st.key]++
	p.inTotal++
	st.state = seatLoggedIn
	return true, nil
}

// loginFailed moves st back to the pre-login pool after a backend login
// that did not succeed (the client may try again on the same connection).
// The pre-login cap may be passed by one for a while: the seat was the
// client's before.
func (st *seat) loginFailed() {
	if st == nil {
		return
	}
	p := st.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.state != seatLoggedIn {
		return
	}
	p.leaveInLocked(st)
	p.pre[st.key] = append(p.pre[st.key], st)
	p.preTotal++
	st.state = seatPrelogin
}

// release gives the seat up when the connection ends.
func (st *seat) release() {
	if st == nil {
		return
	}
	p := st.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch st.state {
	case seatPrelogin:
		p.removePreLocked(st)
	case seatLoggedIn:
		p.leaveInLocked(st)
	}
	st.state = seatGone
}

func (p *pools) leaveInLocked(st *seat) {
	if p.in[st.key]--; p.in[st.key] <= 0 {
		delete(p.in, st.key)
	}
	p.inTotal--
}

// counts returns the seats taken in each pool, for tests and metrics.
func (p *pools) counts() (prelogin, loggedIn int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.preTotal, p.inTotal
}
