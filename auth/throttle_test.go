package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestThrottleDelaysThenBlocks(t *testing.T) {
	clock := newFakeClock(time.Now())
	var logs bytes.Buffer
	th := NewThrottle(ThrottleOptions{Failures: 10, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const ip = "192.0.2.7:50000"
	var delays []time.Duration
	for range 29 {
		d, until := th.Delay(ip, "")
		if !until.IsZero() {
			t.Fatalf("blocked after %d failures", len(delays))
		}
		delays = append(delays, d)
		th.Failure(ip, "")
	}
	want := "[0s 0s 0s 0s 0s 0s 0s 0s 0s 0s 1s 2s 4s 8s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s 15s]"
	if got := fmt.Sprint(delays); got != want {
		t.Errorf("delays\n got %s\nwant %s", got, want)
	}
	th.Failure(ip, "") // the 30th within the minute: blocked
	_, until := th.Delay(ip, "")
	if until.Sub(clock.Now()) != DefaultThrottleBlockFor {
		t.Fatalf("block until %v", until)
	}
	err := th.Check(context.Background(), "192.0.2.7:1", "")
	if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "blocked until") {
		t.Errorf("Check while blocked: %v", err)
	}
	if !strings.Contains(logs.String(), "client blocked") || !strings.Contains(logs.String(), "ip_group=ip:192.0.2.7") {
		t.Errorf("no block logged: %q", logs.String())
	}
	th.Success(ip, "") // does not lift a block
	if _, until := th.Delay(ip, ""); until.IsZero() {
		t.Error("Success lifted the block")
	}
	// Other addresses are not affected.
	if d, until := th.Delay("192.0.2.8", ""); d != 0 || !until.IsZero() {
		t.Errorf("another IP: %v %v", d, until)
	}
	// After the block the score has drained (10 per minute for 5 minutes).
	clock.Advance(DefaultThrottleBlockFor)
	if d, until := th.Delay(ip, ""); d != 0 || !until.IsZero() {
		t.Errorf("after the block: %v %v", d, until)
	}
}

// A client failing at the allowed rate is never delayed; a sequential
// client failing faster is held to about that rate.
func TestThrottleDrains(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 10, Now: clock.Now})
	for i := range 100 {
		if d, until := th.Delay("192.0.2.1", ""); d != 0 || !until.IsZero() {
			t.Fatalf("failure %d at 10/min: delay %v until %v", i, d, until)
		}
		th.Failure("192.0.2.1", "")
		clock.Advance(6 * time.Second)
	}
	// Sequential attacker obeying the delays: never blocked, ~10 per minute.
	start, attempts := clock.Now(), 0
	for clock.Now().Sub(start) < 10*time.Minute {
		d, until := th.Delay("192.0.2.2", "")
		if !until.IsZero() {
			t.Fatalf("sequential client blocked after %d attempts", attempts)
		}
		clock.Advance(d + 100*time.Millisecond) // the delay, then the attempt
		th.Failure("192.0.2.2", "")
		attempts++
	}
	if attempts < 90 || attempts > 130 {
		t.Errorf("%d attempts in 10 minutes, want about 100", attempts)
	}
}

func TestThrottleUsersAreDelayedNotBlocked(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 3, Now: clock.Now})
	for i := range 50 { // from 50 addresses, in alice's name
		th.Failure(fmt.Sprintf("198.51.100.%d", i), "Alice@Example.test")
	}
	d, until := th.Delay("203.0.113.9", "alice@example.test ")
	if d != DefaultThrottleMaxDelay || !until.IsZero() {
		t.Errorf("user: delay %v, until %v; want the max delay, no block", d, until)
	}
	if d, _ := th.Delay("203.0.113.9", "bob@example.test"); d != 0 {
		t.Errorf("another user delayed %v", d)
	}
	th.Success("203.0.113.9", "alice@example.test")
	if d, _ := th.Delay("203.0.113.9", "alice@example.test"); d != 0 {
		t.Errorf("after success: delay %v", d)
	}
}

