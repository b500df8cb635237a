package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The relay knows nothing about IMAP or SMTP: it copies bytes both ways
// between an authenticated client and its backend session, bytes that were
// read ahead during the pre-auth phase first, and half-closes each direction
// when its source ends.

// lingerTimeout bounds how long the backend may keep talking after the client
// has closed its sending side.
const lingerTimeout = 30 * time.Second

// relayBufSize is the copy buffer borrowed from a pool while bytes flow: 64
// KiB reads and writes halve the system calls of 32 KiB ones on a bulk
// transfer. relaySmallBuf is what a direction keeps while it waits on a TLS
// connection: an IMAP command or an IDLE's DONE fits, and a longer burst
// moves on to a pooled buffer after its first read.
const (
	relayBufSize  = 64 << 10
	relaySmallBuf = 512
)

var relayBufPool = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

type relayEnds struct {
	client, backend net.Conn
	// pendingUp and pendingDown were read ahead from the client and the
	// backend before the hand-off; they are written first.
	pendingUp, pendingDown []byte
	// idle ends the session after this long without a byte from the client;
	// it also bounds each write. Zero means no limit.
	idle time.Duration
	// stop, if set, ends both directions when its Stop is called (server
	// shutdown, end of the session's lifetime); the reason is then "stopped".
	stop *relayStopper
	// count, if set, is told every chunk copied (for metrics).
	count func(up bool, n int)
}

type relayStats struct {
	up, down int64  // bytes client->backend, backend->client
	reason   string // why it ended: "client closed", "backend closed", "client idle", "stopped", ...
	// lastDown is the last byte sent to the client ('\n' if none): a
	// goodbye may only be added at a line boundary.
	lastDown byte
}

type copyResult struct {
	n    int64
	last byte // last byte written
	err  error
	at   time.Time // when the copy ended
}

// endedFirst reports whether r ended before other.
func (r copyResult) endedFirst(other copyResult) bool { return !r.at.After(other.at) }

// relayStopper ends a relay from outside (server shutdown, session
// lifetime). Stop may be called before, during or after the relay, any
// number of times.
type relayStopper struct {
	mu      sync.Mutex
	stopped bool
	halt    func()
}

// Stop ends the relay (at once if it is running, at its start otherwise).
func (rs *relayStopper) Stop() {
	rs.mu.Lock()
	rs.stopped = true
	halt := rs.halt
	rs.mu.Unlock()
	if halt != nil {
		halt()
	}
}

// install sets the relay's halt function and reports whether Stop came first.
func (rs *relayStopper) install(halt func()) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.halt = halt
	return rs.stopped
}

// relay copies until both directions have ended. It does not close the
// connections: the caller does.
//
// The backend-to-client copy runs in the calling goroutine and only the
// other direction gets a goroutine of its own: every goroutine stack counts
// when thousands of sessions sit in IDLE.
func relay(ctx context.Context, e relayEnds) relayStats {
	upDone := make(chan copyResult, 1)
	// endUp tells the client-to-backend copy to stop: that copy re-arms its
	// idle read deadline before every read, which could undo a deadline set
	// here to wake it, so it also looks at endUp after re-arming.
	endUp := make(chan struct{})
	stopUp := sync.OnceFunc(func() { close(endUp) })
	defer stopUp()

	// mu orders the decisions about the backend's read deadline (the only
	// way to end the copy running here): a stop sets it to now, and the
	// client's end must not push it out again afterwards.
	var mu sync.Mutex
	stopped := false
	halt := func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		stopUp()
		e.client.SetReadDeadline(time.Now())
		e.backend.SetReadDeadline(time.Now())
	}
	if e.stop != nil && e.stop.install(halt) {
		halt()
	}
	if e.stop != nil {
		defer e.stop.install(nil)
	}

	go func() {
		r := relayCopy(true, e.backend, e.client, e.pendingUp, e.idle, endUp, e.count)
		mu.Lock()
		if !stopped {
			if r.err == nil {
				// The client has finished sending: pass the EOF on and let
				// the backend finish its answer (LOGOUT's BYE) for a bounded time.
				closeWrite(e.backend)
				e.backend.SetReadDeadline(time.Now().Add(lingerTimeout))
			} else {
				e.backend.SetReadDeadline(time.Now())
			}
		}
		mu.Unlock()
		upDone <- r
	}()
	down := relayCopy(false, e.client, e.backend, e.pendingDown, e.idle, nil, e.count)

	mu.Lock()
	wasStopped := stopped
	if !wasStopped {
		// The backend has finished (or failed): nothing the client sends
		// can be served now, unless the client ended first and this is the
		// backend's last answer.
		closeWrite(e.client)
		stopUp()
		e.client.SetReadDeadline(time.Now())
	}
	mu.Unlock()
	up := <-upDone

	st := relayStats{up: up.n, down: down.n, lastDown: '\n'}
	if down.n > 0 {
		st.lastDown = down.last
	}
	switch {
	case wasStopped:
		st.reason = "stopped"
	case up.err == nil && (down.err == nil || errors.Is(down.err, os.ErrDeadlineExceeded)) && up.endedFirst(down):
		st.reason = "client closed"
	case up.err != nil && errors.Is(up.err, os.ErrDeadlineExceeded) && up.endedFirst(down):
		st.reason = "client idle"
	case up.err != nil && !errors.Is(up.err, errRelayStopped) && up.endedFirst(down):
		st.reason = "client error"
	case down.err != nil:
		st.reason = "backend error"
	default:
		st.reason = "backend closed"
	}
	return st
}

