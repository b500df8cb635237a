package ratelimit

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := New(2, 3, func() time.Time { return now })
	a, b := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	for i := range 3 {
		if !tb.Allow(a) {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	if tb.Allow(a) || !tb.Allow(b) {
		t.Fatal("a's empty bucket let one through, or b's was taken by a")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if !tb.Allow(a) || tb.Allow(a) {
		t.Error("refill is not rate tokens per second")
	}
}

func TestNetwork(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.0/24"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3::1"), Port: 1}, "2001:db8:1::/48"},
		{&net.UnixAddr{Name: "@x"}, "invalid Prefix"},
	} {
		if got := Network(AddrIP(tt.addr), 24, 48).String(); got != tt.want {
			t.Errorf("Network(%v) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}
