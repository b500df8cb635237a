package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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

// TestBackendLoginOnlySMTP: login is a key of smtp.backend only. The other
// backends' login is not offered (keys, reference table, suggestions,
// check-config's output) and, if set anyway, refused with what to do.
func TestBackendLoginOnlySMTP(t *testing.T) {
	keys := strings.Join(Keys(), " ")
	if !strings.Contains(keys, "smtp.backend.login") {
		t.Error("smtp.backend.login is not a key")
	}
	def := Default()
	out, err := def.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "login:"); n != 1 {
		t.Errorf("check-config's output shows %d login keys, want 1 (smtp):\n%s", n, out)
	}
	for _, proto := range []string{"imap", "pop3", "sieve"} {
		key := proto + ".backend.login"
		t.Run(proto, func(t *testing.T) {
			if strings.Contains(keys, key) {
				t.Errorf("%s is offered as a key", key)
			}
			if strings.Contains(Reference(), "`"+key+"`") {
				t.Errorf("%s is in the reference table", key)
			}
			env := envName(key)
			if s := suggestEnv(env + "X"); s == env {
				t.Errorf("%sX: suggested %s", env, s)
			}
			path := writeFile(t, "c.yaml", proto+":\n  backend:\n    address: mailserver:1\n    login: master\n")
			c, err := Load(path, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if err == nil || !strings.Contains(err.Error(), key+": only used for SMTP: remove it") {
				t.Errorf("Validate() = %v, want %s refused", err, key)
			}
		})
	}
}

// TestReadmeFuzzTargets: README.md's Development section lists every fuzz
// target of the repository with its package.
func TestReadmeFuzzTargets(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	fuzz := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	n := 0
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range fuzz.FindAllStringSubmatch(string(src), -1) {
			n++
			row := fmt.Sprintf("| `./%s/` | `%s` |", filepath.ToSlash(strings.TrimPrefix(filepath.Dir(path), "../")), m[1])
			if !strings.Contains(readme, row) {
				t.Errorf("README.md's fuzz targets lack %s", row)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no fuzz target found")
	}
}
