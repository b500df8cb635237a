package config

import (
	"os"
	"strings"
	"testing"
)

const (
	refStart = "<!-- config-reference:start -->\n"
	refEnd   = "<!-- config-reference:end -->"
)

// TestReadmeReference keeps README.md's configuration table equal to
// Reference(). UPDATE_README=1 rewrites it.
func TestReadmeReference(t *testing.T) {
	for _, k := range Keys() {
		if keyDocs[k] == "" {
			t.Errorf("key %s has no description in keyDocs", k)
		}
	}
	const path = "../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, refStart), strings.Index(readme, refEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", refStart, refEnd)
	}
	want := Reference()
	if got := readme[i+len(refStart) : j]; got != want {
		if os.Getenv("UPDATE_README") == "1" {
			if err := os.WriteFile(path, []byte(readme[:i+len(refStart)]+want+readme[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README.md's configuration table is stale; run UPDATE_README=1 go test ./config -run TestReadmeReference")
	}
}
