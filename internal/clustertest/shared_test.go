package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// attempt is one failed login as its client saw it.
type attempt struct {
	reply string
	took  time.Duration
}

// slowReply is how long a refused login must take to count as delayed by
// the throttle (its first delay is 1 s; an undelayed refusal takes a few ms).
const slowReply = 800 * time.Millisecond

// failLogins sends junk tokens from src through frontend, one connection
// per attempt, until the reply is the block (NO [LIMIT]) or max attempts
// were made. It returns every attempt.
func (c *cluster) failLogins(t *testing.T, frontend, src string, max int) []attempt {
	t.Helper()
	var out []attempt
	for i := range max {
		junk := fmt.Sprintf("junk-%s-%d-%d", src, i, time.Now().UnixNano())
		start := time.Now()
		cl, reply, err := imapLogin(src, c.lb.Addr(frontend), c.clientTLS, alice, junk)
		if err != nil {
			t.Fatalf("attempt %d from %s: %v", i+1, src, err)
		}
		cl.Close()
		out = append(out, attempt{reply, time.Since(start)})
		if strings.HasPrefix(reply, "a1 NO [LIMIT]") {
			return out
		}
		if !strings.HasPrefix(reply, "a1 NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("attempt %d from %s: %q, want a refusal", i+1, src, reply)
		}
	}
	return out
}

// verdicts sums up attempts: the first delayed one and the first blocked one
// (1-based, 0 for none).
func verdicts(as []attempt) (firstDelayed, firstBlocked int) {
	for i, a := range as {
		if firstDelayed == 0 && a.took >= slowReply {
			firstDelayed = i + 1
		}
		if firstBlocked == 0 && strings.HasPrefix(a.reply, "a1 NO [LIMIT]") {
			firstBlocked = i + 1
		}
	}
	return
}

func describe(as []attempt) string {
	var b strings.Builder
	for i, a := range as {
		fmt.Fprintf(&b, "\n  %d: %v %s", i+1, a.took.Round(10*time.Millisecond), a.reply)
	}
	return b.String()
}

// TestThrottleShared: with limits.auth_failures_per_ip 1 (then delays of
// 1, 2 s... and a block at a score of 3), failed logins from one address
// sent round-robin over three replicas through HAProxy are delayed and
// then blocked at the same attempt as failed logins from another address
// sent to one replica only: the replicas share one failure record per
// client network in Redis. Once blocked, the address is blocked on every
// replica, a valid token included.
func TestThrottleShared(t *testing.T) {
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	c := newCluster(t, clusterOptions{redis: rd, authFailures: 1})
	const maxAttempts = 8

	one := c.failLogins(t, feIMAPSOne, "127.0.0.41", maxAttempts)
	before := map[string]float64{}
	for _, r := range c.reps {
		before[r.name] = sumMetric(r.metrics(), "mailgate_authentications_total", `result="invalid"`)
	}
	all := c.failLogins(t, feIMAPS, "127.0.0.42", maxAttempts)
	t.Logf("one replica:%s\nthree replicas:%s", describe(one), describe(all))

	// The attempts through the balancer did reach every replica.
	for _, r := range c.reps {
		if n := sumMetric(r.metrics(), "mailgate_authentications_total", `result="invalid"`) - before[r.name]; n == 0 {
			t.Fatalf("replica %s got none of the failed logins sent through HAProxy", r.name)
		}
	}
	d1, b1 := verdicts(one)
	d3, b3 := verdicts(all)
	if b1 == 0 || d1 == 0 {
		t.Fatalf("against one replica: first delayed attempt %d, first blocked %d; want both within %d attempts%s", d1, b1, maxAttempts, describe(one))
	}
	if d3 != d1 || b3 != b1 {
		t.Fatalf("through three replicas the first delayed attempt is %d and the first blocked %d; against one replica %d and %d (the failure record is not shared)",
			d3, b3, d1, b1)
	}

	// The block holds on every replica, for a valid token too.
	tok := c.mint(alice)
	for i := range c.reps {
		cl, reply, err := imapLogin("127.0.0.42", c.lb.Addr(feIMAPS), c.clientTLS, alice, tok)
		if err != nil {
			t.Fatal(err)
		}
		cl.Close()
		if !strings.HasPrefix(reply, "a1 NO [LIMIT]") {
			t.Fatalf("login %d with a valid token from the blocked address: %q, want NO [LIMIT]", i+1, reply)
		}
	}
	// Another address is not affected.
	cl, reply, err := imapLogin("127.0.0.43", c.lb.Addr(feIMAPS), c.clientTLS, alice, tok)
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if !strings.HasPrefix(reply, "a1 OK") {
		t.Fatalf("login from another address: %q", reply)
	}
}

