package imap

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// App passwords over IMAP against the fake backend, with a fake store.

const (
	testAppPassword = "mgp_testid_testsecret"
	testAppRefused  = "mgp_testid_wrongsecret"
	testAppOutage   = "mgp_testid_outage"
)

// fakeAppPasswords accepts testAppPassword for FakeUser, refuses other
// values that start with "mgp_" (testAppOutage: the store is down), and
// says any other value is not an app password.
var fakeAppPasswords fakeStore

type fakeStore struct{}

func (fakeStore) IsAppPassword(password string) bool { return strings.HasPrefix(password, "mgp_") }

func (fakeStore) VerifyAppPassword(ctx context.Context, user, password, proto, ip string) (auth.AppPassword, error) {
	switch {
	case proto != "imap":
		return auth.AppPassword{}, fmt.Errorf("proto %q", proto)
	case password == testAppPassword && user == proxytest.FakeUser:
		return auth.AppPassword{ID: "testid", User: proxytest.FakeUser}, nil
	case password == testAppOutage:
		return auth.AppPassword{ID: "testid"}, fmt.Errorf("%w: store down", auth.ErrUnavailable)
	case strings.HasPrefix(password, "mgp_"):
		return auth.AppPassword{ID: "testid"}, fmt.Errorf("%w: wrong secret", auth.ErrInvalidCredentials)
	}
	return auth.AppPassword{}, fmt.Errorf("%w: test", auth.ErrNotAppPassword)
}

// newIMAPAppPasswordTest is newIMAPPasswordTest with app passwords on
// and passthrough as given, throttled by th.
func newIMAPAppPasswordTest(t *testing.T, passthrough bool, th proxy.Throttle) (*testProxy, *proxytest.FakeIMAPBackend) {
	t.Helper()
	tp, fb := newIMAPPasswordTest(t, func(o *proxy.Options, fo *Options) {
		o.Passwords = proxy.PasswordOptions{IMAP: passthrough, Throttle: th}
		o.AppPasswords = proxy.AppPasswordOptions{Verifier: fakeAppPasswords, IMAP: true}
	})
	t.Cleanup(func() {
		if logs := tp.logs.String(); strings.Contains(logs, "testsecret") || strings.Contains(logs, "wrongsecret") {
			t.Errorf("the log shows an app password:\n%s", logs)
		}
	})
	return tp, fb
}

// TestIMAPAppPassword: with passthrough off, PLAIN and LOGIN are offered
// after TLS; an app password logs in as the master user on behalf of the
// user (not with the password), a refusal and an outage get the protocol's
// replies without reaching the backend, and a value that is not an app
// password is refused; each is one throttled attempt, charged to the
// address only unless the backend could check it (passthrough, and not
// shaped like an app password).
func TestIMAPAppPassword(t *testing.T) {
	master := proxytest.FakeUser + "\x00" + proxytest.MasterUser + "\x00" + proxytest.MasterPassword
	for _, tt := range []struct {
		name, login string
		passthrough bool
		reply       string
		backend     []string
		throttle    []string
		logged      string
	}{
		{"valid, LOGIN", fmt.Sprintf("a1 LOGIN %s %s", proxytest.FakeUser, testAppPassword), false,
			"a1 OK [CAPABILITY", []string{master}, []string{"check ", "success "}, "apppass=testid"},
		{"valid, AUTHENTICATE PLAIN", "a1 AUTHENTICATE PLAIN " + proxytest.PlainIR(proxytest.FakeUser, testAppPassword), false,
			"a1 OK [CAPABILITY", []string{master}, []string{"check ", "success "}, "mech=PLAIN apppass=testid"},
		{"refused", fmt.Sprintf("a1 LOGIN %s %s", proxytest.FakeUser, testAppRefused), false,
			"a1 NO [AUTHENTICATIONFAILED] Authentication failed.", nil, []string{"check ", "failure "}, "apppass=testid"},
		{"outage", fmt.Sprintf("a1 LOGIN %s %s", proxytest.FakeUser, testAppOutage), false,
			"a1 NO [UNAVAILABLE]", nil, []string{"check ", "undecided "}, "result=unavailable"},
		{"not an app password, passthrough off", fmt.Sprintf("a1 LOGIN %s %s", proxytest.FakeUser, proxytest.FakeUserPassword), false,
			"a1 NO [AUTHENTICATIONFAILED] Authentication failed.", nil, []string{"check ", "failure "}, "result=invalid"},
		{"refused, passthrough on", fmt.Sprintf("a1 LOGIN %s %s", proxytest.FakeUser, testAppRefused), true,
			"a1 NO [AUTHENTICATIONFAILED] Authentication failed.", nil, []string{"check ", "failure "}, "apppass=testid"},
		{"not an app password, passthrough on", fmt.Sprintf("a1 LOGIN %s %s", proxytest.FakeUser, proxytest.FakeUserPassword), true,
			"a1 OK [CAPABILITY", []string{"\x00" + proxytest.FakeUser + "\x00" + proxytest.FakeUserPassword},
			[]string{"check " + proxytest.FakeUser, "success " + proxytest.FakeUser}, "source=password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := &proxytest.RecordingThrottle{}
			tp, fb := newIMAPAppPasswordTest(t, tt.passthrough, th)
			c := proxytest.DialTLS(t, tp.tlsAddr, tp.clientTLS)
			if g := c.Expect("* OK [CAPABILITY "); !strings.Contains(g, "AUTH=PLAIN AUTH=LOGIN") {
				t.Fatalf("greeting = %q, want PLAIN and LOGIN offered", g)
			}
			c.Send(tt.login)
			if got := c.ReadLine(); !strings.HasPrefix(got, tt.reply) {
				t.Fatalf("reply = %q, want %q...", got, tt.reply)
			}
			if got := fb.BackendLogins(); fmt.Sprint(got) != fmt.Sprint(tt.backend) {
				t.Fatalf("backend logins = %q, want %q", got, tt.backend)
			}
			if got := th.Got(); fmt.Sprint(got) != fmt.Sprint(tt.throttle) {
				t.Fatalf("throttle saw %q, want %q", got, tt.throttle)
			}
			// The login line is written before the reply.
			if logs := tp.logs.String(); !strings.Contains(logs, tt.logged) {
				t.Errorf("log lacks %q:\n%s", tt.logged, logs)
			}
		})
	}
}
