package apppass_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

// claimers is how many replicas TestClaimRevalidation lets race for one
// user's claim.
const claimers = 8

// Of several replicas claiming a user's revalidation at once, exactly one
// wins, and the user is not due again until before passes the claim.
func TestClaimRevalidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Now: clk.Now, Keys: testKeyring(t)})
		users := []string{"alice@example.test", "bob@example.test", "carol@example.test"}
		for _, u := range users {
			if err := s.SetRefreshToken(tctx(t), u, "rt-"+u); err != nil {
				t.Fatal(err)
			}
		}
		clk.Add(time.Hour)
		before := clk.Now().Add(-30 * time.Minute)
		for _, u := range users {
			claims := make(chan apppass.Claim, claimers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range claimers {
				wg.Go(func() {
					<-start
					c, err := s.ClaimRevalidation(tctx(t), u, before)
					switch {
					case err == nil:
						claims <- c
					case !errors.Is(err, apppass.ErrNotDue):
						t.Errorf("ClaimRevalidation(%s) = %v", u, err)
					}
				})
			}
			close(start)
			wg.Wait()
			close(claims)
			var won []apppass.Claim
			for c := range claims {
				won = append(won, c)
			}
			if len(won) != 1 || won[0].User != u || won[0].Token != "rt-"+u || !won[0].Linked.Equal(clk.Now().Add(-time.Hour)) {
				t.Errorf("%s: %d of %d claims won: %+v; want one", u, len(won), claimers, won)
			}
		}
		if due, err := s.DueForRevalidation(tctx(t), before, 0); err != nil || len(due) != 0 {
			t.Errorf("DueForRevalidation after the claims = %v, %v", due, err)
		}
		if _, err := s.ClaimRevalidation(tctx(t), users[0], before); !errors.Is(err, apppass.ErrNotDue) {
			t.Errorf("ClaimRevalidation of a claimed user = %v, want ErrNotDue", err)
		}
		// A before after now is taken as now: still one claim.
		clk.Add(time.Hour)
		if _, err := s.ClaimRevalidation(tctx(t), users[0], clk.Now().Add(time.Hour)); err != nil {
			t.Errorf("ClaimRevalidation with a later before = %v", err)
		}
		if _, err := s.ClaimRevalidation(tctx(t), users[0], clk.Now().Add(time.Hour)); !errors.Is(err, apppass.ErrNotDue) {
			t.Errorf("second ClaimRevalidation with a later before = %v, want ErrNotDue", err)
		}
		if _, err := s.ClaimRevalidation(tctx(t), "dave@example.test", clk.Now()); !errors.Is(err, apppass.ErrNoLink) {
			t.Errorf("ClaimRevalidation without a link = %v, want ErrNoLink", err)
		}
		if _, err := s.ClaimRevalidation(tctx(t), "not a mailbox", clk.Now()); !errors.Is(err, apppass.ErrBadUser) {
			t.Errorf("ClaimRevalidation of a bad user = %v, want ErrBadUser", err)
		}
	})
}

