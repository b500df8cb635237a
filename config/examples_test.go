package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfigParses: the configuration in examples/ uses only real
// keys and values (secret file paths are pointed at temporary files).
func TestExampleConfigParses(t *testing.T) {
	b, err := os.ReadFile("../examples/dms/mailgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := string(b)
	for _, name := range []string{"mailgate_master_password", "oauth_client_secret"} {
		f := filepath.Join(dir, name)
		os.WriteFile(f, []byte("secret\n"), 0o600)
		s = strings.ReplaceAll(s, "/run/secrets/"+name, f)
	}
	c, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatalf("examples/dms/mailgate.yaml: %v", err)
	}
	if c.IMAP.Backend.Address != "mailserver:143" || c.OAuth2.Mode != ModeUserinfo {
		t.Fatalf("unexpected values: %+v", c.IMAP.Backend)
	}
}