// Addresses are grouped by /32 (IPv4) and /56 (IPv6) by default, so one
// subscriber's /56 is one client; the prefixes can be set.
func TestThrottleIPv6Groups(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 2, Now: clock.Now})
	th.Failure("[2001:db8:1:2::1]:993", "")
	th.Failure("2001:db8:1:3:ffff::7", "")                                              // another /64 of the same /56
	th.Failure("[2001:db8:1:ff:aaaa::1%eth0]:1", "")                                    // and another
	if d, _ := th.Delay("[2001:db8:1:42::99]:5", ""); d != 2*DefaultThrottleBaseDelay { // 3 failures, 2 free
		t.Errorf("same /56: delay %v", d)
	}
	if d, _ := th.Delay("[2001:db8:1:100::1]:5", ""); d != 0 {
		t.Errorf("other /56: delay %v", d)
	}
	if d, _ := th.Delay("192.0.2.1", ""); d != 0 {
		t.Errorf("IPv4: delay %v", d)
	}

	th48 := NewThrottle(ThrottleOptions{Failures: 1, IPv4Prefix: 24, IPv6Prefix: 48, Now: clock.Now})
	th48.Failure("[2001:db8:1:2::1]:993", "")
	th48.Failure("[2001:db8:1:ff00::1]:993", "")
	th48.Failure("192.0.2.1:1", "")
	th48.Failure("192.0.2.200:1", "")
	if d, _ := th48.Delay("2001:db8:1:abcd::1", ""); d != 2*DefaultThrottleBaseDelay { // 2 failures, 1 free
		t.Errorf("/48: delay %v", d)
	}
	if d, _ := th48.Delay("192.0.2.99", ""); d != 2*DefaultThrottleBaseDelay {
		t.Errorf("/24: delay %v", d)
	}

	for _, tt := range []struct {
		in     string
		v4, v6 int
		want   string
	}{
		{"192.0.2.1:143", 32, 56, "ip:192.0.2.1"},
		{"[::ffff:192.0.2.1]:143", 32, 56, "ip:192.0.2.1"},
		{"192.0.2.1", 32, 56, "ip:192.0.2.1"},
		{"192.0.2.1", 24, 56, "ip:192.0.2.0/24"},
		{"[2001:db8::1]:1", 32, 56, "ip:2001:db8::/56"},
		{"[2001:db8:0:ab::1]:1", 32, 56, "ip:2001:db8::/56"},
		{"[2001:db8:0:1ab::1]:1", 32, 56, "ip:2001:db8:0:100::/56"},
		{"[2001:db8::1]:1", 32, 64, "ip:2001:db8::/64"},
		{"[2001:db8::1]:1", 32, 128, "ip:2001:db8::1"},
		{"pipe", 32, 56, "ip:pipe"},
		{"", 32, 56, ""},
	} {
		if got := ipGroup(tt.in, tt.v4, tt.v6); got != tt.want {
			t.Errorf("ipGroup(%q, %d, %d) = %q, want %q", tt.in, tt.v4, tt.v6, got, tt.want)
		}
	}
	if th := NewThrottle(ThrottleOptions{IPv4Prefix: 40, IPv6Prefix: 200}); th.v4 != 32 || th.v6 != 128 {
		t.Errorf("prefixes not clamped: /%d /%d", th.v4, th.v6)
	}
	if th := NewThrottle(ThrottleOptions{}); th.v4 != DefaultIPv4Prefix || th.v6 != DefaultIPv6Prefix {
		t.Errorf("default prefixes /%d /%d", th.v4, th.v6)
	}
}

func TestThrottleCheckWaits(t *testing.T) {
	th := NewThrottle(ThrottleOptions{Failures: 1, BaseDelay: 50 * time.Millisecond})
	th.Failure("192.0.2.1", "")
	th.Failure("192.0.2.1", "")
	start := time.Now()
	if err := th.Check(context.Background(), "192.0.2.1", ""); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("Check returned after %v, want about 100ms", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := th.Check(ctx, "192.0.2.1", ""); !errors.Is(err, ErrThrottled) || !errors.Is(err, context.Canceled) {
		t.Errorf("Check with a canceled context: %v", err)
	}
	off := NewThrottle(ThrottleOptions{Failures: -1})
	off.Failure("192.0.2.1", "u")
	if err := off.Check(ctx, "192.0.2.1", "u"); err != nil || off.Len() != 0 {
		t.Errorf("disabled throttle: %v", err)
	}
}

func TestThrottleBounded(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 1, MaxEntries: 100, Now: clock.Now, Logger: discardLogger()})
	for i := range 1000 {
		th.Failure(fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("user%d", i))
	}
	if n := th.Len(); n > 100 {
		t.Errorf("%d entries, max 100", n)
	}
}

func TestThrottledAuthenticator(t *testing.T) {
	clock := newFakeClock(time.Now())
	th := NewThrottle(ThrottleOptions{Failures: 2, BlockAfter: 4, BaseDelay: time.Millisecond, Now: clock.Now, Logger: discardLogger()})
	var calls int
	next := AuthenticatorFunc(func(ctx context.Context, c Credentials) (Identity, error) {
		calls++
		switch c.Token {
		case "good":
			return Identity{User: "alice@example.test"}, nil
		case "down":
			return Identity{}, fmt.Errorf("%w: 503", ErrUnavailable)
		}
		return Identity{}, fmt.Errorf("%w: bad", ErrInvalidCredentials)
	})
	a := Throttled{Next: next, T: th}
	ctx := context.Background()
	auth := func(ip, tok string) error {
		_, err := a.Authenticate(ctx, Credentials{RemoteAddr: ip, Token: tok})
		return err
	}
	for range 5 {
		auth("192.0.2.1:1", "down") // provider outages count for nothing
	}
	if d, _ := th.Delay("192.0.2.1", ""); d != 0 {
		t.Fatalf("unavailable counted as failure: delay %v", d)
	}
	auth("192.0.2.1:1", "bad")
	auth("192.0.2.1:1", "bad")
	auth("192.0.2.1:1", "good") // resets
	if d, _ := th.Delay("192.0.2.1", ""); d != 0 {
		t.Fatalf("success did not reset: %v", d)
	}
	for range 4 {
		th.Failure("192.0.2.1", "")
	}
	calls = 0
	if err := auth("192.0.2.1:2", "good"); !errors.Is(err, ErrThrottled) || calls != 0 {
		t.Errorf("blocked IP: err %v, calls %d", err, calls)
	}
	if _, err := (Throttled{Next: next}).Authenticate(ctx, Credentials{RemoteAddr: "192.0.2.1:2", Token: "good"}); err != nil {
		t.Errorf("nil Throttle: %v", err)
	}
}
