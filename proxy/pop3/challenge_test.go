package pop3

import (
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestErrorChallengeReplies: whatever the client answers the error
// challenge after a refused token, it is the dummy response: -ERR [AUTH],
// one login line with result=invalid, and one auth failure for the
// connection, also when the client hangs up instead; a client that says
// nothing gets the refusal after the configured wait.
func TestErrorChallengeReplies(t *testing.T) {
	const wait = 300 * time.Millisecond
	ir := xoauth2("alice@example.test", badToken)
	for _, r := range proxytest.ChallengeReplies("AUTH XOAUTH2 " + ir) {
		t.Run(r.Name, func(t *testing.T) {
			tf := newFakeFront(t, &fakeBackend{}, proxy.Options{Limits: proxy.Limits{DummyReplyWait: wait}})
			c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
			c.expect("+OK mailgate ready.")
			c.Send("AUTH XOAUTH2 " + ir)
			c.expect("+ *")
			start := time.Now()
			switch {
			case r.Hangup:
				c.C.Close()
				proxytest.ExpectOneRefusal(t, tf.logs)
				return
			case !r.Silent:
				c.Send(r.Line)
			}
			c.expect("-ERR [AUTH] Authentication failed.")
			if d := time.Since(start); r.Silent && (d < wait || d > 3*time.Second) {
				t.Errorf("refusal after %v, want after the configured wait (%v)", d, wait)
			}
			c.Send("NOOP") // the stream is still in step
			c.expect("-ERR Not logged in.")
			c.C.Close()
			proxytest.ExpectOneRefusal(t, tf.logs)
		})
	}
}
