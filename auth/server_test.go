package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
)

var _ sasl.Server = (*Server)(nil)

// fakeAuth answers by token: "good" succeeds for alice, "bad" is refused,
// "throttled" is throttled, "down" is unavailable, "weird" is another error.
type fakeAuth struct {
	calls int
	last  Credentials
}

var errWeird = errors.New("something else")

func (f *fakeAuth) Authenticate(_ context.Context, c Credentials) (Identity, error) {
	f.calls++
	f.last = c
	switch c.Token {
	case "good":
		if c.User != "" && c.User != "alice@example.com" {
			return Identity{}, fmt.Errorf("%w: token belongs to another user", ErrInvalidCredentials)
		}
		return Identity{User: "alice@example.com", Source: "fake"}, nil
	case "throttled":
		return Identity{}, fmt.Errorf("slow down: %w", ErrThrottled)
	case "down":
		return Identity{}, fmt.Errorf("%w: HTTP 503", ErrUnavailable)
	case "weird":
		return Identity{}, errWeird
	case "empty-identity":
		return Identity{}, nil
	default:
		return Identity{}, fmt.Errorf("%w: HTTP 401", ErrInvalidCredentials)
	}
}

// step is one call to Next and what it must return.
type step struct {
	resp      []byte // nil = no initial response
	challenge string // exact challenge
	done      bool
	err       error // errors.Is target; nil = no error
}

