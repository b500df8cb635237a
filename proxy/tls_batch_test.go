package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// countingConn counts the writes that reach the connection and can make
// them fail.
type countingConn struct {
	net.Conn
	writes atomic.Int32
	fail   atomic.Bool
}

var errInjected = errors.New("injected write error")

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	if c.fail.Load() {
		return 0, errInjected
	}
	return c.Conn.Write(p)
}

// batchedTLSPair is a server tls.Conn over a batchConn over a countingConn,
// and its client, both handshaken, on loopback TCP.
func batchedTLSPair(t *testing.T) (server *tls.Conn, counter *countingConn, client *tls.Conn) {
	t.Helper()
	serverTLS, clientTLS := proxytest.TLSPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	defer ln.Close()
	done := make(chan *tls.Conn, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), clientTLS)
		if err != nil {
			t.Errorf("tls.Dial() = %v", err)
		}
		done <- c
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	counter = &countingConn{Conn: raw}
	server = tls.Server(&batchConn{Conn: counter}, serverTLS)
	server.SetDeadline(time.Now().Add(10 * time.Second))
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	client = <-done
	if client == nil {
		t.FailNow()
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, counter, client
}

// TestBatchWriteCoalescesRecords: a relay chunk that spans four TLS records
// leaves in one write and arrives intact; a small write passes straight
// through; a failed write of the queued records is reported.
func TestBatchWriteCoalescesRecords(t *testing.T) {
	server, counter, client := batchedTLSPair(t)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), relayBufSize/16)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(chunk)+5)
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(client, b)
		got <- b[:n]
	}()

	before := counter.writes.Load()
	if n, err := batchWrite(server, chunk); n != len(chunk) || err != nil {
		t.Fatalf("batchWrite() = %d, %v", n, err)
	}
	if w := counter.writes.Load() - before; w != 1 {
		t.Errorf("a %d-byte chunk took %d writes, want 1", len(chunk), w)
	}
	if _, err := batchWrite(server, []byte("small")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, append(chunk, "small"...)) {
		t.Fatalf("the client got %d bytes, not what was sent", len(b))
	}

	counter.fail.Store(true)
	if _, err := batchWrite(server, chunk); !errors.Is(err, errInjected) {
		t.Fatalf("batchWrite() with a failing connection = %v, want the write error", err)
	}
}
