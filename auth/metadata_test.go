package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestFetchMetadataHydra: the real provider's endpoints are read from its
// discovery document.
func TestFetchMetadataHydra(t *testing.T) {
	h := testenv.SharedHydra(t)
	m, err := FetchMetadata(context.Background(), http.DefaultClient, h.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	if m.Issuer != h.Issuer || m.AuthorizationEndpoint != h.AuthURL || m.TokenEndpoint != h.TokenURL || m.JWKSURI != h.JWKSURL {
		t.Errorf("metadata %+v; want issuer %s, auth %s, token %s, jwks %s", m, h.Issuer, h.AuthURL, h.TokenURL, h.JWKSURL)
	}
}

func TestFetchMetadataRefusals(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()
	for _, tt := range []struct {
		name, body string
		mismatch   bool
	}{
		{"garbage", "{not json", false},
		{"other issuer", `{"issuer":"https://evil.example/"}`, true},
		{"trailing slash differs", `{"issuer":"` + srv.URL + `/"}`, true},
	} {
		body = tt.body
		_, err := FetchMetadata(context.Background(), srv.Client(), srv.URL)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, errIssuerMismatch) != tt.mismatch {
			t.Errorf("%s: err = %v; want ErrUnavailable, issuer mismatch %v", tt.name, err, tt.mismatch)
		}
	}
}
