package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SelfSignedValidity is how long a SelfSigned certificate is valid.
const SelfSignedValidity = 30 * 24 * time.Hour

// SelfSigned returns a new self-signed ECDSA P-256 certificate for hosts (DNS
// names, "*.example.com", or IP addresses; none means "localhost"), valid
// from an hour ago for SelfSignedValidity, with a random serial number. The
// first host is also the subject CN. Leaf is set. It is its own CA, so a
// client can trust it by adding Leaf to its RootCAs. For demos and tests.
func SelfSigned(hosts ...string) (tls.Certificate, error) {
	now := time.Now()
	return sign(template(hosts, now.Add(-time.Hour), now.Add(SelfSignedValidity)))
}

func template(hosts []string, notBefore, notAfter time.Time) *x509.Certificate {
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	t := &x509.Certificate{
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"mailgate self-signed"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	return t
}

// sign self-signs tmpl with a new P-256 key, filling in the serial number.
func sign(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: generate key: %w", err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: serial: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// WritePEM writes a new SelfSigned certificate for hosts into dir as
// <first host>-cert.pem and <first host>-key.pem ("*" written as
// "_wildcard", ":" as "_") and returns their paths. Existing files are
// replaced by rename, so a reader never sees half a file; the key file is
// mode 0600.
func WritePEM(dir string, hosts ...string) (certFile, keyFile string, err error) {
	c, err := SelfSigned(hosts...)
	if err != nil {
		return "", "", err
	}
	return writePair(dir, c.Leaf.Subject.CommonName, c)
}

func writePair(dir, name string, c tls.Certificate) (certFile, keyFile string, err error) {
	base := strings.NewReplacer("*", "_wildcard", ":", "_", "/", "_").Replace(name)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("certs: marshal key: %w", err)
	}
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	certFile = filepath.Join(dir, base+"-cert.pem")
	keyFile = filepath.Join(dir, base+"-key.pem")
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// writeAtomic writes data to a temporary file in path's directory and
// renames it over path.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, perm)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, werr)
	}
	return nil
}
