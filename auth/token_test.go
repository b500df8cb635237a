package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeValidator maps tokens to claims or errors.
type fakeValidator struct {
	claims map[string]Claims
	errs   map[string]error
	calls  int
}

func (f *fakeValidator) Validate(_ context.Context, token string) (Claims, error) {
	f.calls++
	if err, ok := f.errs[token]; ok {
		return nil, err
	}
	if c, ok := f.claims[token]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: unknown token", ErrInvalidCredentials)
}

func TestTokenAuthenticator(t *testing.T) {
	const secretTok = "tok-leaky-0123456789"
	fv := &fakeValidator{
		claims: map[string]Claims{
			"tok-alice":   {"email": "Alice@Example.com", "exp": float64(1700000000)},
			"tok-noemail": {"sub": "x"},
			"tok-noexp":   {"email": "bob@example.com"},
		},
		errs: map[string]error{
			"tok-down":  fmt.Errorf("%w: HTTP 503", ErrUnavailable),
			secretTok:   fmt.Errorf("%w: provider said bad token %s", ErrInvalidCredentials, secretTok),
			"tok-weird": errors.New("plain error"),
		},
	}
	a := TokenAuthenticator{Validator: fv, Source: "userinfo", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tests := []struct {
		name     string
		c        Credentials
		want     error // sentinel; nil = success
		wantUser string
		noCall   bool
	}{
		{"ok with user", Credentials{Mechanism: "XOAUTH2", User: "alice@example.com", Token: "tok-alice"}, nil, "alice@example.com", false},
		{"ok user differs in ASCII case", Credentials{Mechanism: "XOAUTH2", User: "ALICE@example.COM", Token: "tok-alice"}, nil, "alice@example.com", false},
		{"user with spaces", Credentials{Mechanism: "XOAUTH2", User: " alice@example.com ", Token: "tok-alice"}, ErrInvalidCredentials, "", false},
		{"user with U+00A0", Credentials{Mechanism: "XOAUTH2", User: "alice@example.com\u00a0", Token: "tok-alice"}, ErrInvalidCredentials, "", false},
		{"user with U+200B", Credentials{Mechanism: "XOAUTH2", User: "ali\u200bce@example.com", Token: "tok-alice"}, ErrInvalidCredentials, "", false},
		{"user with KELVIN SIGN", Credentials{Mechanism: "XOAUTH2", User: "alice@example.\u212aom", Token: "tok-alice"}, ErrInvalidCredentials, "", false},
		{"ok without user", Credentials{Mechanism: "OAUTHBEARER", Token: "tok-alice"}, nil, "alice@example.com", false},
		{"mismatched user", Credentials{Mechanism: "XOAUTH2", User: "bob@example.com", Token: "tok-alice"}, ErrInvalidCredentials, "", false},
		{"empty token", Credentials{Mechanism: "XOAUTH2", User: "alice@example.com"}, ErrInvalidCredentials, "", true},
		{"refused token", Credentials{Mechanism: "XOAUTH2", Token: "tok-unknown"}, ErrInvalidCredentials, "", false},
		{"policy refusal", Credentials{Mechanism: "XOAUTH2", Token: "tok-noemail"}, ErrInvalidCredentials, "", false},
		{"unavailable", Credentials{Mechanism: "XOAUTH2", Token: "tok-down"}, ErrUnavailable, "", false},
		{"unclassified validator error fails closed", Credentials{Mechanism: "XOAUTH2", Token: "tok-weird"}, ErrUnavailable, "", false},
		{"leaky validator error", Credentials{Mechanism: "XOAUTH2", Token: secretTok}, ErrInvalidCredentials, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fv.calls
			id, err := a.Authenticate(context.Background(), tt.c)
			if (fv.calls == before) != tt.noCall {
				t.Errorf("validator calls = %d, want call: %v", fv.calls-before, !tt.noCall)
			}
			if tt.want != nil {
				if !errors.Is(err, tt.want) || id != (Identity{}) {
					t.Fatalf("Authenticate = %+v, %v; want %v", id, err, tt.want)
				}
				if tt.c.Token != "" && strings.Contains(err.Error(), tt.c.Token) {
					t.Fatalf("error contains the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			want := Identity{User: tt.wantUser, Mechanism: tt.c.Mechanism, Source: "userinfo", Expiry: time.Unix(1700000000, 0)}
			if id != want {
				t.Errorf("Identity = %+v, want %+v", id, want)
			}
		})
	}
	if id, err := a.Authenticate(context.Background(), Credentials{Token: "tok-noexp"}); err != nil || !id.Expiry.IsZero() {
		t.Errorf("no exp: %+v, %v", id, err)
	}
	if _, err := (TokenAuthenticator{}).Authenticate(context.Background(), Credentials{Token: "x"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("nil validator: err = %v", err)
	}
}

// TestNoTokenInLogs runs every outcome through the SASL server, the token
// authenticator and a real userinfo endpoint, logging at debug level, and
// checks the token never shows up in the output.
func TestNoTokenInLogs(t *testing.T) {
	tokens := map[string]string{ // token -> userinfo behaviour
		"tokOKalice0123456789":     `200 {"email":"alice@example.com","exp":1700000000}`,
		"tokREFUSED0123456789":     `401 {"error":"invalid_token"}`,
		"tokDOWN0123456789abc":     `503 down`,
		"tokGARBAGE0123456789":     `200 not json`,
		"tokNOEMAIL0123456789":     `200 {"sub":"1"}`,
		"tokUNSAFE0123456789y":     `200 {"email":"a b"}`,
		"tokSCOPE0123456789zz":     `200 {"email":"alice@example.com","scope":"openid"}`,
		"tokVERIFIED0123456789":    `200 {"email":"alice@example.com","email_verified":false}`,
		"tokOTHERUSER0123456789":   `200 {"email":"bob@example.com"}`,
		"tokOKnoverify0123456789a": `200 {"email":"alice@example.com","email_verified":true,"scope":"mail"}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		spec, ok := tokens[tok]
		if !ok {
			w.WriteHeader(401)
			return
		}
		var code int
		fmt.Sscanf(spec, "%d", &code)
		w.WriteHeader(code)
		io.WriteString(w, spec[4:])
	}))
	defer srv.Close()

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := TokenAuthenticator{
		Validator: UserinfoValidator{URL: srv.URL},
		Logger:    logger,
		Source:    "userinfo",
	}
	strict := a
	strict.Policy = Policy{RequireEmailVerified: true, RequiredScopes: []string{"mail"}}

	for tok := range tokens {
		for _, authn := range []TokenAuthenticator{a, strict} {
			for _, mech := range []string{MechXOAUTH2, MechOAUTHBEARER} {
				for _, user := range []string{"alice@example.com", "", tok} {
					s, err := NewServer(context.Background(), mech, authn, "127.0.0.1:9", ChallengeOptions{})
					if err != nil {
						t.Fatal(err)
					}
					msg := EncodeXOAUTH2(user, tok)
					if mech == MechOAUTHBEARER {
						msg = EncodeOAUTHBEARER(user, tok)
					}
					_, done, err := s.Next(msg)
					if !done {
						_, _, err = s.Next([]byte{1})
					}
					if err != nil && strings.Contains(err.Error(), tok) {
						t.Errorf("error for %s contains the token: %v", tok, err)
					}
				}
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "token refused") || !strings.Contains(out, "token accepted") || !strings.Contains(out, "cannot validate") {
		t.Fatalf("logs lack the expected lines:\n%s", out)
	}
	for tok := range tokens {
		if strings.Contains(out, tok) {
			t.Errorf("log output contains token %s", tok)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "token refused") && !strings.Contains(line, "reason=") {
			t.Errorf("refusal without a reason: %s", line)
		}
	}
}

// TestTokenRefusedLogsConn: the refusal's log line carries the connection
// id the login's own line has (conn=), so the two can be matched.
func TestTokenRefusedLogsConn(t *testing.T) {
	var logs bytes.Buffer
	a := TokenAuthenticator{Validator: &fakeValidator{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	c := Credentials{Mechanism: MechXOAUTH2, User: "alice@example.com", Token: "tok-unknown", RemoteAddr: "192.0.2.1:5", ConnID: "c0ffee"}
	if _, err := a.Authenticate(context.Background(), c); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("Authenticate = %v, want ErrInvalidCredentials", err)
	}
	if out := logs.String(); !strings.Contains(out, "auth: token refused") || !strings.Contains(out, " conn=c0ffee ") {
		t.Errorf("refusal log line lacks conn=c0ffee:\n%s", out)
	}
}
