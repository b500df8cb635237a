package discovery

import (
	"net"
	"net/netip"
	"sync"

	"github.com/mailgate/mailgate/internal/ratelimit"
)

// Connection caps of the public listener: it shares the process's
// descriptors with the mail listeners, so a stranger must not be able to
// hold many. Over a cap a new connection is closed at once.
const (
	// DefaultMaxConnections caps the listener's open connections.
	DefaultMaxConnections = 256
	// DefaultMaxConnectionsPerIP caps one client address's.
	DefaultMaxConnectionsPerIP = 8
)

// LimitListener returns ln accepting at most total connections at once and
// at most perIP from one address (IPv6 by its /64); the others are closed
// as soon as they are accepted. A cap of 0 or less takes its default.
func LimitListener(ln net.Listener, total, perIP int) net.Listener {
	if total <= 0 {
		total = DefaultMaxConnections
	}
	if perIP <= 0 {
		perIP = DefaultMaxConnectionsPerIP
	}
	return &limitListener{Listener: ln, total: total, perIP: perIP, byIP: map[netip.Prefix]int{}}
}

type limitListener struct {
	net.Listener
	total, perIP int

	mu   sync.Mutex
	open int
	byIP map[netip.Prefix]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		if l.admit(key) {
			return &limitConn{Conn: c, l: l, key: key}, nil
		}
		c.Close()
	}
}

func (l *limitListener) admit(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total || l.byIP[key] >= l.perIP {
		return false
	}
	l.open++
	l.byIP[key]++
	return true
}

func (l *limitListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byIP[key]--; l.byIP[key] <= 0 {
		delete(l.byIP, key)
	}
}

// clientKey groups an address: IPv4 by itself, IPv6 by its /64.
func clientKey(a net.Addr) netip.Prefix { return ratelimit.Network(ratelimit.AddrIP(a), 32, 64) }

type limitConn struct {
	net.Conn
	l    *limitListener
	key  netip.Prefix
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.release(c.key) })
	return c.Conn.Close()
}
