package imap

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/proxy"
)

// ticketCache is a client session cache that records whether the server
// offered a session ticket (a Put with a session; a nil Put is a removal).
type ticketCache struct {
	tls.ClientSessionCache
	mu   sync.Mutex
	puts int
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.mu.Lock()
		c.puts++
		c.mu.Unlock()
	}
	c.ClientSessionCache.Put(key, cs)
}

func (c *ticketCache) offered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts
}

// newResumeProxy is the IMAP front with the certificates of a certs.Store,
// configured as cmd/mailgate does, and the store's certificate file.
func newResumeProxy(t *testing.T) (*testProxy, *certs.Store, string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, err := certs.WritePEM(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	store, err := certs.New([]certs.Pair{{CertFile: certFile, KeyFile: keyFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fb := proxytest.StartFakeIMAPBackend(t)
	tp := newTestProxy(t, proxy.Options{
		Authenticator: fakeAuthenticator,
		TLSConfig:     store.TLSConfig(tls.VersionTLS12, "imap", "smtp", "pop3", "managesieve"),
	}, Options{Backend: proxy.Backend{Address: fb.Addr, TLS: proxy.TLSNone}})
	return tp, store, certFile
}

// resumeClient trusts the certificate in certFile and keeps sessions in a
// ticketCache.
func resumeClient(t *testing.T, certFile string, version uint16) (*tls.Config, *ticketCache) {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"imap"},
		MinVersion: version, MaxVersion: version, ClientSessionCache: cache}, cache
}

// loginOverTLS connects (implicit TLS, or STARTTLS on the plain port), logs
// in through the relay and logs out; it returns the TLS state. The login
// makes the client read after the handshake, which is when a TLS 1.3
// client takes in the server's ticket.
func loginOverTLS(t *testing.T, tp *testProxy, starttls bool, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	var c *proxytest.Conn
	if starttls {
		c = proxytest.DialPlain(t, tp.plainAddr)
		c.Expect("* OK")
		c.StartTLS(cfg)
	} else {
		c = proxytest.DialTLS(t, tp.tlsAddr, cfg)
		c.Expect("* OK")
	}
	c.Send("a1 AUTHENTICATE XOAUTH2 " + proxytest.XOAUTH2("alice@example.test", proxytest.TestToken))
	c.Expect("a1 OK")
	c.Send("a2 LOGOUT")
	c.ExpectTagged("a2", "a2 OK")
	st := c.C.(*tls.Conn).ConnectionState()
	c.C.Close()
	return st
}

// TestTLSSessionResumption: a returning client is offered a session ticket
// and its next handshake resumes, on the implicit-TLS port and after
// STARTTLS, with TLS 1.2 and 1.3, and still after the certificates are
// reloaded (the ticket keys live in the tls.Config, which a reload must not
// replace); a client without a ticket then gets the new certificate.
func TestTLSSessionResumption(t *testing.T) {
	for _, tc := range []struct {
		name     string
		starttls bool
		version  uint16
	}{
		{"implicit TLS 1.3", false, tls.VersionTLS13},
		{"implicit TLS 1.2", false, tls.VersionTLS12},
		{"STARTTLS TLS 1.3", true, tls.VersionTLS13},
		{"STARTTLS TLS 1.2", true, tls.VersionTLS12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, store, certFile := newResumeProxy(t)
			cfg, cache := resumeClient(t, certFile, tc.version)
			if st := loginOverTLS(t, tp, tc.starttls, cfg); st.DidResume {
				t.Fatal("the first handshake resumed")
			}
			if cache.offered() == 0 {
				t.Fatal("the server offered no session ticket")
			}
			if st := loginOverTLS(t, tp, tc.starttls, cfg); !st.DidResume {
				t.Fatal("the second handshake did not resume")
			}
			old := store.Certificate("127.0.0.1").Leaf
			reloadNewCert(t, store, certFile)
			if st := loginOverTLS(t, tp, tc.starttls, cfg); !st.DidResume {
				t.Fatal("no resumption after a certificate reload")
			}
			fresh, _ := resumeClient(t, certFile, tc.version)
			st := loginOverTLS(t, tp, tc.starttls, fresh)
			if st.DidResume || st.PeerCertificates[0].Equal(old) {
				t.Fatalf("a new client after the reload: resumed %v, old certificate %v", st.DidResume, st.PeerCertificates[0].Equal(old))
			}
		})
	}
}

// reloadNewCert writes a new certificate over the store's files and
// reloads the store.
func reloadNewCert(t *testing.T, store *certs.Store, certFile string) {
	t.Helper()
	_, _, err := certs.WritePEM(filepath.Dir(certFile), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
}
