// Package certs holds the TLS certificates mailgate shows to clients: it loads
// PEM certificate/key pairs, picks one per handshake by SNI, and replaces the
// whole set when the files change (see [Store.Reload] and [Store.Watch]).
// Connections already established keep the certificate they were given; new
// handshakes see the new set. It imports nothing of mailgate's own.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoCertificates is returned by New when it is given no pair.
var ErrNoCertificates = errors.New("certs: no certificate")

// Pair names a PEM certificate chain (leaf first) and its PEM private key.
type Pair struct {
	CertFile, KeyFile string
}

// Store serves a set of certificates to TLS handshakes. The first pair is the
// default; the others are chosen by SNI. It is safe for concurrent use.
type Store struct {
	pairs  []Pair
	logger *slog.Logger

	reloadMu sync.Mutex // serializes loads so an older read never replaces a newer one
	cur      atomic.Pointer[set]
}

// set is one immutable generation of certificates.
type set struct {
	certs  []*tls.Certificate // pair order; certs[0] is the default
	exact  map[string]*tls.Certificate
	wild   map[string]*tls.Certificate // "example.com" for "*.example.com"
	cn     map[string]*tls.Certificate
	stamps []stamp // of the files, taken before they were read
}

// New loads every pair and returns a Store; any pair that fails to load is
// an error. A leaf that is expired or not yet valid is loaded anyway with a
// warning: refusing it on a reload would only keep serving an even older
// one, and refusing it at start would turn a renewal problem into an outage.
// logger nil means slog.Default().
func New(pairs []Pair, logger *slog.Logger) (*Store, error) {
	if len(pairs) == 0 {
		return nil, ErrNoCertificates
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{pairs: append([]Pair(nil), pairs...), logger: logger}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

// Reload re-reads every pair. If any fails, the current set stays in use and
// the error is returned and logged; otherwise the new set serves all later
// handshakes. Reload logs its outcome, so callers need not.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	st, err := s.load()
	if err != nil {
		s.logger.Error("certificate reload failed, keeping the current certificates", "err", err)
		return err
	}
	s.cur.Store(st)
	s.logger.Info("certificates reloaded", "count", len(st.certs))
	return nil
}

// GetCertificate is for tls.Config.GetCertificate: it returns the certificate
// for hello's SNI name (see [Store.Certificate]). It never fails.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := ""
	if hello != nil {
		name = hello.ServerName
	}
	return s.cur.Load().pick(name), nil
}

// Certificate returns the certificate a handshake for serverName gets: the
// first pair whose leaf has serverName as a DNS name, else whose wildcard
// DNS name matches it, else whose subject CN is it, else the default (first)
// pair. Matching ignores case and a trailing dot; "" gets the default.
func (s *Store) Certificate(serverName string) *tls.Certificate {
	return s.cur.Load().pick(serverName)
}

func (st *set) pick(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != "" {
		if c := st.exact[name]; c != nil {
			return c
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := st.wild[parent]; c != nil {
				return c
			}
		}
		if c := st.cn[name]; c != nil {
			return c
		}
	}
	return st.certs[0]
}

// load reads all pairs into a new set; it does not install it.
func (s *Store) load() (*set, error) {
	st := &set{
		stamps: statAll(s.pairs), // before reading: a later write changes them
		exact:  make(map[string]*tls.Certificate),
		wild:   make(map[string]*tls.Certificate),
		cn:     make(map[string]*tls.Certificate),
	}
	now := time.Now()
	for _, p := range s.pairs {
		c, err := loadPair(p)
		if err != nil {
			return nil, err
		}
		st.certs = append(st.certs, c)
		leaf := c.Leaf
		for _, n := range leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			m, key := st.exact, n
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				m, key = st.wild, parent
			}
			if _, dup := m[key]; !dup {
				m[key] = c
			}
		}
		if cn := strings.ToLower(leaf.Subject.CommonName); cn != "" {
			if _, dup := st.cn[cn]; !dup {
				st.cn[cn] = c
			}
		}
		attrs := []any{"cert_file", p.CertFile, "subject", leaf.Subject.CommonName, "dns_names", leaf.DNSNames,
			"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
		switch {
		case now.After(leaf.NotAfter):
			s.logger.Warn("certificate has expired, serving it anyway", attrs...)
		case now.Before(leaf.NotBefore):
			s.logger.Warn("certificate is not valid yet, serving it anyway", attrs...)
		default:
			s.logger.Info("certificate loaded", attrs...)
		}
	}
	return st, nil
}

// loadPair reads one pair and checks that the key belongs to the leaf.
func loadPair(p Pair) (*tls.Certificate, error) {
	if p.CertFile == "" || p.KeyFile == "" {
		return nil, fmt.Errorf("certs: pair %q/%q: both a certificate and a key file are needed", p.CertFile, p.KeyFile)
	}
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile) // also checks that the key matches the leaf
	if err != nil {
		return nil, fmt.Errorf("certs: %s, %s: %w", p.CertFile, p.KeyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: %s: %w", p.CertFile, err)
		}
	}
	return &c, nil
}