// errRelayStopped ends a copy that found its end channel closed.
var errRelayStopped = errors.New("relay stopped")

// relayCopy copies src to dst, pending bytes first, until src ends or end
// is closed (nil: never). It is a named function so that relays are easy to
// find in goroutine dumps.
//
// Stopping: relay closes end, then sets src's read deadline to now. The
// copy sets its own (idle) read deadline before each read, which could undo
// relay's; so it looks at end after setting it: either it sees end closed,
// or relay's deadline came later and wakes the read.
//
// Memory: an idle session must cost little. When src is a TCP connection the
// copy waits for readability without a buffer and borrows a pooled buffer
// only while bytes flow. Otherwise (a TLS client) it reads into a small
// buffer of its own and borrows a large one only while reads fill the small one.
func relayCopy(up bool, dst, src net.Conn, pending []byte, idle time.Duration, end <-chan struct{}, count func(bool, int)) (r copyResult) {
	var n int64
	var last byte
	res := func(err error) { r = copyResult{n: n, last: last, err: err, at: time.Now()} }
	var wdl writeDeadline
	if len(pending) > 0 {
		wdl.arm(dst, idle)
		w, err := dst.Write(pending)
		n += int64(w)
		if w > 0 {
			last = pending[w-1]
			if count != nil {
				count(up, w)
			}
		}
		if err != nil {
			res(err)
			return
		}
		pending = nil
	}
	var small []byte // allocated on the first wait that needs it (a TLS source)
	var big *[]byte
	defer func() {
		if big != nil {
			relayBufPool.Put(big)
		}
	}()
	for {
		if up {
			setDeadline(src.SetReadDeadline, idle)
		}
		select {
		case <-end:
			res(errRelayStopped)
			return
		default:
		}
		buf := small
		if big != nil {
			buf = *big
		} else if ok, err := waitReadable(src); ok {
			if err != nil {
				res(err)
				return
			}
			big = relayBufPool.Get().(*[]byte)
			buf = *big
		} else if small == nil {
			small = make([]byte, relaySmallBuf)
			buf = small
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			wdl.arm(dst, idle)
			nw, werr := batchWrite(dst, buf[:nr])
			n += int64(nw)
			if nw > 0 {
				last = buf[nw-1]
				if count != nil {
					count(up, nw)
				}
			}
			if werr != nil {
				res(werr)
				return
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = nil
			}
			res(rerr)
			return
		}
		switch {
		case big == nil && nr == relaySmallBuf:
			// A burst: more is probably waiting.
			big = relayBufPool.Get().(*[]byte)
		case big != nil && nr < len(*big):
			// The burst is over (or, for TCP, this read drained the socket).
			relayBufPool.Put(big)
			big = nil
		}
	}
}

// writeDeadline re-arms a copy's write deadline (idle from now) at most
// every idle/64: a bulk transfer writes thousands of chunks, and each re-arm
// is a timer update. A write thus gets between 63/64 of idle and idle.
type writeDeadline struct{ armed time.Time }

func (w *writeDeadline) arm(dst net.Conn, idle time.Duration) {
	if idle <= 0 {
		return
	}
	if now := time.Now(); now.Sub(w.armed) >= idle/64 {
		dst.SetWriteDeadline(now.Add(idle))
		w.armed = now
	}
}

func setDeadline(set func(time.Time) error, d time.Duration) {
	if d > 0 {
		set(time.Now().Add(d))
	}
}

// closeWrite half-closes c if it can (TCP FIN, or TLS close_notify).
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
