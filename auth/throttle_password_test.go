package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// canceled is a context that has ended: Begin and Check return at once
// with ErrThrottled whenever they would have to wait, so a test can tell
// "no delay" from "a delay" without sleeping.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestSecurityJunkTokensForUserDoNotSlowTheUser: failing token attempts
// naming bob, from one address or from many, are charged to those
// addresses only; bob's own logins from elsewhere, with a token or a
// password, are not delayed. Before, they were charged to bob too, and
// anyone could hold bob's logins at the 15 s maximum delay.
func TestSecurityJunkTokensForUserDoNotSlowTheUser(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 3, BlockAfter: 10, Now: clock.Now, Logger: discardLogger()})
	next := AuthenticatorFunc(func(_ context.Context, c Credentials) (Identity, error) {
		if c.Token == "bobs-real-token" {
			return Identity{User: "bob@example.test", Source: SourceJWT}, nil
		}
		return Identity{}, fmt.Errorf("%w: junk", ErrInvalidCredentials)
	})
	a := Throttled{Next: next, T: th}
	ctx := context.Background()
	const bob = "bob@example.test"

	// A botnet: 100 addresses, 3 junk tokens each (within every address's
	// free allowance, so nothing waits), all naming bob.
	for i := range 100 {
		for range 3 {
			_, err := a.Authenticate(ctx, Credentials{Mechanism: MechXOAUTH2, User: bob, Token: "junk", RemoteAddr: fmt.Sprintf("198.51.100.%d:4000", i)})
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("junk token: %v", err)
			}
		}
	}
	// One address until it is blocked.
	for range 10 {
		th.Failure("203.0.113.66", "") // what Throttled records for a junk token
	}
	if _, err := a.Authenticate(ctx, Credentials{Mechanism: MechXOAUTH2, User: bob, Token: "junk", RemoteAddr: "203.0.113.66:1"}); !errors.Is(err, ErrBlocked) {
		t.Fatalf("the attacking address: %v, want ErrBlocked", err)
	}

	if d, until := th.Delay("192.0.2.10", bob); d != 0 || !until.IsZero() {
		t.Fatalf("bob from his own address: delay %v, blocked until %v", d, until)
	}
	id, err := a.Authenticate(canceled(), Credentials{Mechanism: MechXOAUTH2, User: bob, Token: "bobs-real-token", RemoteAddr: "192.0.2.10:5000"})
	if err != nil || id.User != bob {
		t.Fatalf("bob's token login waited or failed: %+v, %v", id, err)
	}
	done, err := th.Begin(canceled(), "192.0.2.10:5001", bob)
	if err != nil {
		t.Fatalf("bob's password login waited or failed: %v", err)
	}
	done(AttemptSucceeded)
	if _, ok := th.entries[userKeyOf(bob)]; ok {
		t.Error("token failures were charged to the claimed user")
	}
}

// Two password attempts for one user: the second waits until the first's
// done, then sees its outcome.
func TestThrottleBeginSerialisesPerUser(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 5, Now: clock.Now, Logger: discardLogger()})
	waiting := make(chan string, 4)
	th.testHookWaitTurn = func(key string) { waiting <- key }
	ctx := context.Background()

	done1, err := th.Begin(ctx, "192.0.2.1:1", "bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		done func(Outcome)
		err  error
	}
	second := make(chan result, 1)
	go func() {
		d, err := th.Begin(ctx, "192.0.2.2:1", "Bob@Example.test") // same user, another address
		second <- result{d, err}
	}()
	if key := <-waiting; key != "user:bob@example.test" {
		t.Fatalf("waiting for %q", key)
	}
	// An attempt for another user does not wait.
	doneAlice, err := th.Begin(canceled(), "192.0.2.2:2", "alice@example.test")
	if err != nil {
		t.Fatalf("another user: %v", err)
	}
	doneAlice(AttemptUndecided)
	// A third attempt for bob whose client gives up while waiting holds nothing.
	ctx3, cancel3 := context.WithCancel(ctx)
	third := make(chan error, 1)
	go func() {
		_, err := th.Begin(ctx3, "192.0.2.3:1", "bob@example.test")
		third <- err
	}()
	<-waiting
	cancel3()
	if err := <-third; !errors.Is(err, ErrThrottled) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrBlocked) {
		t.Fatalf("canceled while waiting: %v", err)
	}
	select {
	case r := <-second:
		t.Fatalf("second attempt ran while the first was in flight: %v", r.err)
	default:
	}

	done1(AttemptFailed)
	r := <-second
	if r.err != nil {
		t.Fatalf("second attempt: %v", r.err)
	}
	if got := th.entries["user:bob@example.test"]; got == nil || got.score != 1 {
		t.Fatalf("the first attempt's failure was not recorded before the second ran: %+v", got)
	}
	if n := th.turnsLen(); n != 1 {
		t.Errorf("%d users in the turn table, want 1 (bob's second attempt)", n)
	}
	r.done(AttemptUndecided)
	r.done(AttemptFailed) // a second call does nothing
	if n := th.turnsLen(); n != 0 {
		t.Errorf("%d users in the turn table after every attempt ended", n)
	}
	if got := th.entries["user:bob@example.test"]; got.score != 1 {
		t.Errorf("bob's score %v, want 1 (undecided and repeated done count for nothing)", got.score)
	}
	done3, err := th.Begin(canceled(), "192.0.2.4:1", "bob@example.test")
	if err != nil {
		t.Fatalf("after the others ended: %v", err)
	}
	done3(AttemptUndecided)
}

