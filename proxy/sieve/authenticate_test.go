package sieve

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

func lit(s string) string { return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s }

// TestAuthenticateForms: the mechanism, the initial response and the
// responses to challenges as quoted strings or literals ({n+} and {n}).
func TestAuthenticateForms(t *testing.T) {
	tf, fb := setupFake(t, proxy.Options{})
	xo := b64(auth.EncodeXOAUTH2("alice@example.test", goodToken))
	ob := b64(auth.EncodeOAUTHBEARER("alice@example.test", goodToken))
	for _, tt := range []struct {
		name   string
		cmd    string
		answer string // the response to the empty challenge, if any
	}{
		{"quoted", `AUTHENTICATE "XOAUTH2" "` + xo + `"`, ""},
		{"lower-case mechanism", `AUTHENTICATE "xoauth2" "` + xo + `"`, ""},
		{"literal+", `AUTHENTICATE "XOAUTH2" ` + lit(xo), ""},
		{"literal", `AUTHENTICATE "XOAUTH2" {` + strconv.Itoa(len(xo)) + "}\r\n" + xo, ""},
		{"both literals", "AUTHENTICATE " + lit("XOAUTH2") + " " + lit(xo), ""},
		{"OAUTHBEARER", `AUTHENTICATE "OAUTHBEARER" "` + ob + `"`, ""},
		{"challenge, quoted", `AUTHENTICATE "XOAUTH2"`, `"` + xo + `"`},
		{"challenge, literal", `AUTHENTICATE "OAUTHBEARER"`, lit(ob)},
		{"challenge, bare", `AUTHENTICATE "XOAUTH2"`, xo},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, "", tf.addr)
			c.greeted()
			c.starttls(tf.clientTLS)
			c.Send(tt.cmd)
			if tt.answer != "" {
				if l := c.ReadLine(); l != `""` {
					t.Fatalf("challenge %q, want an empty string", l)
				}
				c.Send(tt.answer)
			}
			c.expect(`OK "Logged in."`)
			if l := c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`); len(l) != 1 || l[0] != `"mailgate" ACTIVE` {
				t.Fatalf("LISTSCRIPTS: %q", l)
			}
			if l := c.cmd(`GETSCRIPT "mailgate"`, `OK "Getscript completed."`); len(l) != 1 || !strings.Contains(l[0], "fileinto") {
				t.Fatalf("GETSCRIPT: %q", l)
			}
			c.cmd("LOGOUT", `OK "Logout completed."`)
			c.expectClosed()
		})
	}
	xclients, logins := fb.snapshot()
	if len(logins) != 9 || logins[0] != "alice@example.test/master" {
		t.Errorf("backend logins %q", logins)
	}
	re := regexp.MustCompile(`^XCLIENT ADDR=127\.0\.0\.1 PORT=\d+ SESSION=[0-9a-f]{12}$`)
	for _, x := range xclients {
		if !re.MatchString(x) {
			t.Errorf("XCLIENT line %q, want it to match %s", x, re)
		}
	}
}

// challengeJSON reads the error challenge and decodes it.
func challengeJSON(t *testing.T, c *tconn) map[string]string {
	t.Helper()
	l := c.ReadLine()
	raw, err := base64.StdEncoding.DecodeString(strings.Trim(l, `"`))
	var v map[string]string
	if !strings.HasPrefix(l, `"`) || err != nil || json.Unmarshal(raw, &v) != nil {
		t.Fatalf("challenge %q is not a quoted base64 JSON object", l)
	}
	return v
}

func TestRefusedToken(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{Challenge: auth.ChallengeOptions{OpenIDConfiguration: "https://idp.example/.well-known/openid-configuration"}})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)

	c.Send(`AUTHENTICATE "XOAUTH2" "` + b64(auth.EncodeXOAUTH2("alice@example.test", "bad-token")) + `"`)
	if v := challengeJSON(t, c); v["status"] != "400" || v["schemes"] != "bearer" {
		t.Errorf("XOAUTH2 challenge %v", v)
	}
	c.cmd(`""`, `NO "Authentication failed."`)

	c.Send(`AUTHENTICATE "OAUTHBEARER" ` + lit(b64(auth.EncodeOAUTHBEARER("bob@example.test", goodToken))))
	if v := challengeJSON(t, c); v["status"] != "invalid_token" || v["openid-configuration"] == "" {
		t.Errorf("OAUTHBEARER challenge %v", v)
	}
	c.cmd(`"AQ=="`, `NO "Authentication failed."`)
	c.cmd("NOOP", `OK "NOOP completed."`)
}

// TestNoDummyReply: a client that never answers the error challenge (PHP's
// Net_Sieve) gets the refusal within seconds, and the connection goes on.
func TestNoDummyReply(t *testing.T) {
	t.Parallel()
	tf, _ := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.Send(`AUTHENTICATE "XOAUTH2" "` + b64(auth.EncodeXOAUTH2("alice@example.test", "bad-token")) + `"`)
	challengeJSON(t, c)
	start := time.Now()
	c.expect(`NO "Authentication failed."`)
	if d := time.Since(start); d < 4*time.Second || d > 8*time.Second {
		t.Errorf("refusal after %v, want about 5 s", d)
	}
	c.cmd("NOOP", `OK "NOOP completed."`)
}

