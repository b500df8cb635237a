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

// relayBufSize is the copy buffer borrowed from a pool while bytes flow;
// relaySmallBuf is what a direction keeps while it waits on a TLS connection.
const (
	relayBufSize  = 32 << 10
	relaySmallBuf = 2 << 10
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
	// stop, when closed, ends both directions (server shutdown, end of the
	// session's lifetime); the reason is then "stopped".
	stop <-chan struct{}
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
	up   bool
	n    int64
	last byte // last byte written
	err  error
}

// relay copies until both directions have ended. It does not close the
// connections: the caller does.
func relay(ctx context.Context, e relayEnds) relayStats {
	done := make(chan copyResult, 2)
	// endUp tells the client-to-backend copy to stop: that copy re-arms its
	// idle read deadline before every read, which could undo a deadline set
	// here to wake it, so it also looks at endUp after re-arming.
	endUp := make(chan struct{})
	stopUp := sync.OnceFunc(func() { close(endUp) })
	defer stopUp()
	go relayCopy(done, true, e.backend, e.client, e.pendingUp, e.idle, endUp, e.count)
	go relayCopy(done, false, e.client, e.backend, e.pendingDown, e.idle, nil, e.count)

	st := relayStats{lastDown: '\n'}
	record := func(r copyResult) {
		if r.up {
			st.up = r.n
		} else {
			st.down = r.n
			if r.n > 0 {
				st.lastDown = r.last
			}
		}
	}
	var first copyResult
	select {
	case first = <-done:
	case <-e.stop:
		st.reason = "stopped"
		stopUp()
		e.client.SetReadDeadline(time.Now())
		e.backend.SetReadDeadline(time.Now())
		record(<-done)
		record(<-done)
		return st
	}
	record(first)
	switch {
	case first.up && first.err == nil:
		// The client has finished sending: pass the EOF on and let the
		// backend finish its answer (LOGOUT's BYE) for a bounded time.
		st.reason = "client closed"
		closeWrite(e.backend)
		e.backend.SetReadDeadline(time.Now().Add(lingerTimeout))
	case first.up:
		st.reason = "client error"
		if errors.Is(first.err, os.ErrDeadlineExceeded) {
			st.reason = "client idle"
		}
		e.backend.SetReadDeadline(time.Now())
	default:
		// The backend is gone: nothing the client sends can be served now.
		st.reason = "backend closed"
		if first.err != nil {
			st.reason = "backend error"
		}
		closeWrite(e.client)
		stopUp()
		e.client.SetReadDeadline(time.Now())
	}
	record(<-done)
	return st
}

// errRelayStopped ends a copy that found the relay's stop channel closed.
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
func relayCopy(done chan<- copyResult, up bool, dst, src net.Conn, pending []byte, idle time.Duration, end <-chan struct{}, count func(bool, int)) {
	var n int64
	var last byte
	res := func(err error) { done <- copyResult{up: up, n: n, last: last, err: err} }
	if len(pending) > 0 {
		setDeadline(dst.SetWriteDeadline, idle)
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
	var small [relaySmallBuf]byte
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
		buf := small[:]
		if big != nil {
			buf = *big
		} else if ok, err := waitReadable(src); ok {
			if err != nil {
				res(err)
				return
			}
			big = relayBufPool.Get().(*[]byte)
			buf = *big
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			setDeadline(dst.SetWriteDeadline, idle)
			nw, werr := dst.Write(buf[:nr])
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
		case big == nil && nr == len(small):
			// A burst: more is probably waiting.
			big = relayBufPool.Get().(*[]byte)
		case big != nil && nr < len(*big):
			// The burst is over (or, for TCP, this read drained the socket).
			relayBufPool.Put(big)
			big = nil
		}
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
