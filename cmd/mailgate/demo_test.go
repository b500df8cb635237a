package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// buildMailgate builds the binary once per test into a temp dir.
func buildMailgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDemoPrintedCommandsWork starts "mailgate demo" as a subprocess, runs
// the curl commands it prints, exactly as printed, and checks what they read.
func TestDemoPrintedCommandsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if testenv.Integration() {
			t.Fatal("curl not installed")
		}
		t.Skip("curl not installed")
	}
	bin := buildMailgate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--imaps-port", "0", "--imap-port", "0", "--smtps-port", "0", "--submission-port", "0")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Read the banner up to "Press Ctrl-C".
	var banner strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		banner.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
			break
		}
	}
	text := banner.String()
	if !strings.Contains(text, "DEMO") || !strings.Contains(text, "not a mail server") {
		t.Fatalf("the banner does not say it is a demo:\n%s\nstderr:\n%s", text, stderr.String())
	}
	start := strings.Index(text, "export TOKEN=")
	end := strings.Index(text, "Press Ctrl-C")
	if start < 0 || end < start {
		t.Fatalf("no commands in the banner:\n%s", text)
	}
	script := text[start:end]
	if n := strings.Count(script, "\ncurl "); n != 4 {
		t.Fatalf("want 4 curl commands (read, send, read, metrics), got %d:\n%s", n, script)
	}
	for _, want := range []string{" healthcheck --config ", " token --config "} {
		if !strings.Contains(script, want) {
			t.Fatalf("no %q command in the banner:\n%s", want, script)
		}
	}

	// The operations listener answers.
	m := regexp.MustCompile(`(?m)^  Operations  (\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no operations address in the banner:\n%s", text)
	}
	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		if body := waitHTTP(t, "http://"+m[1]+path, http.StatusOK); body != want {
			t.Errorf("%s = %q, want %q", path, body, want)
		}
	}
	// Run them as a user would, in one shell, stopping at the first failure.
	out, err := exec.CommandContext(ctx, "bash", "-e", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("printed commands failed: %v\n%s\nmailgate log:\n%s", err, out, stderr.String())
	}
	for _, want := range []string{"Subject: Welcome to the mailgate demo", "Subject: Hello through mailgate", "Authenticated sender: demo@example.test",
		"\nsent: read it back", // the send command's confirmation
		`mailgate_authentications_total{mechanism="OAUTHBEARER",proto="smtp",result="ok"} 1`,
		"\nok\n",                                // mailgate healthcheck
		"result    ACCEPTED: demo@example.test", // mailgate token
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	token := regexp.MustCompile(`export TOKEN='([^']+)'`).FindStringSubmatch(text)[1]
	dir := filepath.Dir(regexp.MustCompile(`--cacert (\S+)`).FindStringSubmatch(text)[1])

	// SIGTERM: exit 0, temp files gone, and the token never logged.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo exit: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), token) {
		t.Fatal("the demo logged the token")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("demo dir %s left behind", dir)
	}
}
