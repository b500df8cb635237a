package proxytest

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// RecordingThrottle is a proxy.Throttle that records what it is told:
// "check user" for Begin, then "success user", "failure user" or
// "undecided user" from done, and "failure address" for Failure(ip, "").
// OnCheck, if set, runs inside Begin (before the attempt may go on);
// Refuse makes Begin fail with auth.ErrThrottled.
type RecordingThrottle struct {
	OnCheck func()
	Refuse  bool
	mu      sync.Mutex
	events  []string
}

func (r *RecordingThrottle) add(ev string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// Begin records "check user".
func (r *RecordingThrottle) Begin(ctx context.Context, ip, user string) (func(auth.Outcome), error) {
	if _, _, err := net.SplitHostPort(ip); err != nil {
		return nil, fmt.Errorf("check: ip %q is not host:port", ip)
	}
	r.add("check " + user)
	if r.OnCheck != nil {
		r.OnCheck()
	}
	if r.Refuse {
		return nil, fmt.Errorf("%w: test", auth.ErrThrottled)
	}
	return func(o auth.Outcome) {
		r.add(map[auth.Outcome]string{auth.AttemptSucceeded: "success ", auth.AttemptFailed: "failure ", auth.AttemptUndecided: "undecided "}[o] + user)
	}, nil
}

// Failure records "failure user" (or "failure address").
func (r *RecordingThrottle) Failure(ip, user string) {
	if user == "" {
		user = "address"
	}
	r.add("failure " + user)
}

// Got returns the events so far.
func (r *RecordingThrottle) Got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// NewTestThrottle is an auth.Throttle that allows failures failed attempts
// before it delays and blocks, on a clock that stands still.
func NewTestThrottle(failures int) *auth.Throttle {
	now := time.Now()
	return auth.NewThrottle(auth.ThrottleOptions{
		Failures: failures, BlockAfter: failures, BlockFor: time.Minute,
		Now: func() time.Time { return now },
	})
}

// PlainIR is the base64 PLAIN message of user's own login.
func PlainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString(auth.EncodePLAIN("", user, pass))
}

// B64 is s in base64.
func B64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestPasswords are the passwords the unit tests use; none may be logged.
var TestPasswords = []string{FakeUserPassword, "wrong-password"}

// CheckNoPasswords fails t if logs hold a test password or a PLAIN message
// with one.
func CheckNoPasswords(t *testing.T, logs string) {
	t.Helper()
	for _, pw := range TestPasswords {
		for _, s := range []string{pw, base64.StdEncoding.EncodeToString(auth.EncodePLAIN("", FakeUser, pw))} {
			if strings.Contains(logs, s) {
				t.Errorf("a password (or a PLAIN message with it) appears in the log")
			}
		}
	}
}
