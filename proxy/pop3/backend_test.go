package pop3

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// TestBackendModes: STLS and implicit TLS towards the backend, XCLIENT
// only when configured and offered.
func TestBackendModes(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fb       *fakeBackend
		clientIP string
		want     []string // event prefixes
		warn     bool
	}{
		{"starttls xclient", &fakeBackend{Mode: proxy.TLSStartTLS}, "xclient", []string{"STLS", "XCLIENT ADDR=127.0.0.1 PORT=", "AUTH "}, false},
		{"implicit xclient", &fakeBackend{Mode: proxy.TLSImplicit}, "xclient", []string{"XCLIENT ADDR=127.0.0.1 PORT=", "AUTH "}, false},
		{"xclient not offered", &fakeBackend{Greeting: "+OK Dovecot ready."}, "xclient", []string{"AUTH "}, true},
		{"none", &fakeBackend{}, "none", []string{"AUTH "}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tf := newTestFront(t, proxy.Options{}, Options{Backend: tt.fb.start(t, tt.clientIP)})
			c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
			c.expect("+OK mailgate ready.")
			c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken))
			c.expect("+OK Logged in.")
			c.Send("STAT")
			c.expect("+OK 1 42")
			ev := tt.fb.seen()
			if len(ev) != len(tt.want) {
				t.Fatalf("backend saw %q, want %q...", ev, tt.want)
			}
			for i, p := range tt.want {
				if !strings.HasPrefix(ev[i], p) {
					t.Fatalf("backend saw %q, want %q...", ev, tt.want)
				}
			}
			if w := strings.Contains(tf.logs.String(), "backend does not offer XCLIENT"); w != tt.warn {
				t.Errorf("XCLIENT warning logged: %v, want %v", w, tt.warn)
			}
		})
	}
}

// TestBackendRefusals: what the client hears for each backend refusal of
// the master login, and what is recorded as a configuration problem.
func TestBackendRefusals(t *testing.T) {
	for _, tt := range []struct {
		name, backend, client string
		problem               string // in BackendProblem("pop3"); "" none
		logged                string // in the proxy log
	}{
		{"unknown mailbox", "-ERR [AUTH] Authorization failed", "-ERR [AUTH] Authentication failed.", "", "backend refused the mailbox"},
		{"master refused", "-ERR [AUTH] Authentication failed.", "-ERR [SYS/TEMP] Temporary authentication failure, try again later.",
			"", "master.password"},
		{"plaintext refused 2.3", "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
			"-ERR [SYS/TEMP] Temporary authentication failure, try again later.", "pop3.backend.tls", "pop3.backend.tls"},
		{"plaintext refused 2.4", "-ERR [AUTH] Authentication disallowed on non-secure (SSL/TLS) connections.",
			"-ERR [SYS/TEMP] Temporary authentication failure, try again later.", "pop3.backend.tls", "pop3.backend.tls"},
		{"mailbox in use", "-ERR [IN-USE] Mailbox is locked by another POP3 session.",
			"-ERR [IN-USE] Mailbox is locked by another POP3 session.", "", "result=unavailable"},
		{"temporary", "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.",
			"-ERR [SYS/TEMP] Temporary authentication failure, try again later.", "", "result=unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fakeBackend{Login: func(string, string, string) string { return tt.backend }}
			tf := newFakeFront(t, fb, proxy.Options{})
			c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
			c.expect("+OK mailgate ready.")
			c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken))
			c.expect(tt.client)
			if p := tf.srv.BackendProblem("pop3"); tt.problem == "" && p != "" || !strings.Contains(p, tt.problem) {
				t.Errorf("BackendProblem = %q, want %q", p, tt.problem)
			}
			if !strings.Contains(tf.logs.String(), tt.logged) {
				t.Errorf("log lacks %q", tt.logged)
			}
		})
	}
}

