package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Faults and answer shapes of an introspection endpoint (the real one,
// Hydra's, is exercised in hydra_test.go).
func TestIntrospectionValidatorAnswers(t *testing.T) {
	const tok = "opaque-token-abcdef0123456789"
	future := time.Now().Add(time.Hour).Unix()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		aud     []string
		want    error // nil = accepted
		msg     string
		email   string
	}{
		{"active", status(200, `{"active":true,"sub":"a","email":"alice@example.test","client_id":"mailgate"}`), nil, nil, "", "alice@example.test"},
		{"active with exp", status(200, `{"active":true,"email":"a@b","exp":`+itoa(future)+`}`), nil, nil, "", "a@b"},
		{"Hydra ext lifted", status(200, `{"active":true,"sub":"s","ext":{"email":"alice@example.test","sub":"other"}}`), nil, nil, "", "alice@example.test"},
		{"top level wins over ext", status(200, `{"active":true,"email":"top@x","ext":{"email":"ext@x"}}`), nil, nil, "", "top@x"},
		{"aud matches", status(200, `{"active":true,"email":"a@b","aud":["x","mailgate"]}`), []string{"mailgate"}, nil, "", "a@b"},
		{"client_id matches", status(200, `{"active":true,"email":"a@b","aud":"api","client_id":"mailgate"}`), []string{"mailgate"}, nil, "", "a@b"},

		{"inactive", status(200, `{"active":false}`), nil, ErrInvalidCredentials, "token not active", ""},
		{"refresh token", status(200, `{"active":true,"email":"a@b","token_use":"refresh_token"}`), nil, ErrInvalidCredentials, `token_use is "refresh_token"`, ""},
		{"refresh token type", status(200, `{"active":true,"email":"a@b","token_type":"Refresh"}`), nil, ErrInvalidCredentials, `token_type is "Refresh"`, ""},
		{"active but expired", status(200, `{"active":true,"email":"a@b","exp":1000000000}`), nil, ErrInvalidCredentials, "token expired at 2001-09-09T01:46:40Z", ""},
		{"wrong audience", status(200, `{"active":true,"email":"a@b","aud":["other"],"client_id":"web"}`), []string{"mailgate"},
			ErrInvalidCredentials, `wrong audience: audience ["other"] (client_id "web") not in ["mailgate"]`, ""},
		{"ext cannot supply aud", status(200, `{"active":true,"email":"a@b","ext":{"aud":"mailgate"}}`), []string{"mailgate"}, ErrInvalidCredentials, "wrong audience", ""},

		{"no active member", status(200, `{"email":"a@b"}`), nil, ErrUnavailable, `no "active" member`, ""},
		{"active as a string", status(200, `{"active":"true","email":"a@b"}`), nil, ErrUnavailable, `"active" is not a boolean`, ""},
		{"401: our credentials", status(401, `{"error":"invalid_client"}`), nil, ErrUnavailable, "refused mailgate's client credentials", ""},
		{"403", status(403, ""), nil, ErrUnavailable, "refused mailgate's client credentials", ""},
		{"400", status(400, `{"error":"invalid_request"}`), nil, ErrUnavailable, "HTTP 400", ""},
		{"500", status(500, "oops"), nil, ErrUnavailable, "HTTP 500", ""},
		{"invalid JSON", status(200, `{"active":tru`), nil, ErrUnavailable, "invalid JSON", ""},
		{"JSON array", status(200, `[{"active":true}]`), nil, ErrUnavailable, "not a JSON object", ""},
		{"huge body", status(200, `{"active":true,"pad":"`+strings.Repeat("x", maxResponseBody)+`"}`), nil, ErrUnavailable, "larger than", ""},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		},
			nil, ErrUnavailable, "HTTP 307", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			var logs bytes.Buffer
			v := IntrospectionValidator{URL: srv.URL, ClientID: "mailgate", ClientSecret: "s", Audiences: tt.aud,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			c, err := v.Validate(context.Background(), tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if e, _ := c.String("email"); e != tt.email {
					t.Errorf("email = %q, want %q", e, tt.email)
				}
				return
			}
			if !errors.Is(err, tt.want) || c != nil {
				t.Fatalf("Validate = %v, %v; want %v", c, err, tt.want)
			}
			if tt.want == ErrUnavailable && errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("error is both unavailable and invalid: %v", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q lacks %q", err, tt.msg)
			}
			if strings.Contains(err.Error()+logs.String(), tok) {
				t.Errorf("token in the error or the logs")
			}
			if strings.Contains(tt.name, "401") && !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("a 401 from the endpoint was not logged as an error: %q", logs.String())
			}
		})
	}
}

// The request: RFC 7662 form, token_type_hint, and both client
// authentication methods, with characters that need encoding.
func TestIntrospectionRequest(t *testing.T) {
	const (
		tok    = "tok+/=&en"
		id     = "mail gate:1"
		secret = "s3cr%t&:x"
	)
	for _, method := range []string{"", ClientSecretBasic, ClientSecretPost} {
		t.Run("method "+method, func(t *testing.T) {
			var mu sync.Mutex
			var got *http.Request
			var form url.Values
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				r.ParseForm()
				got, form = r, r.PostForm
				w.Write([]byte(`{"active":true,"email":"a@b"}`))
			}))
			defer srv.Close()
			v := IntrospectionValidator{URL: srv.URL, ClientID: id, ClientSecret: secret, AuthMethod: method}
			if _, err := v.Validate(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got.Method != http.MethodPost || got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" ||
				got.Header.Get("Accept") != "application/json" {
				t.Errorf("request %s %q %q", got.Method, got.Header.Get("Content-Type"), got.Header.Get("Accept"))
			}
			if form.Get("token") != tok || form.Get("token_type_hint") != "access_token" {
				t.Errorf("form = %v", form)
			}
			authz := got.Header.Get("Authorization")
			if method == ClientSecretPost {
				if authz != "" || form.Get("client_id") != id || form.Get("client_secret") != secret {
					t.Errorf("post: Authorization %q, form %v", authz, form)
				}
				return
			}
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
			if authz != want || form.Has("client_secret") {
				t.Errorf("basic: Authorization %q, want %q; form %v", authz, want, form)
			}
		})
	}
	if _, err := (IntrospectionValidator{URL: "http://127.0.0.1:1", AuthMethod: "private_key_jwt"}).Validate(context.Background(), "t"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unknown method: %v", err)
	}
	if _, err := (IntrospectionValidator{}).Validate(context.Background(), "t"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no URL: %v", err)
	}
	if _, err := (IntrospectionValidator{URL: "http://127.0.0.1:1"}).Validate(context.Background(), ""); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("empty token: %v", err)
	}
}

func TestIntrospectionSlow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // so that the server notices the client going away
		<-r.Context().Done()
	}))
	defer srv.Close()
	start := time.Now()
	_, err := IntrospectionValidator{URL: srv.URL, Timeout: 100 * time.Millisecond}.Validate(context.Background(), "t")
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
