package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/testenv"
)

// TestIntegrationSharedStateWired: two replicas with cluster.redis share
// the token cache (a token checked by one costs the other no provider call);
// with Redis stopped both keep logging in, /dependencies and
// mailgate_shared_state_up say so, and they recover when it is back.
func TestIntegrationSharedStateWired(t *testing.T) {
	h := testenv.SharedHydra(t)
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	replica := func() *testApp {
		return startTestApp(t, func(c *config.Config) {
			c.OAuth2.Mode, c.OAuth2.UserinfoURL, c.OAuth2.Issuer = "userinfo", h.UserinfoURL, h.Issuer
			c.Cluster.Redis.Address = rd.Addr
		})
	}
	a, b := replica(), replica()
	login := func(ta *testApp, token string) {
		t.Helper()
		c, err := imapclient.DialTLS(ta.a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: ta.tls})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Authenticate(xoauth2{ta.d.User, token}); err != nil {
			t.Fatalf("login: %v\n%s", err, ta.logText())
		}
	}
	tok := h.MintToken(t, a.d.User, testenv.TokenOptions{})
	login(a, tok)
	login(b, tok)
	sa, sb := a.a.checks.Load().cache.Stats(), b.a.checks.Load().cache.Stats()
	if sa.ProviderCalls+sb.ProviderCalls != 1 || sb.SharedHits != 1 {
		t.Fatalf("provider calls %d+%d, shared hits on the second replica %d; want 1 call and 1 shared hit",
			sa.ProviderCalls, sb.ProviderCalls, sb.SharedHits)
	}

	if err := rd.Stop(); err != nil {
		t.Fatal(err)
	}
	deps := "http://" + b.a.ops.ln.Addr().String() + "/dependencies"
	if body := waitHTTP(t, deps, http.StatusServiceUnavailable); !strings.Contains(body, "redis unreachable") {
		t.Fatalf("/dependencies = %q, want redis unreachable", body)
	}
	if body := waitHTTP(t, "http://"+b.a.ops.ln.Addr().String()+"/metrics", http.StatusOK); !strings.Contains(body, "mailgate_shared_state_up 0") ||
		!strings.Contains(body, `mailgate_shared_state_operations_total{result="failed"}`) {
		t.Errorf("mailgate_shared_state_up is not 0, or the operations are not counted, while redis is down:\n%s", body)
	}
	login(b, h.MintToken(t, b.d.User, testenv.TokenOptions{})) // local state carries on
	if code := httpStatus(t, "http://"+b.a.ops.ln.Addr().String()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d while redis is down; a degraded replica still serves", code)
	}
	if err := rd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, deps, http.StatusOK)
	if n := strings.Count(b.logText(), "redis unreachable"); n != 1 {
		t.Errorf("%d 'redis unreachable' log lines, want one per state change", n)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
