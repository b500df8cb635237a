package apppass_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

// passwordForm is the documented form of an app password.
var passwordForm = regexp.MustCompile(`^mgp_[a-z2-7]{16}_[a-z2-7]{32}$`)

// A created password verifies for its user and scope, shows in List with
// its last use, and stops working once revoked; RevokeAll revokes the rest.
func TestCreateListVerifyRevoke(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Hasher: fastHasher, Now: clk.Now})
		pw1, rec1 := mustCreate(t, s, "Alice@Example.test", "phone", []apppass.Protocol{apppass.SMTP, apppass.IMAP, apppass.IMAP}, 0)
		if !passwordForm.MatchString(pw1) || !strings.Contains(pw1, "_"+rec1.ID+"_") {
			t.Fatalf("password %q (id %s) does not have the documented form", pw1, rec1.ID)
		}
		if rec1.User != "alice@example.test" || rec1.Name != "phone" || !slices.Equal(rec1.Protocols, []apppass.Protocol{apppass.IMAP, apppass.SMTP}) ||
			!rec1.Created.Equal(clk.Now()) || !rec1.Expires.IsZero() || !rec1.LastUsed.IsZero() {
			t.Fatalf("record %+v", rec1)
		}
		clk.Add(time.Second)
		pw2, rec2 := mustCreate(t, s, "alice@example.test", "laptop", nil, 0)
		if pw2 == pw1 || rec2.ID == rec1.ID || !slices.Equal(rec2.Protocols, apppass.AllProtocols()) {
			t.Fatalf("second password %q %+v", pw2, rec2)
		}
		mustCreate(t, s, "bob@example.test", "bob's", nil, 0)

		got, err := s.Verify(tctx(t), "alice@example.test", pw1, apppass.IMAP, "192.0.2.7:40123")
		if err != nil {
			t.Fatalf("Verify = %v", err)
		}
		if got.ID != rec1.ID || got.User != "alice@example.test" || !got.LastUsed.Equal(clk.Now()) || got.LastAddr != "192.0.2.7" {
			t.Errorf("Verify record %+v", got)
		}
		// Upper case, as a phone keyboard may make it, is the same password.
		if _, err := s.Verify(tctx(t), "ALICE@example.test", strings.ToUpper(pw1), apppass.SMTP, "192.0.2.7"); err != nil {
			t.Errorf("Verify upper-case = %v", err)
		}

		list, err := s.List(tctx(t), "alice@example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != rec1.ID || list[1].ID != rec2.ID {
			t.Fatalf("List = %+v", list)
		}
		if list[0].LastAddr != "192.0.2.7" || !list[0].LastUsed.Equal(got.LastUsed) || !list[1].LastUsed.IsZero() || !list[0].Created.Equal(rec1.Created) {
			t.Errorf("List last use: %+v", list)
		}

		if err := s.Revoke(tctx(t), "bob@example.test", rec1.ID); !errors.Is(err, apppass.ErrNotFound) {
			t.Errorf("Revoke of another user's password = %v, want ErrNotFound", err)
		}
		if err := s.Revoke(tctx(t), "alice@example.test", strings.ToUpper(rec1.ID)); err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		if err := s.Revoke(tctx(t), "alice@example.test", rec1.ID); !errors.Is(err, apppass.ErrNotFound) {
			t.Errorf("second Revoke = %v, want ErrNotFound", err)
		}
		_, err = s.Verify(tctx(t), "alice@example.test", pw1, apppass.IMAP, "192.0.2.7")
		if !isRefusal(err, apppass.ErrInvalid, "revoked") {
			t.Errorf("Verify after Revoke = %v", err)
		}
		if n, err := s.RevokeAll(tctx(t), "alice@example.test"); err != nil || n != 1 {
			t.Errorf("RevokeAll = %d, %v; want 1", n, err)
		}
		if list, err := s.List(tctx(t), "alice@example.test"); err != nil || len(list) != 0 {
			t.Errorf("List after RevokeAll = %+v, %v", list, err)
		}
		if list, err := s.List(tctx(t), "bob@example.test"); err != nil || len(list) != 1 {
			t.Errorf("bob's List = %+v, %v", list, err)
		}
		if _, err := s.List(tctx(t), "not a mailbox"); !errors.Is(err, apppass.ErrBadUser) {
			t.Errorf("List of a bad user = %v", err)
		}
	})
}

