package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// tlsObserver counts backend TLS handshakes by kind.
type tlsObserver struct {
	NopObserver
	full, resumed chan struct{}
}

func (o *tlsObserver) BackendTLS(proto string, resumed bool) {
	if resumed {
		o.resumed <- struct{}{}
	} else {
		o.full <- struct{}{}
	}
}

// TestBackendTLSResumption: the second connection to a TLS backend offers
// the session of the first, the backend accepts it, and the observer hears
// one full and one resumed handshake (TLS 1.3 tickets and TLS 1.2).
func TestBackendTLSResumption(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			serverTLS, clientTLS := proxytest.TLSPair(t)
			serverTLS.MaxVersion = v
			ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			resumedAtServer := make(chan bool, 2)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					tc := c.(*tls.Conn)
					if tc.Handshake() == nil {
						resumedAtServer <- tc.ConnectionState().DidResume
						tc.Write([]byte("* OK hello\r\n")) // the client reads it, and with it any ticket
					}
					tc.Close()
				}
			}()
			obs := &tlsObserver{full: make(chan struct{}, 2), resumed: make(chan struct{}, 2)}
			srv, err := New(Options{Authenticator: fakeAuthenticator, TLSConfig: serverTLS, Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			b := srv.PrepareBackend("imap", Backend{Address: ln.Addr().String(), TLS: TLSImplicit, TLSConfig: clientTLS})
			for i, wantResumed := range []bool{false, true} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				conn, err := dialBackend(ctx, b, nil)
				cancel()
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				conn.Close()
				if got := <-resumedAtServer; got != wantResumed {
					t.Fatalf("connection %d: server saw DidResume=%v, want %v", i, got, wantResumed)
				}
			}
			if len(obs.full) != 1 || len(obs.resumed) != 1 {
				t.Fatalf("observer: %d full, %d resumed handshakes; want 1 and 1", len(obs.full), len(obs.resumed))
			}
		})
	}
}

// TestProxyHeaderSSLTLV: the PROXY v2 header to a backend carries the SSL
// TLV (client connected over TLS, and the version) when the client's leg is
// TLS, and none when it is not.
func TestProxyHeaderSSLTLV(t *testing.T) {
	client := &net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 4711}
	local := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 993}
	for _, v := range []uint16{0, tls.VersionTLS13} {
		raw, err := proxyHeader(client, local, v)
		if err != nil {
			t.Fatal(err)
		}
		h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if h.SourceAddr.String() != client.String() {
			t.Errorf("source %v, want %v", h.SourceAddr, client)
		}
		tlvs, err := h.TLVs()
		if err != nil {
			t.Fatal(err)
		}
		ssl, found := tlvparse.FindSSL(tlvs)
		if v == 0 {
			if found {
				t.Errorf("plaintext client: SSL TLV present")
			}
			continue
		}
		ver, _ := ssl.SSLVersion()
		if !found || !ssl.ClientSSL() || ver != "TLSv1.3" {
			t.Errorf("TLS client: SSL TLV found=%v client_ssl=%v version=%q", found, ssl.ClientSSL(), ver)
		}
	}
}