// loginEverywhere logs in with tok once through each replica (HAProxy
// round-robin, checked with the replicas' login counters): IMAP, then SMTP
// from srcIMAP and srcSMTP. It fails the test on any failed login.
func (c *cluster) loginEverywhere(t *testing.T, tok, srcIMAP, srcSMTP string) {
	t.Helper()
	before := map[string]float64{}
	for _, r := range c.reps {
		before[r.name] = sumMetric(r.metrics(), "mailgate_authentications_total", `result="ok"`)
	}
	for range c.reps {
		cl, reply, err := imapLogin(srcIMAP, c.lb.Addr(feIMAPS), c.clientTLS, alice, tok)
		if err != nil {
			t.Fatal(err)
		}
		cl.Close()
		if !strings.HasPrefix(reply, "a1 OK") {
			t.Fatalf("IMAP login: %q", reply)
		}
		sc, err := smtpLogin(srcSMTP, c.lb.Addr(feSMTPS), c.clientTLS, alice, tok)
		if err != nil {
			t.Fatalf("SMTP login: %v", err)
		}
		sc.Close()
	}
	for _, r := range c.reps {
		if n := sumMetric(r.metrics(), "mailgate_authentications_total", `result="ok"`) - before[r.name]; n != 2 {
			t.Fatalf("replica %s: %v logins, want 2 (HAProxy's round robin)", r.name, n)
		}
	}
}

// TestTokenCacheShared: one token used for IMAP and SMTP on all three
// replicas within its cache TTL costs one provider call in all (the sum of
// the replicas' mailgate_token_validation_seconds_count, which counts only
// the calls that reached the provider).
func TestTokenCacheShared(t *testing.T) {
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	c := newCluster(t, clusterOptions{redis: rd})
	tok := c.mint(alice)
	calls := c.providerCalls()
	c.loginEverywhere(t, tok, "127.0.0.51", "127.0.0.52")
	if n := c.providerCalls() - calls; n != 1 {
		t.Fatalf("6 logins over 3 replicas with one token cost %v provider calls, want 1", n)
	}
}

// TestRedisDownAndBack: Redis stops mid-run. Logins go on working on every
// replica (each one falls back to its own state), /dependencies reports
// Redis and mailgate_shared_state_up is 0, while /readyz stays 200 (the
// balancer must not take every replica out for a shared dependency) and
// HAProxy keeps all three. Redis comes back, empty: /dependencies and the
// gauge recover, and a new token again costs one provider call for logins
// on all three replicas.
func TestRedisDownAndBack(t *testing.T) {
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	c := newCluster(t, clusterOptions{redis: rd})
	calls := c.providerCalls()
	c.loginEverywhere(t, c.mint(alice), "127.0.0.61", "127.0.0.62")
	if n := c.providerCalls() - calls; n != 1 {
		t.Fatalf("with Redis up, one token on 3 replicas cost %v provider calls, want 1", n)
	}

	if err := rd.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.loginEverywhere(t, c.mint(alice), "127.0.0.61", "127.0.0.62")
	t.Logf("6 logins with Redis down took %v", time.Since(start).Round(time.Millisecond))
	for _, r := range c.reps {
		waitFor(t, logTimeout, func() bool {
			code, body, err := r.get("/dependencies")
			return err == nil && code == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(body), "redis")
		}, func() string {
			code, body, err := r.get("/dependencies")
			return fmt.Sprintf("replica %s /dependencies with Redis down: %d %q %v, want 503 naming Redis", r.name, code, body, err)
		})
		if code, body, err := r.get("/readyz"); err != nil || code != http.StatusOK {
			t.Errorf("replica %s /readyz with Redis down: %d %q %v, want 200", r.name, code, body, err)
		}
		if up := sumMetric(r.metrics(), "mailgate_shared_state_up"); up != 0 {
			t.Errorf("replica %s mailgate_shared_state_up with Redis down: %v, want 0", r.name, up)
		}
	}
	for _, fe := range []string{feIMAPS, feSMTPS} {
		states, err := c.lb.Servers(context.Background(), fe)
		if err != nil {
			t.Fatal(err)
		}
		for name, st := range states {
			if st.Status != "UP" {
				t.Errorf("HAProxy %s/%s with Redis down: %+v, want UP", fe, name, st)
			}
		}
	}

	if err := rd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range c.reps {
		waitFor(t, logTimeout, func() bool {
			code, _, err := r.get("/dependencies")
			return err == nil && code == http.StatusOK
		}, func() string {
			code, body, err := r.get("/dependencies")
			return fmt.Sprintf("replica %s /dependencies after Redis came back: %d %q %v, want 200", r.name, code, body, err)
		})
		if up := sumMetric(r.metrics(), "mailgate_shared_state_up"); up != 1 {
			t.Errorf("replica %s mailgate_shared_state_up after Redis came back: %v, want 1", r.name, up)
		}
	}
	calls = c.providerCalls()
	c.loginEverywhere(t, c.mint(alice), "127.0.0.61", "127.0.0.62")
	if n := c.providerCalls() - calls; n != 1 {
		t.Fatalf("after Redis came back, one new token on 3 replicas cost %v provider calls, want 1 (shared cache not resumed)", n)
	}
}