// isRefusal reports whether err is a *Refusal of kind whose reason
// contains reason, wrapping auth.ErrInvalidCredentials.
func isRefusal(err, kind error, reason string) bool {
	var r *apppass.Refusal
	return errors.As(err, &r) && errors.Is(err, kind) && errors.Is(err, auth.ErrInvalidCredentials) &&
		strings.Contains(r.Reason, reason) && !errors.Is(err, auth.ErrUnavailable)
}

// Every refusal of a well-formed password costs exactly one hash, says
// why in its Reason only, and is the same error to the client.
func TestVerifyRefusals(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		h := &countingHasher{Hasher: fastHasher}
		url := b.newURL(t)
		// Made under the default policy (every protocol), checked under
		// one without ManageSieve.
		s := openStore(t, url, apppass.Options{Hasher: h, Now: clk.Now, Keys: testKeyring(t)})
		alice, _ := mustCreate(t, s, "alice@example.test", "phone", []apppass.Protocol{apppass.IMAP}, 0)
		bob, _ := mustCreate(t, s, "bob@example.test", "phone", nil, 0)
		expiring, _ := mustCreate(t, s, "alice@example.test", "short", nil, time.Hour)
		revoked, revRec := mustCreate(t, s, "alice@example.test", "old", nil, 0)
		if err := s.Revoke(tctx(t), "alice@example.test", revRec.ID); err != nil {
			t.Fatal(err)
		}
		carol, _ := mustCreate(t, s, "carol@example.test", "phone", nil, 0)
		if err := s.SetRefreshToken(tctx(t), "carol@example.test", "rt-carol"); err != nil {
			t.Fatal(err)
		}
		if err := s.Suspend(tctx(t), "carol@example.test", "invalid_grant"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = openStore(t, url, apppass.Options{Hasher: h, Now: clk.Now,
			Policy: apppass.Policy{Protocols: []apppass.Protocol{apppass.IMAP, apppass.SMTP, apppass.POP3}}})
		clk.Add(2 * time.Hour)
		other := alice[:len(alice)-1] + flip(alice[len(alice)-1])
		unknown := "mgp_" + strings.Repeat("a", 16) + alice[20:]

		for _, tt := range []struct {
			name, user, pw string
			proto          apppass.Protocol
			kind           error
			reason         string
		}{
			{"wrong secret", "alice@example.test", other, apppass.IMAP, apppass.ErrInvalid, "wrong secret"},
			{"unknown id", "alice@example.test", unknown, apppass.IMAP, apppass.ErrInvalid, "unknown id"},
			{"another user's", "alice@example.test", bob, apppass.IMAP, apppass.ErrInvalid, "another user's"},
			{"invalid user name", "alice", alice, apppass.IMAP, apppass.ErrInvalid, "invalid user"},
			{"expired", "alice@example.test", expiring, apppass.IMAP, apppass.ErrInvalid, "expired"},
			{"revoked", "alice@example.test", revoked, apppass.IMAP, apppass.ErrInvalid, "revoked"},
			{"out of scope", "alice@example.test", alice, apppass.SMTP, apppass.ErrProtocol, "scope"},
			{"not in policy", "bob@example.test", bob, apppass.ManageSieve, apppass.ErrProtocol, "policy"},
			{"suspended", "carol@example.test", carol, apppass.IMAP, apppass.ErrSuspended, "invalid_grant"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				before := h.n.Load()
				_, err := s.Verify(tctx(t), tt.user, tt.pw, tt.proto, "192.0.2.1")
				if !isRefusal(err, tt.kind, tt.reason) {
					t.Errorf("Verify = %v; want a refusal %v with reason %q", err, tt.kind, tt.reason)
				}
				if n := h.n.Load() - before; n != 1 {
					t.Errorf("hashes = %d, want exactly 1", n)
				}
				if apppass.Outcome(err) == "ok" || apppass.Outcome(err) == "error" {
					t.Errorf("Outcome = %q", apppass.Outcome(err))
				}
			})
		}
		before := h.n.Load()
		if _, err := s.Verify(tctx(t), "alice@example.test", alice, apppass.IMAP, ""); err != nil {
			t.Errorf("the right password after the refusals: %v", err)
		}
		if n := h.n.Load() - before; n != 1 {
			t.Errorf("hashes of a success = %d, want 1", n)
		}
	})
}

