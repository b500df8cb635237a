package proxytest

import (
	"regexp"
	"strings"
	"testing"
)

// The SASL error challenge as the fronts' tests play it: every way a
// client can answer it after a refused token, and the log lines that must
// follow.

// ChallengeReply is one way a client answers the RFC 7628 error challenge.
type ChallengeReply struct {
	Name string
	// Line is what the client sends; with Hangup it closes the connection
	// instead, with Silent it sends nothing (the bounded wait answers).
	Line           string
	Hangup, Silent bool
}

// ChallengeReplies are the answers real clients give: the dummy response
// (RFC 7628 §3.2.3), "*", the whole command again (Thunderbird re-sends
// its AUTHENTICATE line, token and all: resend is that line), a line that
// is not base64, nothing at all (s-nail, isync/mbsync) and a hang-up.
func ChallengeReplies(resend string) []ChallengeReply {
	return []ChallengeReply{
		{Name: "dummy AQ==", Line: "AQ=="},
		{Name: "empty", Line: ""},
		{Name: "cancel", Line: "*"},
		{Name: "command again (Thunderbird)", Line: resend},
		{Name: "not base64", Line: "!!! not base64 !!!"},
		{Name: "no reply (s-nail, mbsync)", Silent: true},
		{Name: "hang-up", Hangup: true},
	}
}

var connAttr = regexp.MustCompile(` conn=(\S+)`)

// ExpectOneRefusal waits for the end of the only connection in logs that
// tried to log in, a refused login, and checks its log lines: exactly one
// "login" line, with result=invalid, and the connection's "closed before
// login" line counting one auth failure (same conn=); any "auth: token
// refused" line carries that conn= too.
func ExpectOneRefusal(t *testing.T, logs *SyncBuffer) {
	t.Helper()
	var logins, refused []string
	var closed string
	WaitFor(t, "the refused connection's last log line", func() bool {
		logins, refused, closed = refusalLines(logs.String())
		return closed != ""
	})
	if len(logins) != 1 || !strings.Contains(logins[0], " result=invalid ") {
		t.Fatalf("login lines %q, want one with result=invalid", logins)
	}
	if !strings.Contains(closed, " auth_failures=1") {
		t.Errorf("closing line %q, want auth_failures=1", closed)
	}
	conn := connAttr.FindStringSubmatch(logins[0])[1]
	for _, line := range refused {
		if !strings.Contains(line, " conn="+conn+" ") {
			t.Errorf("token refusal without the login's conn=%s: %s", conn, line)
		}
	}
}

// refusalLines picks from logs the "login" and "auth: token refused" lines
// and, once the first login line names its connection, that connection's
// "closed before login" line ("" until it is logged).
func refusalLines(logs string) (logins, refused []string, closed string) {
	lines := strings.Split(logs, "\n")
	for _, line := range lines {
		switch {
		case strings.Contains(line, " msg=login "):
			logins = append(logins, line)
		case strings.Contains(line, `msg="auth: token refused"`):
			refused = append(refused, line)
		}
	}
	if len(logins) == 0 {
		return nil, nil, ""
	}
	m := connAttr.FindStringSubmatch(logins[0])
	if m == nil {
		return logins, refused, ""
	}
	for _, line := range lines {
		if strings.Contains(line, `msg="connection closed before login"`) && strings.Contains(line, " conn="+m[1]+" ") {
			closed = line
		}
	}
	return logins, refused, closed
}
