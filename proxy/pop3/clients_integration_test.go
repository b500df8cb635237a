package pop3

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// Real clients against the POP3 front and a real Dovecot: curl and
// Python's poplib.

// lookPath finds a client program; missing, it skips the test, or fails it
// under MAILGATE_INTEGRATION=1.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testenv.Integration() {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// TestIntegrationPOP3Curl: curl --oauth2-bearer lists and retrieves
// messages over pop3s. curl (7.88) prefers OAUTHBEARER, and sends it
// without an initial response since its AUTH line would pass 255 octets:
// the token comes after the "+ " continuation. (It ignores AUTH=XOAUTH2
// in --login-options when OAUTHBEARER is offered; poplib covers XOAUTH2.)
func TestIntegrationPOP3Curl(t *testing.T) {
	curl := lookPath(t, "curl")
	it := newIntegration(t, backendModes[0])
	token := it.mint(t, alice, testenv.TokenOptions{})
	subject := fmt.Sprintf("curl-pop3-%d", time.Now().UnixNano())
	it.dc.AppendDirect(t, alice, uniqueMessage(subject))
	run := func(path string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-v", "--silent", "--show-error", "--cacert", it.tf.certFile,
			"--oauth2-bearer", token, "--user", alice+":", "pop3s://"+it.tf.tlsAddr+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		sent := authLines(stderr.String())
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", path, err, sent)
		}
		if !strings.Contains(sent, "> AUTH OAUTHBEARER\n< + \n< +OK Logged in.") {
			t.Fatalf("curl's login was not AUTH OAUTHBEARER with a continuation:\n%s", sent)
		}
		return string(out)
	}
	list := strings.Fields(run("/"))
	if len(list) < 2 {
		t.Fatalf("curl LIST output %q", list)
	}
	n := list[len(list)-2] // the last "n size" pair
	if msg := run("/" + n); !strings.Contains(msg, "Subject: "+subject) {
		t.Fatalf("curl RETR %s lacks the subject %q:\n%s", n, subject, msg)
	}
}

// authLines returns curl's verbose lines about AUTH and replies, with
// base64 arguments cut short (they carry the token).
func authLines(verbose string) string {
	var out []string
	for _, l := range strings.Split(verbose, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, "> AUTH") || strings.HasPrefix(l, "< + ") || strings.HasPrefix(l, "< +OK Logged") ||
			strings.HasPrefix(l, "< -ERR") {
			if len(l) > 40 {
				l = l[:40] + "..."
			}
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// poplibScript logs in with AUTH XOAUTH2 through poplib's low-level
// _shortcmd (poplib has no AUTH helper), then STAT, RETR of the last
// message and QUIT. The token comes in the environment.
const poplibScript = `
import base64, os, poplib, ssl, sys
host, port, cafile, user, subject = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=10)
print(p.getwelcome().decode())
ir = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, os.environ["TOKEN"])).encode()).decode()
print(p._shortcmd("AUTH XOAUTH2 " + ir).decode())
count, size = p.stat()
resp, lines, octets = p.retr(count)
print("found" if ("Subject: " + subject).encode() in lines else "missing")
print(p.quit().decode())
`

// TestIntegrationPOP3Poplib: Python's poplib over POP3S, with an AUTH line
// far over RFC 2449's 255 octets (a JWT in XOAUTH2).
func TestIntegrationPOP3Poplib(t *testing.T) {
	python := lookPath(t, "python3")
	it := newIntegration(t, backendModes[1])
	token := it.mint(t, alice, testenv.TokenOptions{})
	subject := fmt.Sprintf("poplib-%d", time.Now().UnixNano())
	it.dc.AppendDirect(t, alice, uniqueMessage(subject))
	host, port, _ := strings.Cut(it.tf.tlsAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", poplibScript, host, port, it.tf.certFile, alice, subject)
	cmd.Env = append(os.Environ(), "TOKEN="+token)
	out, err := cmd.CombinedOutput()
	want := []string{"+OK mailgate ready.", "+OK Logged in.", "found", "+OK Logging out."}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("poplib: %v\n%s\nwant the lines %q", err, out, want)
	}
}
