package apppass_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

// newKey returns a random key.
func newKey(t testing.TB) apppass.Key {
	t.Helper()
	b := make([]byte, apppass.KeySize)
	rand.Read(b)
	k, err := apppass.NewKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testKeyring returns a keyring of one random key.
func testKeyring(t testing.TB, older ...apppass.Key) *apppass.Keyring {
	t.Helper()
	kr, err := apppass.NewKeyring(newKey(t), older...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// The refresh token round-trips, revalidation is scheduled by its time,
// a suspension stops the user's app passwords until the next sign-in.
func TestProviderLink(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Hasher: fastHasher, Now: clk.Now, Keys: testKeyring(t)})
		const u = "alice@example.test"
		pw, _ := mustCreate(t, s, u, "phone", nil, 0)
		if _, err := s.RefreshToken(tctx(t), u); !errors.Is(err, apppass.ErrNoLink) {
			t.Errorf("RefreshToken before a link = %v, want ErrNoLink", err)
		}
		if err := s.Suspend(tctx(t), u, "x"); !errors.Is(err, apppass.ErrNoLink) {
			t.Errorf("Suspend before a link = %v, want ErrNoLink", err)
		}
		linked := clk.Now()
		if err := s.SetRefreshToken(tctx(t), "Alice@example.test", "rt-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetRefreshToken(tctx(t), "bob@example.test", "rt-bob"); err != nil {
			t.Fatal(err)
		}
		if tok, err := s.RefreshToken(tctx(t), u); err != nil || tok != "rt-1" {
			t.Fatalf("RefreshToken = %q, %v", tok, err)
		}

		clk.Add(time.Hour)
		if err := s.MarkRevalidated(tctx(t), "bob@example.test", ""); err != nil {
			t.Fatal(err)
		}
		due, err := s.DueForRevalidation(tctx(t), clk.Now().Add(-30*time.Minute), 0)
		if err != nil || !slices.Equal(due, []string{u}) {
			t.Fatalf("DueForRevalidation = %v, %v; want only alice (bob was revalidated)", due, err)
		}
		clk.Add(time.Minute)
		if err := s.MarkRevalidated(tctx(t), u, "rt-2"); err != nil { // rotated by the provider
			t.Fatal(err)
		}
		if tok, err := s.RefreshToken(tctx(t), u); err != nil || tok != "rt-2" {
			t.Errorf("RefreshToken after rotation = %q, %v", tok, err)
		}
		st, err := s.LinkStatus(tctx(t), u)
		if err != nil || !st.Linked.Equal(linked) || !st.Revalidated.Equal(clk.Now()) || !st.Suspended.IsZero() || st.KeyID == "" {
			t.Errorf("LinkStatus = %+v, %v", st, err)
		}

		suspendedAt := clk.Now()
		if err := s.Suspend(tctx(t), u, "invalid_grant:\n token revoked"); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
		if err := s.Suspend(tctx(t), u, "second"); err != nil {
			t.Fatal(err)
		}
		st, _ = s.LinkStatus(tctx(t), u)
		if !st.Suspended.Equal(suspendedAt) || st.Reason != "invalid_grant: token revoked" {
			t.Errorf("suspended LinkStatus = %+v; want the first time and reason, on one line", st)
		}
		_, err = s.Verify(tctx(t), u, pw, apppass.IMAP, "")
		if !isRefusal(err, apppass.ErrSuspended, "invalid_grant") || apppass.Outcome(err) != "suspended" {
			t.Errorf("Verify while suspended = %v", err)
		}
		if due, _ := s.DueForRevalidation(tctx(t), clk.Now().Add(time.Hour), 10); slices.Contains(due, u) {
			t.Errorf("a suspended user is due for revalidation: %v", due)
		}
		if err := s.MarkRevalidated(tctx(t), u, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(tctx(t), u, pw, apppass.IMAP, ""); !errors.Is(err, apppass.ErrSuspended) {
			t.Errorf("MarkRevalidated lifted a suspension: %v", err)
		}
		if err := s.SetRefreshToken(tctx(t), u, "rt-3"); err != nil { // the user signs in again
			t.Fatal(err)
		}
		if _, err := s.Verify(tctx(t), u, pw, apppass.IMAP, ""); err != nil {
			t.Errorf("Verify after a new sign-in = %v", err)
		}
	})
}

