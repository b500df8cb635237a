package proxy

import (
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// Session lifetime (Options.Lifetime): the options. The fronts test the
// lifetime of their sessions (proxy/imap, proxy/smtp).

// TestLifetimeOptionsChecked: New refuses an unknown mode and revalidate
// without a Revalidator.
func TestLifetimeOptionsChecked(t *testing.T) {
	serverTLS, _ := proxytest.TLSPair(t)
	for _, tt := range []struct {
		lt      LifetimeOptions
		wantErr bool
	}{
		{LifetimeOptions{}, false},
		{LifetimeOptions{Mode: LifetimeToken}, false},
		{LifetimeOptions{Mode: LifetimeRevalidate, Revalidator: &proxytest.Revalidator{}}, false},
		{LifetimeOptions{Mode: LifetimeRevalidate}, true},
		{LifetimeOptions{Mode: "forever"}, true},
	} {
		_, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Lifetime: tt.lt})
		if (err != nil) != tt.wantErr {
			t.Errorf("New(Lifetime %+v) = %v, want error %v", tt.lt, err, tt.wantErr)
		}
	}
}