// flip returns another character of the password alphabet.
func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

// Values that do not have the form are ErrNotAppPassword without a hash
// and without the database (the store is closed here).
func TestNotAppPasswordCostsNothing(t *testing.T) {
	h := &countingHasher{Hasher: fastHasher}
	s := openStore(t, "sqlite::memory:", apppass.Options{Hasher: h})
	good, _ := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
	s.Close()
	before := h.n.Load()
	for _, v := range []string{
		"", "hunter2", "mgp_", good[:len(good)-1], good + "a",
		strings.Replace(good, "mgp_", "mgx_", 1),
		good[:20] + "-" + good[21:],      // separator
		good[:10] + "1" + good[11:],      // '1' is not base32
		good[:40] + "é" + good[42:],      // same length, not ASCII
		" " + good[1:], good[:52] + "\n", // white space
	} {
		if _, err := s.Verify(tctx(t), "alice@example.test", v, apppass.IMAP, ""); err != apppass.ErrNotAppPassword {
			t.Errorf("Verify(%q) = %v, want ErrNotAppPassword", v, err)
		}
	}
	if n := h.n.Load() - before; n != 0 {
		t.Errorf("hashes = %d, want 0", n)
	}
	// The closed store fails a well-formed one as an outage.
	if _, err := s.Verify(tctx(t), "alice@example.test", good, apppass.IMAP, ""); !errors.Is(err, auth.ErrUnavailable) ||
		errors.Is(err, auth.ErrInvalidCredentials) || apppass.Outcome(err) != "unavailable" {
		t.Errorf("Verify on a closed store = %v, want ErrUnavailable", err)
	}
}

// Create enforces the policy: scope, expiry, names, users and the
// maximum of usable passwords per user (expired and revoked ones do not
// count).
func TestCreatePolicy(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Hasher: fastHasher, Now: clk.Now, Policy: apppass.Policy{
			MaxPerUser: 3, Protocols: []apppass.Protocol{apppass.IMAP, apppass.SMTP},
			DefaultExpiry: 24 * time.Hour, MaxExpiry: 90 * 24 * time.Hour,
		}})
		const u = "alice@example.test"
		for _, tt := range []struct {
			name, user, label string
			protos            []apppass.Protocol
			expiry            time.Duration
			want              error
		}{
			{"protocol outside the policy", u, "x", []apppass.Protocol{apppass.POP3}, 0, apppass.ErrNotAllowed},
			{"unknown protocol", u, "x", []apppass.Protocol{"gopher"}, 0, apppass.ErrNotAllowed},
			{"expiry beyond the maximum", u, "x", nil, 91 * 24 * time.Hour, apppass.ErrNotAllowed},
			{"negative expiry", u, "x", nil, -time.Hour, apppass.ErrNotAllowed},
			{"empty name", u, " ", nil, 0, apppass.ErrBadName},
			{"control character", u, "a\x1bb", nil, 0, apppass.ErrBadName},
			{"long name", u, strings.Repeat("n", 101), nil, 0, apppass.ErrBadName},
			{"bad user", "alice example.test", "x", nil, 0, apppass.ErrBadUser},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if _, _, err := s.Create(tctx(t), tt.user, tt.label, tt.protos, tt.expiry); !errors.Is(err, tt.want) {
					t.Errorf("Create = %v, want %v", err, tt.want)
				}
			})
		}
		_, short := mustCreate(t, s, u, "short", nil, time.Hour)
		clk.Add(time.Second)
		if !short.Expires.Equal(short.Created.Add(time.Hour)) || !slices.Equal(short.Protocols, []apppass.Protocol{apppass.IMAP, apppass.SMTP}) {
			t.Errorf("record %+v", short)
		}
		_, def := mustCreate(t, s, u, "default", nil, 0)
		clk.Add(time.Second)
		if !def.Expires.Equal(def.Created.Add(24 * time.Hour)) {
			t.Errorf("default expiry: %v", def.Expires)
		}
		_, third := mustCreate(t, s, u, "third", []apppass.Protocol{apppass.SMTP}, 0)
		if _, _, err := s.Create(tctx(t), u, "fourth", nil, 0); !errors.Is(err, apppass.ErrTooMany) {
			t.Fatalf("fourth Create = %v, want ErrTooMany", err)
		}
		mustCreate(t, s, "bob@example.test", "bob's", nil, 0) // other users are not affected
		if err := s.Revoke(tctx(t), u, third.ID); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, s, u, "fourth", nil, 0)
		clk.Add(2 * time.Hour) // "short" expires
		mustCreate(t, s, u, "fifth", nil, 0)
		if _, _, err := s.Create(tctx(t), u, "sixth", nil, 0); !errors.Is(err, apppass.ErrTooMany) {
			t.Errorf("sixth Create = %v, want ErrTooMany", err)
		}
		list, err := s.List(tctx(t), u)
		if err != nil || len(list) != 4 || list[0].ID != short.ID || !list[0].Expired(clk.Now()) || list[1].Expired(clk.Now()) {
			t.Errorf("List = %+v, %v; want the expired one first, then three", list, err)
		}
		if n, err := s.Purge(tctx(t), clk.Now()); err != nil || n != 2 {
			t.Errorf("Purge = %d, %v; want 2 (one expired, one revoked)", n, err)
		}
	})
}