// A token does not open with another key, nor under another user's name;
// after a rotation the old key still opens it until Rekey re-seals it.
func TestRefreshTokenKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		url := b.newURL(t)
		oldKey, newK := newKey(t), newKey(t)
		oldRing, _ := apppass.NewKeyring(oldKey)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher, Keys: oldRing})
		for _, u := range []string{"alice@example.test", "bob@example.test"} {
			if err := s.SetRefreshToken(tctx(t), u, "rt-"+u); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()

		wrong := openStore(t, url, apppass.Options{Keys: testKeyring(t)})
		if _, err := wrong.RefreshToken(tctx(t), "alice@example.test"); !errors.Is(err, apppass.ErrKey) {
			t.Errorf("RefreshToken with another key = %v, want ErrKey", err)
		}
		noKey := openStore(t, url, apppass.Options{})
		if _, err := noKey.RefreshToken(tctx(t), "alice@example.test"); !errors.Is(err, apppass.ErrNoKey) {
			t.Errorf("RefreshToken without keys = %v, want ErrNoKey", err)
		}

		// Alice's sealed token copied into Bob's row does not open as Bob's.
		raw := b.raw(t, url)
		if _, err := raw.ExecContext(tctx(t), `UPDATE provider_links SET refresh_token =
			(SELECT refresh_token FROM provider_links WHERE username = 'alice@example.test') WHERE username = 'bob@example.test'`); err != nil {
			t.Fatal(err)
		}
		rotated, _ := apppass.NewKeyring(newK, oldKey)
		s2 := openStore(t, url, apppass.Options{Keys: rotated})
		if _, err := s2.RefreshToken(tctx(t), "bob@example.test"); !errors.Is(err, apppass.ErrKey) {
			t.Errorf("a token moved to another user = %v, want ErrKey", err)
		}
		if tok, err := s2.RefreshToken(tctx(t), "alice@example.test"); err != nil || tok != "rt-alice@example.test" {
			t.Errorf("RefreshToken with the old key in the ring = %q, %v", tok, err)
		}
		n, err := s2.Rekey(tctx(t))
		if n != 1 || !errors.Is(err, apppass.ErrKey) || !strings.Contains(err.Error(), "bob@example.test") {
			t.Errorf("Rekey = %d, %v; want 1 and bob's failure", n, err)
		}
		newOnly, _ := apppass.NewKeyring(newK)
		s3 := openStore(t, url, apppass.Options{Keys: newOnly})
		if tok, err := s3.RefreshToken(tctx(t), "alice@example.test"); err != nil || tok != "rt-alice@example.test" {
			t.Errorf("RefreshToken after Rekey with the new key only = %q, %v", tok, err)
		}
		if st, _ := s3.LinkStatus(tctx(t), "alice@example.test"); st.KeyID != newK.ID() {
			t.Errorf("key id %q, want %q", st.KeyID, newK.ID())
		}
	})
}

// Key files come in three forms; a key never shows in any output.
func TestKeyFile(t *testing.T) {
	secret := bytes.Repeat([]byte{0xa5}, apppass.KeySize)
	want, err := apppass.NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		file []byte
		ok   bool
	}{
		{"raw", secret, true},
		{"hex", []byte(hex.EncodeToString(secret) + "\n"), true},
		{"base64", []byte(" " + base64.StdEncoding.EncodeToString(secret) + "\r\n"), true},
		{"short raw", secret[:31], false},
		{"short hex", []byte(hex.EncodeToString(secret[:31])), false},
		{"128-bit hex without newline", []byte(hex.EncodeToString(secret[:16])), false}, // 32 printable bytes are no raw key
		{"empty", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := apppass.ParseKeyFile(tt.file)
			if tt.ok != (err == nil) || (tt.ok && k.ID() != want.ID()) {
				t.Fatalf("ParseKeyFile = %v, %v", k, err)
			}
			if err != nil && strings.Contains(err.Error(), "a5a5") {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
	if len(want.ID()) != 16 {
		t.Errorf("key id %q", want.ID())
	}
	ring, err := apppass.NewKeyring(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d", "%T", "%p"} {
		out := fmt.Sprintf(verb, want) + fmt.Sprintf(verb, []apppass.Key{want}) + fmt.Sprintf(verb, struct{ K apppass.Key }{want}) +
			fmt.Sprintf(verb, struct{ k apppass.Key }{want}) + fmt.Sprintf(verb, &struct{ k apppass.Key }{want}) +
			fmt.Sprintf(verb, ring) + fmt.Sprintf(verb, struct{ r *apppass.Keyring }{ring}) + fmt.Sprintf(verb, &struct{ r apppass.Keyring }{*ring})
		if strings.Contains(strings.ToLower(out), "a5a5") || strings.Contains(out, "165 165") ||
			(verb != "%T" && verb != "%p" && !strings.Contains(fmt.Sprintf(verb, want), want.ID())) {
			t.Errorf("%s shows %q", verb, out)
		}
	}
	if _, err := apppass.NewKeyring(apppass.Key{}); err == nil {
		t.Error("a keyring with the zero Key was accepted")
	}
}