// Revalidated stores a rotated token; Refused suspends; after a sign-in
// during the refresh, neither changes anything.
func TestClaimOutcomes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		url := b.newURL(t)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher, Now: clk.Now, Keys: testKeyring(t)})
		const u = "alice@example.test"
		pw, _ := mustCreate(t, s, u, "phone", nil, 0)
		if err := s.SetRefreshToken(tctx(t), u, "rt-1"); err != nil {
			t.Fatal(err)
		}
		claim := func() apppass.Claim {
			t.Helper()
			clk.Add(time.Hour)
			c, err := s.ClaimRevalidation(tctx(t), u, clk.Now().Add(-30*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}

		c := claim()
		clk.Add(time.Second) // the refresh takes a while
		if err := s.Revalidated(tctx(t), c, "rt-2"); err != nil {
			t.Fatal(err)
		}
		if tok, err := s.RefreshToken(tctx(t), u); err != nil || tok != "rt-2" {
			t.Errorf("RefreshToken after Revalidated = %q, %v; want the rotated one", tok, err)
		}
		if st, _ := s.LinkStatus(tctx(t), u); !st.Revalidated.Equal(clk.Now()) || !st.Suspended.IsZero() {
			t.Errorf("LinkStatus after Revalidated = %+v", st)
		}
		c = claim()
		if err := s.Revalidated(tctx(t), c, ""); err != nil {
			t.Fatal(err)
		}
		if tok, _ := s.RefreshToken(tctx(t), u); tok != "rt-2" {
			t.Errorf("Revalidated without a new token changed it to %q", tok)
		}

		// The user signs in while a refresh is in flight: the old chain's
		// outcome changes nothing. Also when the sign-in's clock reads the
		// previous sign-in's very microsecond (a replica behind).
		for _, back := range []time.Duration{0, time.Hour} {
			if err := s.SetRefreshToken(tctx(t), u, "rt-old"); err != nil {
				t.Fatal(err)
			}
			c = claim()
			clk.Add(-back)
			if err := s.SetRefreshToken(tctx(t), u, "rt-new"); err != nil {
				t.Fatal(err)
			}
			clk.Add(back)
			if err := s.Revalidated(tctx(t), c, "rt-of-the-old-chain"); !errors.Is(err, apppass.ErrNotDue) {
				t.Errorf("Revalidated after a sign-in (%v back) = %v, want ErrNotDue", back, err)
			}
			if err := s.Refused(tctx(t), c, "invalid_grant"); !errors.Is(err, apppass.ErrNotDue) {
				t.Errorf("Refused after a sign-in (%v back) = %v, want ErrNotDue", back, err)
			}
			if tok, err := s.RefreshToken(tctx(t), u); err != nil || tok != "rt-new" {
				t.Errorf("RefreshToken = %q, %v; want the new sign-in's", tok, err)
			}
			if st, _ := s.LinkStatus(tctx(t), u); !st.Suspended.IsZero() || !st.Linked.After(c.Linked) {
				t.Errorf("LinkStatus after the sign-in = %+v; want unsuspended, linked after %v", st, c.Linked)
			}
			if _, err := s.Verify(tctx(t), u, pw, apppass.IMAP, ""); err != nil {
				t.Errorf("Verify after the sign-in = %v", err)
			}
		}

		// The provider refuses: the user's app passwords stop.
		c = claim()
		if err := s.Refused(tctx(t), c, "invalid_grant:\n token revoked"); err != nil {
			t.Fatal(err)
		}
		_, err := s.Verify(tctx(t), u, pw, apppass.IMAP, "")
		if !isRefusal(err, apppass.ErrSuspended, "invalid_grant: token revoked") {
			t.Errorf("Verify after Refused = %v, want ErrSuspended", err)
		}
		clk.Add(time.Hour)
		if _, err := s.ClaimRevalidation(tctx(t), u, clk.Now()); !errors.Is(err, apppass.ErrNotDue) {
			t.Errorf("ClaimRevalidation of a suspended link = %v, want ErrNotDue", err)
		}
		if err := s.Refused(tctx(t), apppass.Claim{User: u}, "x"); !errors.Is(err, apppass.ErrNotDue) {
			t.Errorf("Refused of a made-up claim = %v, want ErrNotDue", err)
		}

		// A token that does not decrypt: the claim is taken, and can be refused.
		if err := s.SetRefreshToken(tctx(t), u, "rt-4"); err != nil {
			t.Fatal(err)
		}
		other := openStore(t, url, apppass.Options{Now: clk.Now, Keys: testKeyring(t)})
		clk.Add(time.Hour)
		c, err = other.ClaimRevalidation(tctx(t), u, clk.Now())
		if !errors.Is(err, apppass.ErrKey) || c.User != u || c.Token != "" || c.Linked.IsZero() {
			t.Fatalf("ClaimRevalidation with another key = %+v, %v; want the claim and ErrKey", c, err)
		}
		if err := other.Refused(tctx(t), c, "cannot decrypt"); err != nil {
			t.Errorf("Refused of a claim without its token = %v", err)
		}
		noKey := openStore(t, url, apppass.Options{})
		if _, err := noKey.ClaimRevalidation(tctx(t), u, clk.Now()); !errors.Is(err, apppass.ErrNoKey) {
			t.Errorf("ClaimRevalidation without keys = %v, want ErrNoKey", err)
		}
	})
}

// A claim taken with a retry that is never reported lapses after the
// retry, not after a whole interval; one without lapses after the interval.
func TestClaimRetry(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clk := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Now: clk.Now, Keys: testKeyring(t)})
		const user, interval, retry = "alice@example.test", time.Hour, 10 * time.Minute
		if err := s.SetRefreshToken(tctx(t), user, "rt"); err != nil {
			t.Fatal(err)
		}
		claim := func(withRetry bool) error {
			before := clk.Now().Add(-interval)
			if withRetry {
				_, err := s.ClaimRevalidationRetry(tctx(t), user, before, retry)
				return err
			}
			_, err := s.ClaimRevalidation(tctx(t), user, before)
			return err
		}
		clk.Add(2 * interval)
		if err := claim(true); err != nil {
			t.Fatalf("first claim: %v", err)
		}
		if err := claim(true); !errors.Is(err, apppass.ErrNotDue) {
			t.Fatalf("second claim at once: %v, want ErrNotDue", err)
		}
		clk.Add(retry / 2)
		if err := claim(true); !errors.Is(err, apppass.ErrNotDue) {
			t.Fatalf("claim within the retry: %v, want ErrNotDue", err)
		}
		clk.Add(retry/2 + time.Second)
		if err := claim(false); err != nil {
			t.Fatalf("claim after the retry: %v", err)
		}
		clk.Add(interval - time.Second)
		if err := claim(true); !errors.Is(err, apppass.ErrNotDue) {
			t.Fatalf("claim within the interval of a plain claim: %v, want ErrNotDue", err)
		}
		if _, err := s.ClaimRevalidationRetry(tctx(t), user, clk.Now(), 0); err == nil {
			t.Error("a zero retry was accepted")
		}
	})
}
