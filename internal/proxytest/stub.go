package proxytest

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// StubBackend is a TCP listener on 127.0.0.1 whose connections are handed
// to serve, then closed; serve nil holds them open and silent until the
// test ends. It counts the connections it accepted and those still open.
type StubBackend struct {
	Addr     string
	Accepted atomic.Int32
	Open     atomic.Int32
	ln       net.Listener
	wg       sync.WaitGroup
	quit     chan struct{}
}

// StartStubBackend listens until the test ends.
func StartStubBackend(t testing.TB, serve func(net.Conn)) *StubBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	sb := &StubBackend{Addr: ln.Addr().String(), ln: ln, quit: make(chan struct{})}
	t.Cleanup(func() { close(sb.quit); ln.Close(); sb.wg.Wait() })
	sb.wg.Add(1)
	go func() {
		defer sb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sb.Accepted.Add(1)
			sb.Open.Add(1)
			sb.wg.Add(1)
			go func() {
				defer sb.wg.Done()
				defer sb.Open.Add(-1)
				defer c.Close()
				if serve != nil {
					serve(c)
					return
				}
				// Silent: hold the connection until the peer or the test ends it.
				done := make(chan struct{})
				go func() { io.Copy(io.Discard, c); close(done) }()
				select {
				case <-done:
				case <-sb.quit:
					c.Close()
					<-done
				}
			}()
		}
	}()
	return sb
}

// MessageReader generates whole CRLF lines, some starting with a dot, until
// at least size bytes have been produced, without holding them in memory.
type MessageReader struct {
	left int64
	line int
	pend []byte
}

// NewMessageReader returns a MessageReader for size bytes.
func NewMessageReader(size int64) *MessageReader { return &MessageReader{left: size} }

func (m *MessageReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && (m.left > 0 || len(m.pend) > 0) {
		if len(m.pend) == 0 {
			m.line++
			switch {
			case m.line == 1:
				m.pend = []byte("Subject: generated\r\n\r\n")
			case m.line%7 == 0:
				m.pend = []byte(".leading dot line " + strconv.Itoa(m.line) + "\r\n")
			default:
				m.pend = []byte("line " + strconv.Itoa(m.line) + " abcdefghijklmnopqrstuvwxyz 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n")
			}
			m.left -= int64(len(m.pend))
		}
		c := copy(p[n:], m.pend)
		m.pend = m.pend[c:]
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
