package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/certs"
)

func TestCommandHelp(t *testing.T) {
	t.Setenv("MAILGATE_CONFIG", "")
	for _, tt := range []struct {
		args     []string
		want     []string
		wantNone []string
	}{
		{[]string{"serve", "--help"}, []string{"Usage: mailgate serve", "--config", "--imap-backend", "--tls-cert", "SIGHUP re-reads"}, nil},
		{[]string{"check-config", "-h"}, []string{"Usage: mailgate check-config", "--offline", "--login-as", "--imap-backend"}, nil},
		{[]string{"token", "--help"}, []string{"Usage: mailgate token", "--config", "--userinfo-url", "--issuer", "--mode"},
			[]string{"--imap-backend", "--smtp-backend", "--tls-cert", "--master-user", "--http-listen", "--offline"}},
		{[]string{"healthcheck", "--help"}, []string{"Usage: mailgate healthcheck", "--config", "--url", "--http-listen"},
			[]string{"--imap-backend", "--tls-cert", "--master-user", "--mode", "--userinfo-url"}},
		{[]string{"version", "--help"}, []string{"Usage: mailgate version"}, []string{"mailgate dev", "Flags:"}},
		{[]string{"demo", "--help"}, []string{"Usage: mailgate demo", "--imaps-port"}, []string{"--imap-backend", "--config"}},
		{[]string{"help", "token"}, []string{"Usage: mailgate token", "--userinfo-url"}, []string{"--imap-backend"}},
		{[]string{"help"}, []string{"Commands:", "check-config"}, nil},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("help wrote to stderr:\n%s", stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("help lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.wantNone {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("help has %q, which is not this command's:\n%s", w, stdout.String())
				}
			}
		})
	}
}

