package rig

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/bench/internal/proc"
)

// Counts are mailgate's resource counts at one moment.
type Counts struct {
	FDs, Threads int
	Goroutines   int // -1: not available
	// Sessions are the sockets of client connections (on a listener's port)
	// and backend connections; Provider are connections to the provider
	// (idle keep-alive ones come and go).
	Sessions, Provider int
	Mem                proc.Mem
}

func (c Counts) String() string {
	return fmt.Sprintf("%d fds (%d session sockets, %d to the provider), %s goroutines", c.FDs, c.Sessions, c.Provider, c.GoroutinesString())
}

// GoroutinesString is the goroutine count, or "n/a".
func (c Counts) GoroutinesString() string {
	if c.Goroutines < 0 {
		return "n/a"
	}
	return strconv.Itoa(c.Goroutines)
}

// Ports identify mailgate's sockets: its client listeners, the backends'
// ports (IMAP, SMTP) and the provider's port.
type Ports struct {
	Listeners []int
	Backends  []int
	Provider  int
}

// PortOf is the port of "host:port" (0 if none).
func PortOf(addr string) int {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		addr = addr[i+1:]
	}
	n, _ := strconv.Atoi(addr)
	return n
}

// Sample reads mailgate's counts now.
func (m *Mailgate) Sample(p Ports) Counts {
	c := Counts{Goroutines: -1}
	c.FDs, _ = proc.FDs(m.PID())
	socks, _ := proc.TCPSockets(m.PID())
	for _, s := range socks {
		switch {
		case s.RemotePort == 0:
		case slices.Contains(p.Listeners, s.LocalPort) || slices.Contains(p.Backends, s.RemotePort):
			c.Sessions++
		case s.RemotePort == p.Provider:
			c.Provider++
		}
	}
	c.Threads, _ = proc.Threads(m.PID())
	c.Mem, _ = proc.Memory(m.PID())
	if g, err := m.Goroutines(); err == nil {
		c.Goroutines = g
	}
	return c
}

// Tolerance is how far above the baseline a count may stay and still be
// "back".
type Tolerance struct{ FDs, Goroutines int }

// WaitBack polls until mailgate holds no session socket any more and its
// fds and goroutines (when known) are back at the baseline plus tol,
// allowing for the provider keep-alive connections it holds beyond the
// baseline's (one descriptor and two goroutines each: net/http's read and
// write loops). It gives up after timeout.
func (m *Mailgate) WaitBack(ctx context.Context, p Ports, base Counts, tol Tolerance, timeout time.Duration) (Counts, bool) {
	deadline := time.Now().Add(timeout)
	for {
		c := m.Sample(p)
		extra := max(c.Provider-base.Provider, 0)
		fdOK := c.Sessions == 0 && c.FDs <= base.FDs+extra+tol.FDs
		gOK := c.Goroutines < 0 || base.Goroutines < 0 || c.Goroutines <= base.Goroutines+2*extra+tol.Goroutines
		if fdOK && gOK {
			return c, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil || m.Exited() {
			return c, false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
