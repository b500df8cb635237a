package apppass_test

import (
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

// tokenRE is the form of session ids, CSRF tokens, states and verifiers:
// 256 bits of base64url without padding.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$`)

// countRows returns how many rows table has, read behind the store.
func countRows(t *testing.T, b backend, url, table string) int {
	t.Helper()
	var n int
	if err := b.raw(t, url).QueryRowContext(tctx(t), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A session lives until it expires or is ended; ending all of a user's
// leaves the others' alone.
func TestSessions(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Now: clk.Now})
		const u = "alice@example.test"
		id, se, err := s.CreateSession(tctx(t), "Alice@example.test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !tokenRE.MatchString(id) || !tokenRE.MatchString(se.CSRF) || id == se.CSRF || se.User != u ||
			!se.Created.Equal(clk.Now()) || !se.Expires.Equal(clk.Now().Add(time.Hour)) {
			t.Fatalf("CreateSession = %q, %+v", id, se)
		}
		if !se.ValidCSRF(se.CSRF) || se.ValidCSRF("") || se.ValidCSRF(se.CSRF[:42]) || se.ValidCSRF(id) || (apppass.Session{}).ValidCSRF("") {
			t.Error("ValidCSRF accepts the wrong token or refuses the right one")
		}
		got, err := s.Session(tctx(t), id)
		if err != nil || got != se {
			t.Fatalf("Session = %+v, %v; want %+v", got, err, se)
		}
		id2, _, err := s.CreateSession(tctx(t), u, time.Hour)
		if err != nil || id2 == id {
			t.Fatalf("second CreateSession = %q, %v", id2, err)
		}

		clk.Add(time.Hour - time.Microsecond)
		if _, err := s.Session(tctx(t), id); err != nil {
			t.Errorf("Session a microsecond before it expires = %v", err)
		}
		clk.Add(time.Microsecond)
		if _, err := s.Session(tctx(t), id); !errors.Is(err, apppass.ErrNoSession) {
			t.Errorf("expired Session = %v, want ErrNoSession", err)
		}

		id3, _, _ := s.CreateSession(tctx(t), u, time.Hour)
		if _, err := s.Session(tctx(t), id3); err != nil {
			t.Fatal(err)
		}
		if err := s.EndSession(tctx(t), id3); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(tctx(t), id3); !errors.Is(err, apppass.ErrNoSession) {
			t.Errorf("Session after EndSession = %v, want ErrNoSession", err)
		}
		if err := s.EndSession(tctx(t), id3); err != nil {
			t.Errorf("EndSession of an ended session = %v", err)
		}

		a1, _, _ := s.CreateSession(tctx(t), u, time.Hour)
		a2, _, _ := s.CreateSession(tctx(t), u, 2*time.Hour)
		bob, _, _ := s.CreateSession(tctx(t), "bob@example.test", time.Hour)
		if n, err := s.EndSessions(tctx(t), "ALICE@example.test"); err != nil || n != 2 {
			t.Errorf("EndSessions = %d, %v; want 2 (the expired ones are not counted)", n, err)
		}
		for _, id := range []string{a1, a2} {
			if _, err := s.Session(tctx(t), id); !errors.Is(err, apppass.ErrNoSession) {
				t.Errorf("Session after EndSessions = %v, want ErrNoSession", err)
			}
		}
		if got, err := s.Session(tctx(t), bob); err != nil || got.User != "bob@example.test" {
			t.Errorf("another user's Session after EndSessions = %+v, %v", got, err)
		}
		if n, err := s.EndSessions(tctx(t), u); err != nil || n != 0 {
			t.Errorf("EndSessions again = %d, %v", n, err)
		}

		for _, bad := range []struct {
			user string
			ttl  time.Duration
		}{{"not a mailbox", time.Hour}, {u, 0}, {u, -time.Hour}} {
			if id, _, err := s.CreateSession(tctx(t), bad.user, bad.ttl); err == nil {
				t.Errorf("CreateSession(%q, %v) = %q", bad.user, bad.ttl, id)
			}
		}
		if _, _, err := s.CreateSession(tctx(t), "not a mailbox", time.Hour); !errors.Is(err, apppass.ErrBadUser) {
			t.Errorf("CreateSession of a bad user = %v, want ErrBadUser", err)
		}
		if _, err := s.EndSessions(tctx(t), "not a mailbox"); !errors.Is(err, apppass.ErrBadUser) {
			t.Errorf("EndSessions of a bad user = %v, want ErrBadUser", err)
		}
	})
}

// malformed returns texts that are not tokens, made from the token id.
func malformed(id string) []string {
	// The last character carries two padding bits, zero in a token's
	// (A, E, I...); the next character sets one: the same bytes,
	// non-canonically encoded.
	noncanonical := id[:42] + string(rune(id[42]+1))
	return []string{
		"", "x", id[:42], id + "A", "=" + id[1:], "+" + id[1:], "/" + id[1:], " " + id[1:],
		noncanonical, strings.Repeat("A", 44), id[:42] + "\x00",
	}
}

