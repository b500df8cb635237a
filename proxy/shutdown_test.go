package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestShutdownIMAP: pre-auth clients get BYE at once; a relayed session keeps
// working during the drain time, then gets BYE at a line boundary.
func TestShutdownIMAP(t *testing.T) {
	tp, _ := newIMAPTest(t)
	pre := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	pre.expect("* OK")
	sess := dialTLS(t, tp.tlsAddr, tp.clientTLS)
	sess.expect("* OK")
	sess.send("a1 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken))
	sess.expect("a1 OK")

	shutdownDone := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	go func() { shutdownDone <- tp.srv.Shutdown(ctx) }()

	pre.expect("* BYE [UNAVAILABLE] Server shutting down.")
	pre.expectClosed()
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("pre-auth BYE after %v, want at once", d)
	}
	// During the drain the session still works.
	sess.send("a2 NOOP")
	sess.expect("* ECHO NOOP")
	sess.expect("a2 OK")
	sess.expect("* BYE [UNAVAILABLE] Server shutting down.")
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Fatalf("session ended after %v, before the drain time", d)
	}
	sess.expectClosed()
	if err := <-shutdownDone; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown() = %v, want DeadlineExceeded (a session was open)", err)
	}
	// No new connections.
	if c, err := dialNoFail(tp.tlsAddr); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after Shutdown")
	}
}