// The last use is written at most once a minute, and always reflects a
// login.
func TestLastUse(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		url := b.newURL(t)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher, Now: clk.Now})
		pw, rec := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
		raw := b.raw(t, url)
		stored := func() (int64, string) {
			t.Helper()
			var us int64
			var ip string
			if err := raw.QueryRowContext(tctx(t), `SELECT last_used_at, last_used_ip FROM app_passwords WHERE id = $1`, rec.ID).Scan(&us, &ip); err != nil {
				t.Fatal(err)
			}
			return us, ip
		}
		verify := func(addr string) apppass.Record {
			t.Helper()
			r, err := s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, addr)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		first := clk.Now()
		verify("[2001:db8::1]:993")
		if us, ip := stored(); us != first.UnixMicro() || ip != "2001:db8::1" {
			t.Fatalf("stored last use %d %q", us, ip)
		}
		clk.Add(30 * time.Second)
		if r := verify("192.0.2.9"); !r.LastUsed.Equal(first) || r.LastAddr != "2001:db8::1" {
			t.Errorf("within a minute the record shows %v %q", r.LastUsed, r.LastAddr)
		}
		if us, _ := stored(); us != first.UnixMicro() {
			t.Errorf("last use rewritten within a minute")
		}
		clk.Add(31 * time.Second)
		verify("::ffff:192.0.2.9")
		if us, ip := stored(); us != clk.Now().UnixMicro() || ip != "192.0.2.9" {
			t.Errorf("after a minute: stored %d %q", us, ip)
		}
	})
}

// Creates racing for the last places: exactly MaxPerUser succeed, the
// others get ErrTooMany, none waits out a lock.
func TestCreateConcurrentLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		const limit, racers = 3, 16
		s := openStore(t, b.newURL(t), apppass.Options{Hasher: fastHasher, Policy: apppass.Policy{MaxPerUser: limit}})
		warmPool(t, s, apppass.DefaultMaxConns)
		errs := make(chan error, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, _, err := s.Create(tctx(t), "alice@example.test", fmt.Sprintf("device %d", i), nil, 0)
				errs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		ok, tooMany := 0, 0
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, apppass.ErrTooMany):
				tooMany++
			default:
				t.Errorf("Create = %v", err)
			}
		}
		if ok != limit || tooMany != racers-limit {
			t.Errorf("%d created, %d ErrTooMany; want %d and %d", ok, tooMany, limit, racers-limit)
		}
		if list, err := s.List(tctx(t), "alice@example.test"); err != nil || len(list) != limit {
			t.Errorf("List = %d records, %v", len(list), err)
		}
	})
}

// warmPool opens n pooled connections (a burst of n Lists), so that a
// race that follows is not staggered by connection set-up.
func warmPool(t *testing.T, s *apppass.Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.List(tctx(t), "warm@example.test"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
