package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// lines is a line-based test client with a deadline on every read.
type lines struct {
	c  net.Conn
	br *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lines {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lines{c: c, br: bufio.NewReader(c)}
}

func dialTLSLines(t *testing.T, addr string, cfg *tls.Config) *lines {
	t.Helper()
	return dialLines(t, addr).tls(t, cfg)
}

// tls runs the client handshake on l's connection (after STARTTLS).
func (l *lines) tls(t *testing.T, cfg *tls.Config) *lines {
	t.Helper()
	tc := tls.Client(l.c, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &lines{c: tc, br: bufio.NewReader(tc)}
}

func (l *lines) send(t *testing.T, s string) {
	t.Helper()
	l.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := l.c.Write([]byte(s + "\r\n")); err != nil {
		t.Fatal(err)
	}
}

func (l *lines) read(t *testing.T) string {
	t.Helper()
	l.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := l.br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(s, "\r\n")
}

// expect reads one line and wants prefix.
func (l *lines) expect(t *testing.T, prefix string) {
	t.Helper()
	if s := l.read(t); !strings.HasPrefix(s, prefix) {
		t.Fatalf("got %q, want %q...", s, prefix)
	}
}

// until reads lines up to one starting with prefix.
func (l *lines) until(t *testing.T, prefix string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if strings.HasPrefix(l.read(t), prefix) {
			return
		}
	}
	t.Fatalf("no line starting with %q", prefix)
}