func TestServerExchanges(t *testing.T) {
	xo := func(user, tok string) []byte { return EncodeXOAUTH2(user, tok) }
	ob := func(authz, tok string) []byte { return EncodeOAUTHBEARER(authz, tok) }
	const xoFail = `{"status":"400","schemes":"bearer","scope":"mail"}`
	const obFail = `{"status":"invalid_token","scope":"mail","openid-configuration":"https://idp.example/.well-known/openid-configuration?a=1&b=2"}`
	tests := []struct {
		name     string
		mech     string
		steps    []step
		wantUser string // identity after the exchange; "" = none
	}{
		{"xoauth2 IR ok", "XOAUTH2", []step{{xo("alice@example.com", "good"), "", true, nil}}, "alice@example.com"},
		{"xoauth2 no IR ok", "xoauth2", []step{{nil, "", false, nil}, {xo("alice@example.com", "good"), "", true, nil}}, "alice@example.com"},
		{"oauthbearer IR ok", "OAUTHBEARER", []step{{ob("alice@example.com", "good"), "", true, nil}}, "alice@example.com"},
		{"oauthbearer no authzid", "OAUTHBEARER", []step{{ob("", "good"), "", true, nil}}, "alice@example.com"},
		{"oauthbearer no IR ok", "OAUTHBEARER", []step{{nil, "", false, nil}, {ob("alice@example.com", "good"), "", true, nil}}, "alice@example.com"},

		{"xoauth2 refused, empty dummy", "XOAUTH2", []step{
			{xo("alice@example.com", "bad"), xoFail, false, nil},
			{[]byte{}, "", true, ErrInvalidCredentials},
		}, ""},
		{"xoauth2 refused, \\x01 dummy", "XOAUTH2", []step{
			{xo("alice@example.com", "bad"), xoFail, false, nil},
			{[]byte{1}, "", true, ErrInvalidCredentials},
		}, ""},
		{"oauthbearer refused, \\x01 dummy", "OAUTHBEARER", []step{
			{ob("alice@example.com", "bad"), obFail, false, nil},
			{[]byte{1}, "", true, ErrInvalidCredentials},
		}, ""},
		{"oauthbearer refused, empty dummy (roundcube)", "OAUTHBEARER", []step{
			{ob("alice@example.com", "bad"), obFail, false, nil},
			{[]byte{}, "", true, ErrInvalidCredentials},
		}, ""},
		{"refused, garbage dummy", "OAUTHBEARER", []step{
			{ob("a", "bad"), obFail, false, nil},
			{[]byte("whatever"), "", true, ErrInvalidCredentials},
		}, ""},
		{"mismatched user", "XOAUTH2", []step{
			{xo("bob@example.com", "good"), xoFail, false, nil},
			{[]byte{}, "", true, ErrInvalidCredentials},
		}, ""},
		{"throttled gets a challenge", "XOAUTH2", []step{
			{xo("a", "throttled"), xoFail, false, nil},
			{[]byte{}, "", true, ErrThrottled},
		}, ""},
		{"unavailable without challenge", "XOAUTH2", []step{{xo("a", "down"), "", true, ErrUnavailable}}, ""},
		{"oauthbearer unavailable without challenge", "OAUTHBEARER", []step{{ob("a", "down"), "", true, ErrUnavailable}}, ""},
		{"other error as is", "OAUTHBEARER", []step{{ob("a", "weird"), "", true, errWeird}}, ""},
		{"malformed IR", "XOAUTH2", []step{{[]byte("garbage"), "", true, ErrMalformed}}, ""},
		{"empty IR", "XOAUTH2", []step{{[]byte{}, "", true, ErrMalformed}}, ""},
		{"malformed after empty challenge", "OAUTHBEARER", []step{{nil, "", false, nil}, {[]byte("\x01"), "", true, ErrMalformed}}, ""},
		{"xoauth2 message to oauthbearer", "OAUTHBEARER", []step{{xo("a", "good"), "", true, ErrMalformed}}, ""},
		{"after success", "XOAUTH2", []step{
			{xo("alice@example.com", "good"), "", true, nil},
			{[]byte{}, "", true, errExchangeDone},
		}, "alice@example.com"},
		{"after failure", "XOAUTH2", []step{
			{xo("a", "bad"), xoFail, false, nil},
			{[]byte{}, "", true, ErrInvalidCredentials},
			{[]byte{}, "", true, errExchangeDone},
		}, ""},
	}
	opts := ChallengeOptions{Scope: "mail", OpenIDConfiguration: "https://idp.example/.well-known/openid-configuration?a=1&b=2"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := &fakeAuth{}
			s, err := NewServer(context.Background(), tt.mech, fa, "192.0.2.1:1234", opts)
			if err != nil {
				t.Fatalf("NewServer: %v", err)
			}
			for i, st := range tt.steps {
				ch, done, err := s.Next(st.resp)
				if string(ch) != st.challenge || done != st.done {
					t.Fatalf("step %d: Next = %q, %v, %v; want %q, %v", i, ch, done, err, st.challenge, st.done)
				}
				if st.err == nil && err != nil || st.err != nil && !errors.Is(err, st.err) {
					t.Fatalf("step %d: err = %v, want %v", i, err, st.err)
				}
				if st.challenge != "" && !json.Valid(ch) {
					t.Fatalf("step %d: challenge is not JSON: %q", i, ch)
				}
				if st.resp == nil && ch == nil {
					t.Fatalf("step %d: nil challenge, want empty non-nil", i)
				}
			}
			id, ok := s.Identity()
			if ok != (tt.wantUser != "") || id.User != tt.wantUser {
				t.Fatalf("Identity = %+v, %v; want user %q", id, ok, tt.wantUser)
			}
			if ok && (id.Mechanism != strings.ToUpper(tt.mech) || id.Source != "fake") {
				t.Errorf("Identity = %+v", id)
			}
			if fa.calls > 1 {
				t.Errorf("Authenticate called %d times", fa.calls)
			}
			if fa.calls == 1 && (fa.last.Mechanism != strings.ToUpper(tt.mech) || fa.last.RemoteAddr != "192.0.2.1:1234") {
				t.Errorf("Credentials = %+v", fa.last)
			}
		})
	}
}

func TestServerCredentials(t *testing.T) {
	fa := &fakeAuth{}
	s, _ := NewServer(context.Background(), MechOAUTHBEARER, fa, "127.0.0.1:5", ChallengeOptions{})
	msg := []byte("n,a=alice@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer good\x01\x01")
	if _, done, err := s.Next(msg); !done || err != nil {
		t.Fatalf("Next = %v, %v", done, err)
	}
	want := Credentials{Mechanism: "OAUTHBEARER", User: "alice@example.com", Token: "good", RemoteAddr: "127.0.0.1:5"}
	if fa.last != want {
		t.Errorf("Credentials = %+v, want %+v", fa.last, want)
	}
}

