package imap

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// TestShutdownIMAP: pre-auth clients get BYE at once; a relayed session keeps
// working during the drain time, then gets BYE at a line boundary.
func TestShutdownIMAP(t *testing.T) {
	tp, _ := newIMAPTest(t)
	pre := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	pre.Expect("* OK")
	sess := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
	sess.Expect("* OK")
	sess.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	sess.Expect("a1 OK")

	shutdownDone := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	go func() { shutdownDone <- tp.srv.Shutdown(ctx) }()

	pre.Expect("* BYE [UNAVAILABLE] Server shutting down.")
	pre.ExpectClosed()
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("pre-auth BYE after %v, want at once", d)
	}
	// During the drain the session still works.
	sess.Send("a2 NOOP")
	sess.Expect("* ECHO NOOP")
	sess.Expect("a2 OK")
	sess.Expect("* BYE [UNAVAILABLE] Server shutting down.")
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Fatalf("session ended after %v, before the drain time", d)
	}
	sess.ExpectClosed()
	if err := <-shutdownDone; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown() = %v, want DeadlineExceeded (a session was open)", err)
	}
	// No new connections.
	if c, err := proxytest.DialNoFail(tp.tlsAddr); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after Shutdown")
	}
}
