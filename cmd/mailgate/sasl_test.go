package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
)

// TestSASLOptionsDefaults: the configuration's defaults reach the proxy:
// Google's XOAUTH2 error status and a 5 s wait for the dummy reply.
func TestSASLOptionsDefaults(t *testing.T) {
	cfg := config.Default()
	opts, err := proxyOptions(&cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Challenge.XOAUTH2Status != "400" || opts.Limits.DummyReplyWait != 5*time.Second {
		t.Errorf("Challenge.XOAUTH2Status = %q, Limits.DummyReplyWait = %v; want 400 and 5s",
			opts.Challenge.XOAUTH2Status, opts.Limits.DummyReplyWait)
	}
}

// TestSASLOptionsOnTheWire: oauth2.xoauth2_error_status and
// limits.dummy_reply_timeout, as served: the greeting offers SASL-IR and
// both mechanisms, a refused token gets the configured status, a client
// that never answers the challenge (s-nail, mbsync) is refused after the
// configured wait, and the refusal's log lines carry the login's conn=.
func TestSASLOptionsOnTheWire(t *testing.T) {
	const wait = 400 * time.Millisecond
	ta := startTestApp(t, func(c *config.Config) {
		c.OAuth2.XOAUTH2ErrorStatus = "401"
		c.Limits.DummyReplyTimeout = wait
	})
	conn, err := tls.Dial("tcp", ta.a.addr("imap.listen_tls"), ta.tls)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	line := func() string {
		t.Helper()
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (after %q)", err, l)
		}
		return strings.TrimRight(l, "\r\n")
	}
	if g := line(); !strings.Contains(g, " SASL-IR ") || !strings.Contains(g, " AUTH=OAUTHBEARER AUTH=XOAUTH2]") {
		t.Errorf("greeting %q, want SASL-IR and both mechanisms", g)
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodeXOAUTH2(ta.d.User, "not-a-token"))
	conn.Write([]byte("a1 AUTHENTICATE XOAUTH2 " + ir + "\r\n"))
	ch, ok := strings.CutPrefix(line(), "+ ")
	raw, err := base64.StdEncoding.DecodeString(ch)
	var v struct{ Status string }
	if !ok || err != nil || json.Unmarshal(raw, &v) != nil || v.Status != "401" {
		t.Fatalf("challenge %q (%s), want status 401", ch, raw)
	}
	start := time.Now()
	if l := line(); l != "a1 NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Fatalf("reply %q, want NO [AUTHENTICATIONFAILED]", l)
	}
	if d := time.Since(start); d < wait || d > 3*time.Second {
		t.Errorf("refusal after %v, want after limits.dummy_reply_timeout (%v)", d, wait)
	}
	conn.Close()
	if err := ta.stop(); err != nil {
		t.Fatal(err)
	}
	checkRefusalConn(t, ta.logs.String())
}

var connID = regexp.MustCompile(` conn=(\S+) `)

// checkRefusalConn: the token check's refusal and the login line of the
// same refused login carry the same conn=.
func checkRefusalConn(t *testing.T, logs string) {
	t.Helper()
	var refused, login []string
	for _, l := range strings.Split(logs, "\n") {
		var id string
		if m := connID.FindStringSubmatch(l); m != nil {
			id = m[1]
		}
		switch {
		case strings.Contains(l, `msg="auth: token refused"`):
			refused = append(refused, id)
		case strings.Contains(l, " msg=login ") && strings.Contains(l, " result=invalid "):
			login = append(login, id)
		}
	}
	if len(refused) != 1 || len(login) != 1 || refused[0] == "" || refused[0] != login[0] {
		t.Errorf("token refused conn %q, login conn %q; want one each, the same:\n%s", refused, login, logs)
	}
}

// TestXOAUTH2StatusNeedsRestart: the status is in the proxy's options, so
// a reload that changes it says a restart is needed (and keeps the old one).
func TestXOAUTH2StatusNeedsRestart(t *testing.T) {
	cur, next := config.Default(), config.Default()
	next.OAuth2.XOAUTH2ErrorStatus = "401"
	if got := restartOnlyChanges(&cur, &next); len(got) != 1 || got[0] != "oauth2.xoauth2_error_status" {
		t.Errorf("restartOnlyChanges = %q, want oauth2.xoauth2_error_status", got)
	}
}

// TestRestartOnlyCoversEveryFront: a change to any front's section (POP3
// and ManageSieve too) is reported as needing a restart on SIGHUP.
func TestRestartOnlyCoversEveryFront(t *testing.T) {
	for name, change := range map[string]func(*config.Config){
		"imap":  func(c *config.Config) { c.IMAP.Backend.Address = "127.0.0.1:1" },
		"smtp":  func(c *config.Config) { c.SMTP.Backend.Address = "127.0.0.1:1" },
		"pop3":  func(c *config.Config) { c.POP3.Backend.Address = "127.0.0.1:1" },
		"sieve": func(c *config.Config) { c.Sieve.Backend.Address = "127.0.0.1:1" },
	} {
		var cur, next config.Config
		change(&next)
		if got := restartOnlyChanges(&cur, &next); len(got) != 1 || got[0] != name {
			t.Errorf("changing %s: restartOnlyChanges = %q", name, got)
		}
	}
}
