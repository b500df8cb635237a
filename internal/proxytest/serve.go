package proxytest

import (
	"context"
	"net"
	"sync"
	"testing"
)

// ServeFront listens on two loopback ports, a plain one (STARTTLS or STLS
// before authentication) and an implicit-TLS one, and runs serve for each
// (a proxy.Server's Serve with its front) until the test ends. The cleanup
// cancels serve's context, calls stop (the server's Close) and waits for
// both serve calls to return; cleanups registered before ServeFront run
// after it.
func ServeFront(t testing.TB, serve func(ctx context.Context, ln net.Listener, implicitTLS bool), stop func()) (plainAddr, tlsAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cancel()
			t.Fatalf("net.Listen() = %v", err)
		}
		if implicit {
			tlsAddr = ln.Addr().String()
		} else {
			plainAddr = ln.Addr().String()
		}
		wg.Add(1)
		go func() { defer wg.Done(); serve(ctx, ln, implicit) }()
	}
	t.Cleanup(func() {
		cancel()
		stop()
		wg.Wait()
	})
	return plainAddr, tlsAddr
}
