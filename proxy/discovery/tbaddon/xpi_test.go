package tbaddon

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
)

func build(t *testing.T, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Build(&buf, testSite(), opts); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	return buf.Bytes()
}

func TestBuildLayout(t *testing.T) {
	b := build(t, Options{})
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("zip.NewReader() = %v", err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "manifest.json" {
		t.Fatalf("entries = %v, want only manifest.json", names(zr))
	}
	for _, f := range zr.File {
		if !zipPathOK(f.Name) {
			t.Errorf("entry %q escapes the archive root", f.Name)
		}
	}
	f := zr.File[0]
	if !f.Modified.Equal(zipTime) {
		t.Errorf("Modified = %v, want %v", f.Modified, zipTime)
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc) // checks the CRC too
	if err != nil {
		t.Fatalf("read manifest.json: %v", err)
	}
	if !json.Valid(got) || !bytes.Equal(got, mustManifest(t, testSite(), Options{})) {
		t.Errorf("manifest.json = %s, want Manifest()", got)
	}
}

func names(zr *zip.Reader) []string {
	var n []string
	for _, f := range zr.File {
		n = append(n, f.Name)
	}
	return n
}

// zipPathOK refuses absolute, ../ and backslash paths.
func zipPathOK(name string) bool {
	return name != "" && !strings.HasPrefix(name, "/") && !strings.Contains(name, `\`) &&
		path.Clean(name) == name && name != ".." && !strings.HasPrefix(name, "../")
}

func TestZipPathOK(t *testing.T) {
	for _, bad := range []string{"/manifest.json", "../manifest.json", "a/../../b", `a\b`, ""} {
		if zipPathOK(bad) {
			t.Errorf("zipPathOK(%q) = true", bad)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	a, b := build(t, Options{}), build(t, Options{})
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same input differ")
	}
	if bytes.Equal(a, build(t, Options{Version: "1.1"})) {
		t.Error("a different Version gave the same bytes")
	}
}

func TestBuildError(t *testing.T) {
	site := testSite()
	site.OAuth = nil
	var buf bytes.Buffer
	if err := Build(&buf, site, Options{}); !errors.Is(err, ErrNoOAuth) {
		t.Fatalf("Build() = %v, want ErrNoOAuth", err)
	}
	if buf.Len() != 0 {
		t.Errorf("Build() wrote %d bytes on error", buf.Len())
	}
}
