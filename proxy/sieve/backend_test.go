package sieve

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

func TestPasswordPassthrough(t *testing.T) {
	tf, fb := setupFake(t, proxy.Options{Passwords: proxy.PasswordOptions{Sieve: true}})
	login := func(t *testing.T) *tconn {
		c := dial(t, "", tf.addr)
		c.greeted()
		c.starttls(tf.clientTLS)
		return c
	}
	t.Run("PLAIN", func(t *testing.T) {
		c := login(t)
		c.cmd(`AUTHENTICATE "PLAIN" "`+b64([]byte("\x00alice@example.test\x00alice-password"))+`"`, `OK "Logged in."`)
		c.cmd("NOOP", `OK "NOOP completed."`)
	})
	t.Run("LOGIN", func(t *testing.T) {
		c := login(t)
		c.Send(`AUTHENTICATE "LOGIN"`)
		if l := c.ReadLine(); l != `"`+b64([]byte("Username:"))+`"` {
			t.Fatalf("challenge %q", l)
		}
		c.Send(`"` + b64([]byte("alice@example.test")) + `"`)
		c.ReadLine()
		c.cmd(lit(b64([]byte("alice-password"))), `OK "Logged in."`)
	})
	t.Run("refused verbatim", func(t *testing.T) {
		fb.set(func(fb *fakeBackend) { fb.reply = "NO {13}\r\nWrong, sorry." })
		defer fb.set(func(fb *fakeBackend) { fb.reply = "" })
		c := login(t)
		c.cmd(`AUTHENTICATE "PLAIN" "`+b64([]byte("\x00alice@example.test\x00nope"))+`"`, "NO {13}\r\nWrong, sorry.")
	})
	if _, logins := fb.snapshot(); len(logins) != 2 || logins[0] != "/alice@example.test" {
		t.Errorf("backend logins %q, want the user's own", logins)
	}
	if logs := tf.logs.String(); strings.Contains(logs, "alice-password") || strings.Contains(logs, b64([]byte("alice-password"))) {
		t.Errorf("a password in the log")
	}
}

// TestBackendRefusals: the backend's replies to the master login, as the
// client sees them and as the server records them.
func TestBackendRefusals(t *testing.T) {
	temp := strings.TrimSuffix(replyTempFail, "\r\n")
	for _, tt := range []struct {
		name     string
		reply    string // the backend's reply, "" for its own judgement
		sasl     string
		token    string
		want     string
		standing bool // kept for readiness
	}{
		{"no such mailbox", "", "PLAIN LOGIN", noneToken, `NO "Authentication failed."`, false},
		{"master refused", `NO "Authentication failed."`, "PLAIN LOGIN", goodToken, temp, false},
		{"encryption needed", `NO (ENCRYPT-NEEDED) "Authentication disallowed on non-secure (SSL/TLS) connections."`,
			"PLAIN LOGIN", goodToken, temp, true},
		{"plaintext disabled", `NO "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."`,
			"PLAIN LOGIN", goodToken, temp, true},
		{"no SASL offered", "", "", goodToken, temp, true},
		{"no PLAIN", "", "LOGIN", goodToken, temp, true},
		{"trylater", `NO (TRYLATER) "Busy."`, "PLAIN LOGIN", goodToken, temp, false},
		{"bye", `BYE "Shutting down."`, "PLAIN LOGIN", goodToken, temp, false},
		{"challenge", `""`, "PLAIN LOGIN", goodToken, temp, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tf, fb := setupFake(t, proxy.Options{})
			fb.set(func(fb *fakeBackend) { fb.reply, fb.sasl = tt.reply, tt.sasl })
			c := dial(t, "", tf.addr)
			c.greeted()
			c.starttls(tf.clientTLS)
			c.cmd(`AUTHENTICATE "XOAUTH2" "`+b64(auth.EncodeXOAUTH2("", tt.token))+`"`, tt.want)
			if got := tf.srv.BackendProblem(proto) != ""; got != tt.standing {
				t.Errorf("BackendProblem = %q, want a standing problem: %v", tf.srv.BackendProblem(proto), tt.standing)
			}
		})
	}
}

