package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Check loads the pair p as [New] would and says what is wrong with each of
// its files, in words meant for an operator: a file that cannot be read, is
// not PEM, holds a key where a certificate belongs (or the other way round:
// the files are swapped), or a key that does not belong to the certificate.
// certErr concerns p.CertFile, keyErr p.KeyFile; both nil means [New] loads
// the pair. A mismatched key is keyErr's. Neither error repeats file
// contents.
func Check(p Pair) (certErr, keyErr error) {
	certPEM, certReadErr := readPEMFile(p.CertFile)
	keyPEM, keyReadErr := readPEMFile(p.KeyFile)
	certTypes, keyTypes := pemTypes(certPEM), pemTypes(keyPEM)
	certHasKey, keyHasCert := hasKey(certTypes), slices.Contains(keyTypes, "CERTIFICATE")
	swapped := ""
	if certHasKey && keyHasCert && !slices.Contains(certTypes, "CERTIFICATE") && !hasKey(keyTypes) {
		swapped = " (cert_file and key_file look swapped)"
	}
	// Each file that could be read is checked on its own even when the
	// other could not.
	switch {
	case certReadErr != nil:
		certErr = certReadErr
	case len(certTypes) == 0:
		certErr = fmt.Errorf("%s is not PEM: want a certificate chain starting with -----BEGIN CERTIFICATE-----", p.CertFile)
	case !slices.Contains(certTypes, "CERTIFICATE") && certHasKey:
		certErr = fmt.Errorf("%s holds a private key, not a certificate%s", p.CertFile, swapped)
	case !slices.Contains(certTypes, "CERTIFICATE"):
		certErr = fmt.Errorf("%s holds no CERTIFICATE block (found %s)", p.CertFile, strings.Join(certTypes, ", "))
	}
	switch {
	case keyReadErr != nil:
		keyErr = keyReadErr
	case len(keyTypes) == 0:
		keyErr = fmt.Errorf("%s is not PEM: want a private key starting with -----BEGIN ... PRIVATE KEY-----", p.KeyFile)
	case !hasKey(keyTypes) && keyHasCert:
		keyErr = fmt.Errorf("%s holds a certificate, not a private key%s", p.KeyFile, swapped)
	case !hasKey(keyTypes):
		keyErr = fmt.Errorf("%s holds no PRIVATE KEY block (found %s)", p.KeyFile, strings.Join(keyTypes, ", "))
	case slices.Contains(keyTypes, "ENCRYPTED PRIVATE KEY") || bytes.Contains(keyPEM, []byte("Proc-Type: 4,ENCRYPTED")):
		keyErr = fmt.Errorf("%s is encrypted: mailgate needs an unencrypted key (openssl pkey -in %s -out NEW.key)", p.KeyFile, p.KeyFile)
	}
	if certErr != nil || keyErr != nil {
		return certErr, keyErr
	}
	// Parse the chain alone first, so that a broken certificate is not
	// blamed on the key.
	if _, err := leafOf(certPEM); err != nil {
		return fmt.Errorf("%s: %w", p.CertFile, err), nil
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "does not match") {
			return nil, fmt.Errorf("%s does not belong to the certificate in %s (its public key differs)", p.KeyFile, p.CertFile)
		}
		return nil, fmt.Errorf("%s: %s", p.KeyFile, strings.TrimPrefix(msg, "tls: "))
	}
	return nil, nil
}

// readPEMFile reads a certificate or key file, at most 1 MiB.
func readPEMFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("not set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s: %v", path, err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%s is larger than 1 MiB: not a certificate or key", path)
	}
	return b, nil
}

// pemTypes lists the types of the PEM blocks in b, in order.
func pemTypes(b []byte) []string {
	var out []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, blk.Type)
	}
}

func hasKey(types []string) bool {
	for _, t := range types {
		if t == "PRIVATE KEY" || strings.HasSuffix(t, " PRIVATE KEY") {
			return true
		}
	}
	return false
}

// leafOf parses the first CERTIFICATE block of a PEM chain.
func leafOf(chain []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, chain = pem.Decode(chain)
		if blk == nil {
			return nil, errors.New("no certificate")
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(bytes.Clone(blk.Bytes))
		if err != nil {
			return nil, fmt.Errorf("not a valid certificate: %w", err)
		}
		return c, nil
	}
}
