package imap

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// TestProxyProtocol: a header from a trusted network sets the client
// address (as passed on to the backend); from elsewhere no header is parsed.
func TestProxyProtocol(t *testing.T) {
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator:     fakeAuthenticator,
		ProxyProtocolFrom: []string{"127.0.0.1/32"},
	}, Options{Backend: proxy.Backend{Address: fb.Addr, ClientIP: "id"}})
	c := proxytest.DialPlain(t, tp.plainAddr)
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 4711}, c.C.RemoteAddr())
	if _, err := hdr.WriteTo(c.C); err != nil {
		t.Fatal(err)
	}
	c.Expect("* OK")
	c.StartTLS(tp.clientTLS)
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK")
	var id string
	for _, l := range fb.Received() {
		if strings.HasPrefix(l, "mg1 ID ") {
			id = l
		}
	}
	if !strings.Contains(id, `"x-originating-ip" "203.0.113.9" "x-originating-port" "4711"`) {
		t.Fatalf("backend ID = %q, want the PROXY header's client", id)
	}
	if !strings.Contains(tp.logs.String(), "remote=203.0.113.9:4711") {
		t.Error("the log does not show the real client address")
	}

	// Untrusted source: a PROXY line is just a bad command.
	u := proxytest.DialFrom(t, "127.0.0.2", tp.plainAddr)
	u.Expect("* OK")
	u.Send("PROXY TCP4 198.51.100.1 127.0.0.1 1111 143")
	u.Expect("PROXY BAD")

	// Trusted source without a header: refused.
	n := proxytest.DialPlain(t, tp.plainAddr)
	n.C.SetReadDeadline(time.Now().Add(5 * time.Second))
	n.Send("a1 NOOP")
	n.ExpectClosed()
}
