package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/mailgate/mailgate/certs"
)

// ServerName is the host name in the daemons' certificates (also "localhost",
// 127.0.0.1, ::1 and the deb13 daemons' 127.0.24.1) and Postfix's myhostname.
const ServerName = "mail.example.test"

// selfSigned returns a PEM certificate and PKCS#8 key for ServerName,
// localhost, 127.0.0.1, ::1 and deb13Listen (the project's own self-signed
// generator).
// The certificate is its own CA.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	c, err := certs.SelfSigned(ServerName, "localhost", "127.0.0.1", "::1", deb13Listen)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}

// writeCert writes a fresh self-signed pair to certFile (0644) and keyFile (0600).
func writeCert(certFile, keyFile string) ([]byte, error) {
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write certificate: %w", err)
	}
	return certPEM, nil
}

// clientTLS returns a client configuration trusting only caPEM, for ServerName.
func clientTLS(caPEM []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{RootCAs: pool, ServerName: ServerName, MinVersion: tls.VersionTLS12}
}
