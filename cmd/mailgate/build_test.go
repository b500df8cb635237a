package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildScriptPaths: scripts/build.sh builds from the repository root
// wherever it is run from, and a relative OUT lands relative to the
// caller's directory, as with any command.
func TestBuildScriptPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script, err := filepath.Abs("../../scripts/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	caller := t.TempDir()
	cmd := exec.Command(script, "out/mg")
	cmd.Dir = caller
	cmd.Env = append(os.Environ(), "MAILGATE_VERSION=test-build")
	if err := os.Mkdir(filepath.Join(caller, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh out/mg from %s: %v\n%s", caller, err, out)
	}
	bin := filepath.Join(caller, "out", "mg")
	if !strings.Contains(string(out), "built "+bin+" (test-build)") {
		t.Errorf("build.sh says %q, want the absolute path %s", out, bin)
	}
	v, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, v)
	}
	if !strings.Contains(string(v), "test-build") {
		t.Errorf("version = %q, want the stamped test-build", v)
	}
}
