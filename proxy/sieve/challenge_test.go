package sieve

import (
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestErrorChallengeReplies: whatever the client answers the error
// challenge after a refused token (quoted or not, even its whole command
// again), it is the dummy response: NO "Authentication failed.", one
// login line with result=invalid, and one auth failure for the
// connection, also when the client hangs up instead; a client that says
// nothing (PHP's Net_Sieve) gets the refusal after the configured wait.
func TestErrorChallengeReplies(t *testing.T) {
	const wait = 300 * time.Millisecond
	cmd := `AUTHENTICATE "XOAUTH2" "` + b64(auth.EncodeXOAUTH2("alice@example.test", proxytest.BadToken)) + `"`
	for _, r := range proxytest.ChallengeReplies(cmd) {
		t.Run(r.Name, func(t *testing.T) {
			tf, _ := setupFake(t, proxy.Options{Limits: proxy.Limits{DummyReplyWait: wait}})
			c := dial(t, "", tf.addr)
			c.greeted()
			c.starttls(tf.clientTLS)
			c.Send(cmd)
			challengeJSON(t, c)
			start := time.Now()
			switch {
			case r.Hangup:
				c.C.Close()
				proxytest.ExpectOneRefusal(t, tf.logs)
				return
			case r.Silent:
			case r.Line == cmd || r.Line == "":
				c.Send(r.Line)
			default:
				c.Send(`"` + r.Line + `"`) // a response is a string
			}
			c.expect(`NO "Authentication failed."`)
			if d := time.Since(start); r.Silent && (d < wait || d > 3*time.Second) {
				t.Errorf("refusal after %v, want after the configured wait (%v)", d, wait)
			}
			c.cmd("NOOP", `OK "NOOP completed."`) // the stream is still in step
			c.C.Close()
			proxytest.ExpectOneRefusal(t, tf.logs)
		})
	}
}