func TestThrottleBeginOutcomes(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 3, BlockAfter: 6, Now: clock.Now, Logger: discardLogger()})
	ctx := canceled() // nothing below may wait
	const ip, user = "192.0.2.1:1", "carol@example.test"
	begin := func(ip, user string) func(Outcome) {
		t.Helper()
		done, err := th.Begin(ctx, ip, user)
		if err != nil {
			t.Fatalf("Begin(%s, %s): %v", ip, user, err)
		}
		return done
	}

	begin(ip, user)(AttemptUndecided)
	if n := th.Len(); n != 0 {
		t.Fatalf("undecided attempt left %d entries", n)
	}
	begin(ip, user)(AttemptFailed)
	begin(ip, user)(AttemptFailed)
	if th.entries["user:"+user].score != 2 || th.entries[ipGroup(ip, 32, 56)].score != 2 {
		t.Fatalf("failures not charged to the address and the user: %v", th.entries)
	}
	begin(ip, user)(AttemptSucceeded)
	if n := th.Len(); n != 0 {
		t.Fatalf("success left %d entries", n)
	}

	// The user's earned delay applies from any address.
	for i := range 3 {
		begin(fmt.Sprintf("198.51.100.%d", i), user)(AttemptFailed)
	}
	if _, err := th.Begin(ctx, "203.0.113.1:1", user); !errors.Is(err, ErrThrottled) || errors.Is(err, ErrBlocked) || !errors.Is(err, context.Canceled) {
		t.Fatalf("delayed user, canceled context: %v", err)
	}
	if n := th.turnsLen(); n != 0 {
		t.Errorf("an abandoned wait holds the user's turn (%d)", n)
	}
	if d, _ := th.Delay("203.0.113.1", ""); d != 0 {
		t.Errorf("the user's delay was charged to a new address: %v", d)
	}

	// A blocked address: ErrBlocked at once, nothing held, nothing charged.
	for range 6 {
		th.Failure("192.0.2.99", "")
	}
	_, err := th.Begin(context.Background(), "192.0.2.99:7", "dave@example.test")
	if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrThrottled) {
		t.Fatalf("blocked address: %v", err)
	}
	if err := th.Check(context.Background(), "192.0.2.99:8", ""); !errors.Is(err, ErrBlocked) {
		t.Errorf("Check, blocked address: %v", err)
	}
	if _, ok := th.entries["user:dave@example.test"]; ok || th.turnsLen() != 0 {
		t.Error("a blocked attempt touched the user")
	}
	// An empty user (malformed attempt) is not serialised but is charged to the address.
	begin("192.0.2.50", "")(AttemptFailed)
	if th.entries["ip:192.0.2.50"] == nil || th.turnsLen() != 0 {
		t.Error("attempt without a user")
	}

	var nilT *Throttle
	done, err := nilT.Begin(context.Background(), ip, user)
	if err != nil || done == nil {
		t.Fatalf("nil Throttle: %v", err)
	}
	done(AttemptFailed)
}

// The turn table holds only users with an attempt in flight.
func TestThrottleBeginBounded(t *testing.T) {
	th := NewThrottle(ThrottleOptions{Failures: 1000, MaxEntries: 50, Logger: discardLogger()})
	var dones []func(Outcome)
	for i := range 200 {
		done, err := th.Begin(context.Background(), "192.0.2.1", fmt.Sprintf("user%d@example.test", i))
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	if n := th.turnsLen(); n != 200 {
		t.Fatalf("%d turns for 200 attempts in flight", n)
	}
	for i, done := range dones {
		done([]Outcome{AttemptFailed, AttemptSucceeded, AttemptUndecided}[i%3])
	}
	if n := th.turnsLen(); n != 0 {
		t.Errorf("%d turns left after every attempt ended", n)
	}
	if n := th.Len(); n > 50 {
		t.Errorf("%d entries, max 50", n)
	}
}

func TestOutcomeString(t *testing.T) {
	if s := fmt.Sprint(AttemptSucceeded, AttemptFailed, AttemptUndecided, Outcome(9)); s != "succeeded failed undecided Outcome(9)" {
		t.Errorf("%q", s)
	}
}