// Every command reports errors as "mailgate COMMAND: message".
func TestCommandErrorFormat(t *testing.T) {
	t.Setenv("MAILGATE_CONFIG", "")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, tt := range []struct {
		args []string
		code int
		want string // the start of a line of stderr
	}{
		{[]string{"serve", "--bogus"}, 2, "mailgate serve: unknown flag: --bogus\nRun \"mailgate serve --help\" for usage.\n"},
		{[]string{"check-config", "--bogus"}, 2, "mailgate check-config: unknown flag: --bogus\nRun \"mailgate check-config --help\" for usage.\n"},
		{[]string{"token", "--imap-backend", "x:1"}, 2, "mailgate token: unknown flag: --imap-backend\n"},
		{[]string{"healthcheck", "--tls-cert", "x"}, 2, "mailgate healthcheck: unknown flag: --tls-cert\n"},
		{[]string{"healthcheck", "extra"}, 2, "mailgate healthcheck: unexpected argument \"extra\"\n"},
		{[]string{"version", "--bogus"}, 2, "mailgate version: unknown flag: --bogus\n"},
		{[]string{"version", "extra"}, 2, "mailgate version: unexpected argument \"extra\"\n"},
		{[]string{"demo", "--bogus"}, 2, "mailgate demo: unknown flag: --bogus\n"},
		{[]string{"serve", "--config", missing}, 1, "mailgate serve: config: open " + missing},
		{[]string{"check-config", "--config", missing}, 1, "mailgate check-config: config: open " + missing},
		{[]string{"token", "--config", missing}, 2, "mailgate token: config: open " + missing},
		{[]string{"healthcheck", "--config", missing}, 1, "mailgate healthcheck: config: open " + missing},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if s := "\n" + stderr.String(); !strings.Contains(s, "\n"+tt.want) {
				t.Errorf("stderr:\n%s\nwant a line starting %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestVersionFrom(t *testing.T) {
	info := func(mainVersion string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/mailgate/mailgate", Version: mainVersion}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	for _, tt := range []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"stamped wins", "v1.4.0", info("v1.3.0"), true, "v1.4.0"},
		{"go install module@version", "dev", info("v1.3.0"), true, "v1.3.0 (go1.26.0)"},
		{"built from a checkout", "dev", info("(devel)", "vcs.revision", "5e4fa5b1c2d3e4f5a6b7", "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "true"), true,
			"dev (commit 5e4fa5b1c2d3, 2026-12-01T10:00:00Z, modified, go1.26.0)"},
		{"clean checkout", "dev", info("(devel)", "vcs.revision", "5e4fa5b1c2d3e4f5a6b7", "vcs.modified", "false"), true, "dev (commit 5e4fa5b1c2d3, go1.26.0)"},
		{"pseudo-version names its commit", "dev", info("v0.0.0-20261201100000-5e4fa5b1c2d3", "vcs.revision", "5e4fa5b1c2d3e4f5a6b7"), true,
			"v0.0.0-20261201100000-5e4fa5b1c2d3 (go1.26.0)"},
		{"no build information", "dev", nil, false, "dev"},
		{"empty stamp", "", info("(devel)"), true, "dev (go1.26.0)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionFrom(tt.stamped, tt.bi, tt.ok); got != tt.want {
				t.Errorf("versionFrom() = %q, want %q", got, tt.want)
			}
		})
	}
	var stdout bytes.Buffer
	if code := run([]string{"version"}, &stdout, &bytes.Buffer{}); code != 0 || !strings.HasPrefix(stdout.String(), "mailgate ") {
		t.Errorf("mailgate version: exit %d, %q", code, stdout.String())
	}
}

// check-config loads every certificate/key pair and reports each broken one
// under its key, with all other problems.
func TestCheckConfigCertificates(t *testing.T) {
	t.Setenv("MAILGATE_CONFIG", "")
	a := writePair(t, "a.example")
	b := writePair(t, "b.example")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "cert.der")
	os.WriteFile(notPEM, []byte("\x30\x82 not pem"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	base := "master:\n  user: mailgate\n  password: pw\nimap:\n  backend:\n    address: mailserver:143\nsmtp:\n  backend:\n    address: mailserver:587\n" +
		"oauth2:\n  userinfo_url: https://auth.example.com/userinfo\n" // oauth2 last: a case may add to it
	tlsSection := func(cert, key string, more ...certs.Pair) string {
		s := "tls:\n  cert_file: " + cert + "\n  key_file: " + key + "\n"
		if len(more) > 0 {
			s += "  certificates:\n"
			for _, p := range more {
				s += "    - cert_file: " + p.CertFile + "\n      key_file: " + p.KeyFile + "\n"
			}
		}
		return s
	}
	for _, tt := range []struct {
		name string
		yaml string
		want []string // lines of the problem list; nil = OK
	}{
		{"good pairs", tlsSection(a.CertFile, a.KeyFile, b), nil},
		{"swapped", tlsSection(a.KeyFile, a.CertFile), []string{
			"tls.cert_file: " + a.KeyFile + " holds a private key, not a certificate (cert_file and key_file look swapped)",
			"tls.key_file: " + a.CertFile + " holds a certificate, not a private key (cert_file and key_file look swapped)"}},
		{"key of another certificate", tlsSection(a.CertFile, b.KeyFile), []string{
			"tls.key_file: " + b.KeyFile + " does not belong to the certificate in " + a.CertFile + " (its public key differs)"}},
		{"not PEM", tlsSection(notPEM, a.KeyFile), []string{
			"tls.cert_file: " + notPEM + " is not PEM: want a certificate chain starting with -----BEGIN CERTIFICATE-----"}},
		{"unreadable", tlsSection(a.CertFile, missing), []string{
			"tls.key_file: cannot read " + missing + ": no such file or directory"}},
		{"every broken pair, with the other problems", "mastr: {}\n" + tlsSection(a.CertFile, a.KeyFile, certs.Pair{CertFile: a.CertFile, KeyFile: b.KeyFile}, certs.Pair{CertFile: notPEM, KeyFile: a.KeyFile}) +
			"@  client_secret_file: " + missing + "\n",
			[]string{
				"c.yaml:1: mastr: unknown key (did you mean master?)",
				"oauth2.client_secret_file: cannot read " + missing + ": no such file or directory",
				"tls.certificates[0].key_file: " + b.KeyFile + " does not belong to the certificate in " + a.CertFile + " (its public key differs)",
				"tls.certificates[1].cert_file: " + notPEM + " is not PEM: want a certificate chain starting with -----BEGIN CERTIFICATE-----"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// "@" marks keys for the oauth2 section, which base ends with.
			head, oauth2, _ := strings.Cut(tt.yaml, "@")
			y := head + base + oauth2
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(y), 0o600)
			var stdout, stderr bytes.Buffer
			code := runCheckConfig([]string{"--config", path, "--offline"}, &stdout, &stderr)
			out := strings.ReplaceAll(stderr.String(), filepath.Dir(path)+"/", "")
			if !strings.Contains(out, "reading configuration file c.yaml (from --config)\n") {
				t.Errorf("stderr does not say which file was read:\n%s", out)
			}
			if tt.want == nil {
				if code != 0 || !strings.Contains(out, "configuration OK") {
					t.Fatalf("exit %d, want 0 and OK:\n%s", code, out)
				}
				return
			}
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			_, list, _ := strings.Cut(out, "mailgate check-config: the configuration has problems:\n")
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
				got = append(got, strings.TrimSpace(l))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s\nstderr:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"), out)
			}
		})
	}
}

func TestCheckConfigNoFile(t *testing.T) {
	if _, err := os.Stat(defaultConfigPath); err == nil {
		t.Skip(defaultConfigPath + " exists on this machine")
	}
	t.Setenv("MAILGATE_CONFIG", "")
	var stderr bytes.Buffer
	runCheckConfig([]string{"--offline"}, &bytes.Buffer{}, &stderr)
	want := "reading no configuration file at " + defaultConfigPath + " (the default path): using the defaults, MAILGATE_* variables and flags\n"
	if !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr:\n%s\nwant it to start with %q", stderr.String(), want)
	}
}

func writePair(t *testing.T, host string) certs.Pair {
	t.Helper()
	c, k, err := certs.WritePEM(t.TempDir(), host)
	if err != nil {
		t.Fatal(err)
	}
	return certs.Pair{CertFile: c, KeyFile: k}
}
