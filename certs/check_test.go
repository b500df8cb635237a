package certs

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	good := mustWritePEM(t, t.TempDir(), "a.example")
	other := mustWritePEM(t, t.TempDir(), "b.example")
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	notPEM := file("der.crt", "\x30\x82\x01\x0a garbage")
	junkPEM := file("junk.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	csr := file("req.pem", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	keyAndCert := file("both.pem", read(good.KeyFile)+read(good.CertFile))
	missing := filepath.Join(dir, "missing.pem")
	encrypted := file("enc.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")

	for _, tt := range []struct {
		name             string
		pair             Pair
		wantCert, wantKy string // substrings; "" = no error
	}{
		{"good", good, "", ""},
		{"key in one file with the chain", Pair{keyAndCert, keyAndCert}, "", ""},
		{"swapped", Pair{good.KeyFile, good.CertFile}, "holds a private key, not a certificate (cert_file and key_file look swapped)", "holds a certificate, not a private key (cert_file and key_file look swapped)"},
		{"key of another certificate", Pair{good.CertFile, other.KeyFile}, "", "does not belong to the certificate in " + good.CertFile},
		{"cert not PEM", Pair{notPEM, good.KeyFile}, notPEM + " is not PEM", ""},
		{"key not PEM", Pair{good.CertFile, notPEM}, "", notPEM + " is not PEM"},
		{"both not PEM", Pair{notPEM, notPEM}, "is not PEM", "is not PEM"},
		{"cert is a CSR", Pair{csr, good.KeyFile}, "no CERTIFICATE block (found CERTIFICATE REQUEST)", ""},
		{"key is a certificate only", Pair{good.CertFile, good.CertFile}, "", "holds a certificate, not a private key"},
		{"encrypted key", Pair{good.CertFile, encrypted}, "", encrypted + " is encrypted: mailgate needs an unencrypted key"},
		{"corrupt certificate", Pair{junkPEM, good.KeyFile}, "not a valid certificate", ""},
		{"cert missing", Pair{missing, good.KeyFile}, "cannot read " + missing, ""},
		{"key unreadable (a directory)", Pair{good.CertFile, dir}, "", "cannot read " + dir},
		{"both missing", Pair{missing, missing}, "cannot read", "cannot read"},
		{"cert missing, key not PEM: both told", Pair{missing, notPEM}, "cannot read " + missing, notPEM + " is not PEM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			certErr, keyErr := Check(tt.pair)
			for _, c := range []struct {
				which string
				err   error
				want  string
			}{{"cert", certErr, tt.wantCert}, {"key", keyErr, tt.wantKy}} {
				switch {
				case c.want == "" && c.err != nil:
					t.Errorf("%s error = %v, want none", c.which, c.err)
				case c.want != "" && (c.err == nil || !strings.Contains(c.err.Error(), c.want)):
					t.Errorf("%s error = %v, want it to contain %q", c.which, c.err, c.want)
				}
			}
			// Check agrees with New: a pair it passes loads.
			_, err := New([]Pair{tt.pair}, slog.New(slog.DiscardHandler))
			if ok := certErr == nil && keyErr == nil; ok != (err == nil) {
				t.Errorf("Check ok = %v but New error = %v", ok, err)
			}
		})
	}
}