func TestServerChallengeOmitsEmpty(t *testing.T) {
	for mech, want := range map[string]string{
		MechXOAUTH2:     `{"status":"400","schemes":"bearer"}`,
		MechOAUTHBEARER: `{"status":"invalid_token"}`,
	} {
		s, _ := NewServer(context.Background(), mech, &fakeAuth{}, "", ChallengeOptions{})
		msg := EncodeXOAUTH2("a", "bad")
		if mech == MechOAUTHBEARER {
			msg = EncodeOAUTHBEARER("a", "bad")
		}
		if ch, done, err := s.Next(msg); string(ch) != want || done || err != nil {
			t.Errorf("%s: Next = %q, %v, %v; want %q", mech, ch, done, err, want)
		}
	}
}

// TestServerXOAUTH2Status: the XOAUTH2 error status is Google's "400"
// unless configured otherwise (K-9 Mail retries with a fresh token only on
// "400"); OAUTHBEARER's RFC 7628 status does not change with it.
func TestServerXOAUTH2Status(t *testing.T) {
	for _, tt := range []struct{ status, mech, want string }{
		{"", MechXOAUTH2, `{"status":"400","schemes":"bearer"}`},
		{XOAUTH2Status400, MechXOAUTH2, `{"status":"400","schemes":"bearer"}`},
		{XOAUTH2Status401, MechXOAUTH2, `{"status":"401","schemes":"bearer"}`},
		{XOAUTH2Status401, MechOAUTHBEARER, `{"status":"invalid_token"}`},
	} {
		s, _ := NewServer(context.Background(), tt.mech, &fakeAuth{}, "", ChallengeOptions{XOAUTH2Status: tt.status})
		msg := EncodeXOAUTH2("a", "bad")
		if tt.mech == MechOAUTHBEARER {
			msg = EncodeOAUTHBEARER("a", "bad")
		}
		if ch, done, err := s.Next(msg); string(ch) != tt.want || done || err != nil {
			t.Errorf("%s, status %q: Next = %q, %v, %v; want %q", tt.mech, tt.status, ch, done, err, tt.want)
		}
	}
}

func TestServerEmptyIdentityFailsClosed(t *testing.T) {
	s, _ := NewServer(context.Background(), MechXOAUTH2, &fakeAuth{}, "", ChallengeOptions{})
	_, done, err := s.Next(EncodeXOAUTH2("a", "empty-identity"))
	if !done || err == nil {
		t.Fatalf("Next = %v, %v; want done with error", done, err)
	}
	if _, ok := s.Identity(); ok {
		t.Fatal("Identity ok after an empty identity")
	}
}

func TestServerPassesContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got context.Context
	a := AuthenticatorFunc(func(ctx context.Context, c Credentials) (Identity, error) {
		got = ctx
		return Identity{User: "a"}, nil
	})
	s, _ := NewServer(ctx, MechXOAUTH2, a, "", ChallengeOptions{})
	if _, _, err := s.Next(EncodeXOAUTH2("a", "t")); err != nil {
		t.Fatal(err)
	}
	if got != ctx {
		t.Error("Authenticate did not get the server's context")
	}
}

func TestNewServerErrors(t *testing.T) {
	ctx := context.Background()
	for _, mech := range []string{"PLAIN", "LOGIN", "", "XOAUTH"} {
		if _, err := NewServer(ctx, mech, &fakeAuth{}, "", ChallengeOptions{}); err == nil {
			t.Errorf("NewServer(%q) succeeded", mech)
		}
	}
	if _, err := NewServer(ctx, MechXOAUTH2, nil, "", ChallengeOptions{}); err == nil {
		t.Error("NewServer with nil Authenticator succeeded")
	}
}

func TestChallengeOptionsCheck(t *testing.T) {
	for status, ok := range map[string]bool{"": true, "400": true, "401": true, "403": false, "invalid_token": false} {
		if err := (ChallengeOptions{XOAUTH2Status: status}).Check(); (err == nil) != ok {
			t.Errorf("Check(%q) = %v", status, err)
		}
	}
}
