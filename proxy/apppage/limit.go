package apppage

import (
	"net/netip"
	"time"

	"github.com/mailgate/mailgate/internal/ratelimit"
)

// Sign-ins under way are rows in the store until they complete or expire
// (signInLifetime), and anyone may start one: the page starts at most
// signInRate per second in all (bursts of signInBurst), so that at most
// about signInRate*signInLifetime + signInBurst (6,100) are ever pending,
// and, unless the clients come through a reverse proxy, one client
// network (an IPv4 address, an IPv6 /64) at most one every
// signInEveryPerClient (bursts of signInBurstPerClient), so that it cannot
// take the whole rate from everyone else.
const (
	signInRate           = 10
	signInBurst          = 100
	signInEveryPerClient = 6 * time.Second
	signInBurstPerClient = 10
	clientV4, clientV6   = 32, 64
	signInRatePerClient  = float64(time.Second) / float64(signInEveryPerClient)
)

// signInLimits are the page's two sign-in buckets.
type signInLimits struct {
	all, perClient *ratelimit.Table // perClient nil: clients come through a proxy
}

func newSignInLimits(proxied bool, now func() time.Time) signInLimits {
	l := signInLimits{all: ratelimit.New(signInRate, signInBurst, now)}
	if !proxied {
		l.perClient = ratelimit.New(signInRatePerClient, signInBurstPerClient, now)
	}
	return l
}

// allow takes a sign-in from the client at remote ("ip:port").
func (l signInLimits) allow(remote string) bool {
	if l.perClient != nil {
		ap, _ := netip.ParseAddrPort(remote)
		if !l.perClient.Allow(ratelimit.Network(ap.Addr().Unmap(), clientV4, clientV6)) {
			return false
		}
	}
	return l.all.Allow(netip.Prefix{})
}