// A malformed session id or state is refused without a query: even a
// closed store answers ErrNoSession, not a store failure.
func TestMalformedTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := openStore(t, b.newURL(t), apppass.Options{})
		id, _, err := s.CreateSession(tctx(t), "alice@example.test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		in, err := s.BeginSignIn(tctx(t), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		for _, bad := range append(malformed(id), malformed(in.State)...) {
			if _, err := s.Session(tctx(t), bad); !errors.Is(err, apppass.ErrNoSession) || errors.Is(err, auth.ErrUnavailable) {
				t.Errorf("Session(%q) = %v, want ErrNoSession", bad, err)
			}
			if _, err := s.TakeSignIn(tctx(t), bad); !errors.Is(err, apppass.ErrNoSession) || errors.Is(err, auth.ErrUnavailable) {
				t.Errorf("TakeSignIn(%q) = %v, want ErrNoSession", bad, err)
			}
			if err := s.EndSession(tctx(t), bad); err != nil {
				t.Errorf("EndSession(%q) = %v", bad, err)
			}
		}
		if _, err := s.Session(tctx(t), id); !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("Session of a well-formed id on a closed store = %v, want ErrUnavailable", err)
		}
	})
}

// A state works once, within its lifetime; Purge deletes expired
// sessions and sign-ins, and counts only app passwords.
func TestSignIns(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		url := b.newURL(t)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher, Now: clk.Now})
		in, err := s.BeginSignIn(tctx(t), 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !tokenRE.MatchString(in.State) || !tokenRE.MatchString(in.Verifier) || in.State == in.Verifier ||
			!in.Expires.Equal(clk.Now().Add(10*time.Minute)) {
			t.Fatalf("BeginSignIn = %+v", in)
		}
		if v, err := s.TakeSignIn(tctx(t), in.State); err != nil || v != in.Verifier {
			t.Fatalf("TakeSignIn = %q, %v", v, err)
		}
		if _, err := s.TakeSignIn(tctx(t), in.State); !errors.Is(err, apppass.ErrNoSession) {
			t.Errorf("second TakeSignIn = %v, want ErrNoSession", err)
		}
		if _, err := s.BeginSignIn(tctx(t), 0); err == nil {
			t.Error("BeginSignIn with no lifetime succeeded")
		}

		// Two callbacks with one state at once: one gets the verifier.
		in, _ = s.BeginSignIn(tctx(t), 10*time.Minute)
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Go(func() {
				_, err := s.TakeSignIn(tctx(t), in.State)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, apppass.ErrNoSession):
				t.Errorf("concurrent TakeSignIn = %v", err)
			}
		}
		if won != 1 {
			t.Errorf("%d concurrent TakeSignIn calls won, want 1", won)
		}

		expired, _ := s.BeginSignIn(tctx(t), time.Minute)
		clk.Add(time.Minute)
		if _, err := s.TakeSignIn(tctx(t), expired.State); !errors.Is(err, apppass.ErrNoSession) {
			t.Errorf("TakeSignIn of an expired sign-in = %v, want ErrNoSession", err)
		}

		// Purge: expired sessions and sign-ins go, live ones stay.
		s.BeginSignIn(tctx(t), time.Minute)
		live, _ := s.BeginSignIn(tctx(t), time.Hour)
		s.CreateSession(tctx(t), "alice@example.test", time.Minute)
		keep, _, _ := s.CreateSession(tctx(t), "alice@example.test", time.Hour)
		_, rec := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
		if err := s.Revoke(tctx(t), "alice@example.test", rec.ID); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Minute)
		if n, err := s.Purge(tctx(t), clk.Now()); err != nil || n != 1 {
			t.Errorf("Purge = %d, %v; want 1 (the revoked password)", n, err)
		}
		if n, m := countRows(t, b, url, "web_sessions"), countRows(t, b, url, "web_signins"); n != 1 || m != 1 {
			t.Errorf("after Purge: %d sessions, %d sign-ins; want 1 and 1", n, m)
		}
		if _, err := s.Session(tctx(t), keep); err != nil {
			t.Errorf("Purge ended a live session: %v", err)
		}
		if _, err := s.TakeSignIn(tctx(t), live.State); err != nil {
			t.Errorf("Purge deleted a live sign-in: %v", err)
		}

		// BeginSignIn deletes the expired sign-ins, CreateSession the
		// user's expired sessions.
		s.BeginSignIn(tctx(t), time.Minute)
		s.CreateSession(tctx(t), "alice@example.test", time.Minute)
		clk.Add(2 * time.Hour)
		s.BeginSignIn(tctx(t), time.Minute)
		s.CreateSession(tctx(t), "alice@example.test", time.Minute)
		if n, m := countRows(t, b, url, "web_sessions"), countRows(t, b, url, "web_signins"); n != 1 || m != 1 {
			t.Errorf("%d sessions, %d sign-ins; want the new ones only", n, m)
		}
	})
}