// TestBackendDown: no backend is a temporary failure.
func TestBackendDown(t *testing.T) {
	tf := newTestFront(t, proxy.Options{Limits: proxy.Limits{DialTimeout: time.Second}},
		Options{Backend: proxy.Backend{Address: "127.0.0.1:1"}})
	c := dialTLS(t, tf.tlsAddr, tf.clientTLS)
	c.expect("+OK mailgate ready.")
	c.Send("AUTH XOAUTH2 " + xoauth2("alice@example.test", goodToken))
	c.expect("-ERR [SYS/TEMP] Temporary authentication failure, try again later.")
}

func TestProbe(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fb      *fakeBackend
		master  proxy.Master // the Server's; zero: newTestFront's default
		loginAs string
		problem string // in the *proxy.BackendProblem's Fix; "" no problem
		err     string // another error
	}{
		{"ok", &fakeBackend{Mode: proxy.TLSStartTLS}, proxy.Master{}, "", "", ""},
		{"login", &fakeBackend{Mode: proxy.TLSImplicit}, proxy.Master{}, "alice@example.test", "", ""},
		{"no such mailbox", &fakeBackend{}, proxy.Master{}, "carol@example.test", "", "not a mailbox"},
		{"no SASL before TLS", &fakeBackend{Caps: []string{"STLS", "SASL"}}, proxy.Master{}, "", "pop3.backend.tls", ""},
		{"no SASL line", &fakeBackend{Caps: []string{"USER"}}, proxy.Master{}, "", "pop3.backend.tls", ""},
		{"no PLAIN", &fakeBackend{Caps: []string{"SASL LOGIN"}}, proxy.Master{}, "", "auth_mechanisms", ""},
		{"no XCLIENT", &fakeBackend{Greeting: "+OK Dovecot ready."}, proxy.Master{}, "", "login_trusted_networks", ""},
		{"master refused", &fakeBackend{Login: func(string, string, string) string { return "-ERR [AUTH] Authentication failed." }},
			proxy.Master{}, "alice@example.test", "master.password", ""},
		{"wrong master password", &fakeBackend{}, proxy.Master{User: "mailgate", Password: "not-the-master-password"},
			"alice@example.test", "master.password", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tf := newFakeFront(t, tt.fb, proxy.Options{Master: tt.master})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tf.srv.CheckBackend(ctx, "pop3", tt.loginAs)
			var bp *proxy.BackendProblem
			switch {
			case tt.problem != "":
				if !errors.As(err, &bp) || bp.Suspected || !strings.Contains(bp.Fix, tt.problem) {
					t.Fatalf("CheckBackend() = %v, want a problem naming %q", err, tt.problem)
				}
				if bp.Login != (tt.problem == "master.password") {
					t.Errorf("problem Login = %v: only the master login finds wrong master credentials", bp.Login)
				}
			case tt.err != "":
				if err == nil || errors.As(err, &bp) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("CheckBackend() = %v, want an error with %q", err, tt.err)
				}
			case err != nil:
				t.Fatalf("CheckBackend() = %v", err)
			}
			if tt.loginAs != "" && !slices.Contains(tt.fb.seen(), "AUTH "+tt.loginAs+" mailgate") {
				t.Errorf("backend saw %q, want the master login for %s", tt.fb.seen(), tt.loginAs)
			}
		})
	}
}

// TestProbeWithoutMaster: the probe cannot log in when the Server has no
// master user (proxy.Options.Master), and says which setting is missing.
func TestProbeWithoutMaster(t *testing.T) {
	fb := &fakeBackend{}
	serverTLS, _, _ := testTLS(t)
	srv, err := proxy.New(proxy.Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	f := New(srv, Options{Backend: fb.start(t, "xclient")})
	if err := f.Probe(context.Background(), "alice@example.test"); err == nil || !strings.Contains(err.Error(), "master.user") {
		t.Fatalf("Probe() = %v, want an error naming master.user", err)
	}
	if slices.ContainsFunc(fb.seen(), func(ev string) bool { return strings.HasPrefix(ev, "AUTH ") }) {
		t.Errorf("backend saw %q, want no login attempt without a master user", fb.seen())
	}
	if err := f.Probe(context.Background(), ""); err != nil {
		t.Fatalf("Probe() without a login = %v", err)
	}
}