// TestXCLIENTNotOffered: logins work; the missing XCLIENT is warned about.
func TestXCLIENTNotOffered(t *testing.T) {
	tf, fb := setupFake(t, proxy.Options{})
	fb.set(func(fb *fakeBackend) { fb.xclient = false })
	for range 2 {
		c := tf.loggedIn(t)
		c.cmd("LOGOUT", `OK "Logout completed."`)
	}
	if xclients, _ := fb.snapshot(); len(xclients) != 0 {
		t.Errorf("XCLIENT sent though not offered: %q", xclients)
	}
	if n := strings.Count(tf.logs.String(), "sieve backend does not offer XCLIENT"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}

func TestBackendStartTLS(t *testing.T) {
	backendTLS, trust, _ := testTLS(t)
	fb := newFakeBackend(t, backendTLS)
	master := proxy.Master{User: "master", Password: "master-secret"}
	tf := newTestFront(t, proxy.Options{Master: master}, Options{
		Backend: proxy.Backend{Address: fb.addr, TLS: proxy.TLSStartTLS, TLSConfig: trust, ClientIP: "xclient"},
	})
	c := tf.loggedIn(t)
	c.cmd("LISTSCRIPTS", `OK "Listscripts completed."`)
	if err := tf.srv.CheckBackend(context.Background(), proto, "alice@example.test"); err != nil {
		t.Errorf("CheckBackend() = %v", err)
	}
}

func TestProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name    string
		set     func(fb *fakeBackend)
		opts    func(o *Options)
		master  func(m *proxy.Master) // the Server's master user (proxy.Options.Master)
		loginAs string
		problem string // in the *proxy.BackendProblem's What, "" for none
		err     string // in another error
	}{
		{"ok", nil, nil, nil, "", "", ""},
		{"login ok", nil, nil, nil, "alice@example.test", "", ""},
		{"no PLAIN", func(fb *fakeBackend) { fb.sasl = "LOGIN" }, nil, nil, "", "does not offer SASL PLAIN", ""},
		{"no SASL", func(fb *fakeBackend) { fb.sasl = "" }, nil, nil, "", "offers no SASL mechanism", ""},
		{"no XCLIENT", func(fb *fakeBackend) { fb.xclient = false }, nil, nil, "", "does not offer XCLIENT", ""},
		{"no STARTTLS", nil, func(o *Options) { o.Backend.TLS = proxy.TLSStartTLS }, nil, "", "does not offer STARTTLS", ""},
		{"bad client_ip", nil, func(o *Options) { o.Backend.ClientIP = "id" }, nil, "", "settings mailgate cannot use", ""},
		{"wrong master", nil, nil, func(m *proxy.Master) { m.Password = "wrong" }, "alice@example.test", "refused the master login", ""},
		{"not a mailbox", nil, nil, nil, "nobody@example.test", "", "is not a mailbox"},
		{"no master", nil, nil, func(m *proxy.Master) { *m = proxy.Master{} }, "alice@example.test", "", "master.user is not set"},
		{"no master, no login", nil, nil, func(m *proxy.Master) { *m = proxy.Master{} }, "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := newFakeBackend(t, nil)
			if tt.set != nil {
				fb.set(tt.set)
			}
			opts := Options{Backend: proxy.Backend{Address: fb.addr, ClientIP: "xclient"}}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			master := proxy.Master{User: "master", Password: "master-secret"}
			if tt.master != nil {
				tt.master(&master)
			}
			tf := newTestFront(t, proxy.Options{Master: master}, opts)
			err := tf.front.Probe(ctx, tt.loginAs)
			var p *proxy.BackendProblem
			switch {
			case tt.problem == "" && tt.err == "" && err != nil:
				t.Fatalf("Probe() = %v", err)
			case tt.problem != "" && (!errors.As(err, &p) || !strings.Contains(p.What, tt.problem) || p.Suspected || p.Fix == ""):
				t.Fatalf("Probe() = %v, want a problem %q", err, tt.problem)
			case tt.err != "" && (err == nil || errors.As(err, &p) || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Probe() = %v, want an error with %q", err, tt.err)
			}
			if _, logins := fb.snapshot(); err == nil && tt.loginAs != "" && !slices.Equal(logins, []string{tt.loginAs + "/master"}) {
				t.Errorf("backend accepted logins %q, want %s as the Server's master user", logins, tt.loginAs)
			}
		})
	}
}

func TestOptionsCheck(t *testing.T) {
	if err := (Options{Backend: proxy.Backend{Address: "mail:4190", TLS: proxy.TLSStartTLS, ClientIP: "xclient"}}).Check(); err != nil {
		t.Errorf("Check() = %v", err)
	}
	err := Options{Backend: proxy.Backend{TLS: "tls", ClientIP: "id"}}.Check()
	for _, want := range []string{"address required", `tls "tls"`, `client_ip "id"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to say %s", err, want)
		}
	}
}
