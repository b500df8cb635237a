package sieve

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestLimits: lines, literals and commands over their caps end the
// connection with BYE; a quoted string over its cap is refused with NO.
func TestLimits(t *testing.T) {
	backend := Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}}
	roomy := newTestFront(t, proxy.Options{Limits: proxy.Limits{MaxLine: 2048, MaxPreloginBytes: 3000}}, backend)
	tight := newTestFront(t, proxy.Options{Limits: proxy.Limits{MaxLine: 2048, MaxPreloginBytes: 2000}}, backend)
	for _, tt := range []struct {
		name     string
		tf       *testFront
		in       string
		want     string
		startTLS bool
	}{
		{"line too long", roomy, "NOOP " + strings.Repeat("x", 2100), `BYE "Line too long."`, false},
		{"literal too large", roomy, "NOOP {1025+}", `BYE "Literal too large."`, false},
		{"SASL literal over MaxLine", roomy, `AUTHENTICATE "XOAUTH2" {2049+}`, `BYE "Literal too large."`, true},
		{"line after a literal over the budget", roomy, `AUTHENTICATE "XOAUTH2" {2000+}` + "\r\n" +
			strings.Repeat("A", 2000) + " " + strings.Repeat("B", 1100), `BYE "Command too large."`, true},
		{"literal over the budget", tight, `AUTHENTICATE "XOAUTH2" {1990+}`, `BYE "Command too large."`, true},
		{"SASL response over the budget", tight, `AUTHENTICATE "XOAUTH2"` + "\r\n" + `{1990+}`,
			`BYE "Command too large."`, true},
		{"line over the budget", tight, "NOOP " + strings.Repeat("x", 2010), `BYE "Command too large."`, false},
		{"string too long", roomy, `NOOP "` + strings.Repeat("x", 1025) + `"`, `NO "String too long."`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, "", tt.tf.addr)
			c.greeted()
			if tt.startTLS {
				c.starttls(tt.tf.clientTLS)
			}
			c.Send(tt.in)
			data, final := c.resp()
			if final != tt.want {
				t.Fatalf("got %q (after %q), want %q", final, data, tt.want)
			}
			if strings.HasPrefix(tt.want, "BYE") {
				c.expectClosed()
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	tf := newTestFront(t, proxy.Options{Limits: proxy.Limits{CommandTimeout: 200 * time.Millisecond}},
		Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.expect(`BYE "Disconnected for inactivity."`)
	c.expectClosed()
}

func TestShutdownBeforeLogin(t *testing.T) {
	tf := newTestFront(t, proxy.Options{}, Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	go tf.srv.Shutdown(context.Background())
	c.expect(strings.TrimSuffix(replyShutdown, "\r\n"))
	c.expectClosed()
}

// TestShutdownWaitingForDummy: Shutdown also wakes the wait for the dummy
// reply.
func TestShutdownWaitingForDummy(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.Send(`AUTHENTICATE "XOAUTH2" "` + b64(auth.EncodeXOAUTH2("alice@example.test", "bad")) + `"`)
	challengeJSON(t, c)
	start := time.Now()
	go tf.srv.Shutdown(context.Background())
	c.expect(strings.TrimSuffix(replyShutdown, "\r\n"))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("BYE after %v", d)
	}
}

// TestShutdownRelayed: once the drain time is over a relayed session gets
// BYE (TRYLATER) between two responses.
func TestShutdownRelayed(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	c := tf.loggedIn(t)
	c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no drain time
	go tf.srv.Shutdown(ctx)
	c.expect(strings.TrimSuffix(replyShutdown, "\r\n"))
	c.expectClosed()
}

func TestBusy(t *testing.T) {
	tf := newTestFront(t, proxy.Options{Limits: proxy.Limits{MaxPreloginPerIP: 1}},
		Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	first := dial(t, "", tf.addr)
	first.greeted()
	second := dial(t, "", tf.addr)
	if l := second.ReadLine(); l+"\r\n" != tf.front.Busy() || l != `BYE (TRYLATER) "Too many connections, try again later."` {
		t.Fatalf("turned away with %q", l)
	}
	second.expectClosed()
}
