package imap

import (
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// dummyWait is the bounded wait for the dummy reply the challenge tests
// configure: short, and far from the 5 s default, so that a refusal in
// time shows the configured value is the one used.
const dummyWait = 300 * time.Millisecond

// TestIMAPErrorChallengeReplies: whatever the client answers the error
// challenge after a refused token (Thunderbird re-sends its whole
// AUTHENTICATE line; s-nail and mbsync say nothing), it is the dummy
// response: NO [AUTHENTICATIONFAILED], never BAD, one login line with
// result=invalid, and one auth failure for the connection, also when the
// client hangs up instead.
func TestIMAPErrorChallengeReplies(t *testing.T) {
	ir := proxytest.XOAUTH2("alice@example.test", proxytest.BadToken)
	for _, r := range proxytest.ChallengeReplies("a2 AUTHENTICATE XOAUTH2 " + ir) {
		t.Run(r.Name, func(t *testing.T) {
			fb := proxytest.StartFakeIMAPBackend(t)
			logger, logs := proxytest.NewLogger()
			tp := newTestProxy(t, proxy.Options{
				Authenticator: fakeAuthenticator,
				Limits:        proxy.Limits{DummyReplyWait: dummyWait},
				Logger:        logger,
			}, Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone}})
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			c.Expect("* OK")
			c.Send("a1 AUTHENTICATE XOAUTH2 " + ir)
			c.Expect("+ ")
			start := time.Now()
			switch {
			case r.Hangup:
				c.C.Close()
				proxytest.ExpectOneRefusal(t, logs)
				return
			case !r.Silent:
				c.Send(r.Line)
			}
			c.Expect("a1 NO [AUTHENTICATIONFAILED] Authentication failed.")
			if d := time.Since(start); r.Silent && (d < dummyWait || d > 3*time.Second) {
				t.Errorf("refusal after %v, want after the configured wait (%v)", d, dummyWait)
			}
			c.Send("a3 NOOP") // the stream is still in step
			c.Expect("a3 OK")
			c.C.Close()
			proxytest.ExpectOneRefusal(t, logs)
			if n := fb.ConnCount(); n != 0 {
				t.Errorf("backend contacted %d times for a refused token", n)
			}
		})
	}
}
