package discovery

import (
	"net"
	"os"
	"testing"
	"time"
)

// TestLimitListener: over the per-address cap a connection is closed at
// once; closing one makes room again.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(raw, 10, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	s1, s2 := <-accepted, <-accepted
	over := dial()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("a third connection from one address was kept (read: %v; want it closed)", err)
	}
	s1.Close()
	a.Close()
	c := dial()
	select {
	case s3 := <-accepted:
		s3.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no room after a connection closed")
	}
	s2.Close()
	b.Close()
	c.Close()
}
