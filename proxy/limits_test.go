package proxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// TestProxyProtocol: a header from a trusted network sets the client
// address (as passed on to the backend); from elsewhere no header is parsed.
func TestProxyProtocol(t *testing.T) {
	fb := startFakeIMAPBackend(t)
	tp := newTestProxy(t, Options{
		Authenticator:     fakeAuthenticator,
		IMAPBackend:       Backend{Address: fb.addr, ClientIP: "id"},
		ProxyProtocolFrom: []string{"127.0.0.1/32"},
	})
	c := dialPlain(t, tp.plainAddr)
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 4711}, c.c.RemoteAddr())
	if _, err := hdr.WriteTo(c.c); err != nil {
		t.Fatal(err)
	}
	c.expect("* OK")
	c.starttls(tp.clientTLS)
	c.send("a1 AUTHENTICATE XOAUTH2 " + xoauth2("alice@example.test", testToken))
	c.expect("a1 OK")
	var id string
	for _, l := range fb.received() {
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
	u := dialFrom(t, "127.0.0.2", tp.plainAddr)
	u.expect("* OK")
	u.send("PROXY TCP4 198.51.100.1 127.0.0.1 1111 143")
	u.expect("PROXY BAD")

	// Trusted source without a header: refused.
	n := dialPlain(t, tp.plainAddr)
	n.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n.send("a1 NOOP")
	n.expectClosed()
}

func dialFrom(t *testing.T, src, addr string) *tconn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return &tconn{t: t, c: c, br: newBufReader(c)}
}

func dialNoFail(addr string) (interface{ Close() error }, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}