func TestCancel(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.Send(`AUTHENTICATE "XOAUTH2"`)
	c.ReadLine()
	c.cmd(`"*"`, `NO "Authentication canceled."`)
	c.cmd(`AUTHENTICATE "OAUTHBEARER" "*"`, `NO "Authentication canceled."`)
	c.Send(`AUTHENTICATE "XOAUTH2"`)
	c.ReadLine()
	c.cmd(lit("*"), `NO "Authentication canceled."`)
	c.cmd("NOOP", `OK "NOOP completed."`)
	if n := tf.auth.calls.Load(); n != 0 {
		t.Errorf("authenticator called %d times", n)
	}
}

func TestMalformedAndUnsupported(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{Limits: proxy.Limits{MaxErrors: 100}})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	for _, tt := range []struct{ in, want string }{
		{`AUTHENTICATE "XOAUTH2" "not base64!"`, `NO "Invalid SASL message."`},
		{`AUTHENTICATE "XOAUTH2" "` + b64([]byte("garbage")) + `"`, `NO "Invalid SASL message."`},
		{`AUTHENTICATE "XOAUTH2"` + "\r\n" + `"a" "b"`, `NO "Invalid SASL message."`},
		{`AUTHENTICATE "XOAUTH2"` + "\r\n" + `"unterminated`, `NO "Invalid SASL message."`},
		{`AUTHENTICATE "CRAM-MD5"`, `NO "Unsupported SASL mechanism."`},
		{`AUTHENTICATE "PLAIN" "` + b64([]byte("\x00alice@example.test\x00alice-password")) + `"`, `NO "Unsupported SASL mechanism."`},
	} {
		c.Send(tt.in)
		if strings.Contains(tt.in, "\r\n") {
			if l := c.ReadLine(); l != `""` { // the empty challenge
				t.Fatalf("%q: challenge %q", tt.in, l)
			}
		}
		c.expect(tt.want)
	}
}

func TestAuthenticateBeforeTLS(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", goodToken))+`"`, strings.TrimSuffix(replyEncryptNeeded, "\r\n"))
	c.starttls(tf.clientTLS)
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", goodToken))+`"`, `OK "Logged in."`)
	if n := tf.auth.calls.Load(); n != 1 {
		t.Errorf("authenticator called %d times, want once (after TLS)", n)
	}
}

// TestStartTLSInjection: commands pipelined behind STARTTLS in plaintext
// are discarded, not run over TLS.
func TestStartTLSInjection(t *testing.T) {
	tf, fb := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	injected := `AUTHENTICATE "XOAUTH2" "` + b64(auth.EncodeXOAUTH2("alice@example.test", goodToken)) + `"` + "\r\nLISTSCRIPTS\r\n"
	c.Write("STARTTLS\r\n" + injected)
	c.expect(`OK "Begin TLS negotiation now."`)
	c.handshake(tf.clientTLS)
	c.expect(`OK "TLS negotiation successful."`)
	c.cmd("NOOP", `OK "NOOP completed."`)
	if n := tf.auth.calls.Load(); n != 0 {
		t.Errorf("the injected AUTHENTICATE ran (%d authenticator calls)", n)
	}
	if _, logins := fb.snapshot(); len(logins) != 0 {
		t.Errorf("backend logins %q", logins)
	}
	if !strings.Contains(tf.logs.String(), "plaintext pipelined after STARTTLS discarded") {
		t.Errorf("no warning in the log")
	}
}

func TestAuthFailureLimit(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	for i := 1; i <= 3; i++ {
		c.Send(fmt.Sprintf(`AUTHENTICATE "XOAUTH2" "%s"`, b64(auth.EncodeXOAUTH2("alice@example.test", "bad"))))
		challengeJSON(t, c)
		c.cmd(`""`, `NO "Authentication failed."`)
	}
	c.expect(strings.TrimSuffix(replyTooManyAuth, "\r\n"))
	c.expectClosed()
}

func TestTemporaryFailures(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{Limits: proxy.Limits{MaxConnections: 1}})
	temp := strings.TrimSuffix(replyTempFail, "\r\n")
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", downToken))+`"`, temp)

	first := tf.loggedIn(t) // takes the only seat
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", goodToken))+`"`,
		`NO (TRYLATER) "Too many sessions, try again later."`)
	first.cmd("LOGOUT", `OK "Logout completed."`)

	down := newTestFront(t, proxy.Options{}, Options{Backend: proxy.Backend{Address: proxytest.ClosedAddr(t)}})
	c = dial(t, "", down.addr)
	c.greeted()
	c.starttls(down.clientTLS)
	c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("alice@example.test", goodToken))+`"`, temp)
}

// TestPipelinedAfterAuthenticate: commands the client sent right behind
// AUTHENTICATE reach the backend after the login.
func TestPipelinedAfterAuthenticate(t *testing.T) {
	tf, _ := setupFake(t, proxy.Options{})
	c := dial(t, "", tf.addr)
	c.greeted()
	c.starttls(tf.clientTLS)
	c.Write(`AUTHENTICATE "XOAUTH2" "` + b64(auth.EncodeXOAUTH2("alice@example.test", goodToken)) + "\"\r\nLISTSCRIPTS\r\nLOGOUT\r\n")
	c.expect(`OK "Logged in."`)
	c.expect(`OK "Listscripts completed."`)
	c.expect(`OK "Logout completed."`)
	c.expectClosed()
}
