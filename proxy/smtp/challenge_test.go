package smtp

import (
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestSMTPErrorChallengeReplies: whatever the client answers the error
// challenge after a refused token ("*" and lines that are not base64
// included, which are 501 anywhere else), it is the dummy response:
// 535 5.7.8, one login line with result=invalid, and one auth failure for
// the connection, also when the client hangs up instead; a client that
// says nothing gets the refusal after the configured wait.
func TestSMTPErrorChallengeReplies(t *testing.T) {
	const wait = 300 * time.Millisecond
	ir := proxytest.XOAUTH2("alice@example.test", proxytest.BadToken)
	for _, r := range proxytest.ChallengeReplies("AUTH XOAUTH2 " + ir) {
		t.Run(r.Name, func(t *testing.T) {
			tp, _ := newSMTPTest(t, proxytest.FakeSMTPOptions{}, func(o *proxy.Options, _ *Options) {
				o.Limits.DummyReplyWait = wait
			})
			c := tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2 "+ir, "334 ")
			start := time.Now()
			switch {
			case r.Hangup:
				c.C.Close()
				proxytest.ExpectOneRefusal(t, tp.logs)
				return
			case !r.Silent:
				c.Send(r.Line)
			}
			c.SMTPExpect("535 5.7.8 ")
			if d := time.Since(start); r.Silent && (d < wait || d > 3*time.Second) {
				t.Errorf("refusal after %v, want after the configured wait (%v)", d, wait)
			}
			c.SMTPCmd("NOOP", "250 ") // the stream is still in step
			c.C.Close()
			proxytest.ExpectOneRefusal(t, tp.logs)
		})
	}
}
