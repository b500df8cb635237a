package proxytest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mailgate/mailgate/auth"
)

// The whole test binary's log output is searched for secrets: every proxy's
// logger (SyncBuffer tees into the suite log) and slog.Default (LogToSuite
// points it there, at debug level), which is where package auth logs when
// no Logger is configured. Each line is kept as it is written, for the
// secrets registered with RegisterSecret (tokens, passwords, the SASL blobs
// the tests send) and for anything shaped like a bearer token or a SASL
// blob, whoever wrote it. Lines are scanned when a test calls CheckSuiteLog
// (every test proxy's cleanup does), against every secret registered by
// then; a finding fails that test, with the secret masked.
//
// testenv.Main exits the process right after m.Run, so there is no hook
// after the last test: lines logged after the last check are not scanned.

var suite = &logScanner{secrets: make(map[string]string)}

type logScanner struct {
	mu       sync.Mutex
	secrets  map[string]string // secret -> label, for the report
	pending  []string          // written, not scanned yet
	lines    int               // lines scanned
	found    []string          // masked descriptions of the findings
	reported int               // len(found) at the last CheckSuiteLog
}

// secretShapes match what must never be logged whatever its origin: a JWT,
// an Ory Hydra token, a decoded OAuth SASL message or Authorization value,
// and the base64 of an XOAUTH2 ("user=") or OAUTHBEARER ("n,a=", "n,,",
// "y,a=", "y,,") message.
var secretShapes = []struct {
	name string
	re   *regexp.Regexp
}{
	{"a JWT", regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`)},
	{"a Hydra token", regexp.MustCompile(`ory_(?:at|rt|ac)_[A-Za-z0-9_.-]{10,}`)},
	{"a decoded SASL message", regexp.MustCompile(`(?i)auth=bearer`)},
	{"a bearer credential", regexp.MustCompile(`(?i)\bbearer[ +]+[A-Za-z0-9._~+/-]{8,}`)},
	{"a base64 XOAUTH2 message", regexp.MustCompile(`dXNlcj[0-3]`)},
	{"a base64 OAUTHBEARER message", regexp.MustCompile(`bixhP|biwsA|eSxhP|eSwsA`)},
}

// RegisterSecret makes the scanner look for s (and its base64) in every
// line logged from now on. Strings shorter than 6 bytes are ignored: they
// would match by accident.
func RegisterSecret(label, s string) {
	if len(s) < 6 {
		return
	}
	suite.mu.Lock()
	defer suite.mu.Unlock()
	suite.secrets[s] = label
	if b := base64.StdEncoding.EncodeToString([]byte(s)); len(b) >= 8 {
		// Only the first 8 characters of the base64 are stable whatever
		// precedes s in a message; the full encoding of s alone is kept.
		suite.secrets[b] = label + " (base64)"
	}
}

// RegisterMasterSecrets registers a master password and the PLAIN messages
// mailgate builds with it for the test users.
func RegisterMasterSecrets(user, password string) {
	RegisterSecret("master password", password)
	for _, u := range []string{"alice@example.test", "bob@example.test", "nobody@example.test", "carol@example.test"} {
		RegisterSecret("backend PLAIN message", base64.StdEncoding.EncodeToString(auth.EncodePLAIN(u, user, password)))
	}
}

// Write keeps the lines for the next scan: scanning here would slow down
// the logging goroutines and shift the timing of the tests.
func (s *logScanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, string(p))
	return len(p), nil
}

// scanLocked searches the lines written since the last scan.
func (s *logScanner) scanLocked() {
	for _, text := range s.pending {
		for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			s.lines++
			for secret, label := range s.secrets {
				if strings.Contains(line, secret) {
					s.found = append(s.found, fmt.Sprintf("%s in %q", label, s.maskLocked(line)))
				}
			}
			for _, sh := range secretShapes {
				if sh.re.MatchString(line) {
					s.found = append(s.found, fmt.Sprintf("%s in %q", sh.name, s.maskLocked(line)))
				}
			}
		}
	}
	s.pending = nil
}

// tokenChars are the characters of a token or base64 blob: a shape match is
// masked up to the end of the run of them.
var tokenChars = regexp.MustCompile(`^[A-Za-z0-9+/=._~-]*`)

// maskLocked returns line with every registered secret and every secret
// shape masked, keeping 3 bytes of each for orientation.
func (s *logScanner) maskLocked(line string) string {
	for secret := range s.secrets {
		line = strings.ReplaceAll(line, secret, secret[:3]+"***")
	}
	for _, sh := range secretShapes {
		line = sh.re.ReplaceAllStringFunc(line, func(m string) string { return m[:3] + "***" })
	}
	// What followed a masked shape (the rest of the blob) goes too.
	var b strings.Builder
	for {
		i := strings.Index(line, "***")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i+3])
		line = line[i+3:]
		line = line[len(tokenChars.FindString(line)):]
	}
}

// CheckSuiteLog fails t with every finding not reported yet.
func CheckSuiteLog(t testing.TB) {
	t.Helper()
	suite.mu.Lock()
	suite.scanLocked()
	news := suite.found[suite.reported:]
	suite.reported = len(suite.found)
	suite.mu.Unlock()
	for _, f := range news {
		t.Errorf("secret in a log line: %s", f)
	}
}

// CheckLogText fails t if text holds a registered secret or a secret shape;
// for logs kept per proxy (which also went through suite, but are checked
// again against secrets registered after they were written).
func CheckLogText(t testing.TB, text string) {
	t.Helper()
	suite.mu.Lock()
	secrets := make(map[string]string, len(suite.secrets))
	for k, v := range suite.secrets {
		secrets[k] = v
	}
	suite.mu.Unlock()
	for secret, label := range secrets {
		if strings.Contains(text, secret) {
			t.Errorf("%s appears in the proxy's logs", label)
		}
	}
	for _, sh := range secretShapes {
		if sh.re.MatchString(text) {
			t.Errorf("%s appears in the proxy's logs", sh.name)
		}
	}
}

// SuiteLogLines scans what is pending and returns the number of log lines
// scanned so far.
func SuiteLogLines() int {
	suite.mu.Lock()
	defer suite.mu.Unlock()
	suite.scanLocked()
	return suite.lines
}

func init() {
	for _, s := range []string{TestToken, BadToken, DownToken, "bob-token", "nobody-token"} {
		RegisterSecret("a test token", s)
	}
	RegisterMasterSecrets(MasterUser, MasterPassword)
}

// LogToSuite points slog.Default (package auth's logger when none is
// given) at the suite log, at debug level. Call it from TestMain.
func LogToSuite() {
	slog.SetDefault(slog.New(slog.NewTextHandler(suite, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// SyncBuffer is a goroutine-safe log sink whose lines also go to the suite
// log (searched for secrets).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	suite.Write(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// NewLogger returns a debug-level text logger writing into a new SyncBuffer.
func NewLogger() (*slog.Logger, *SyncBuffer) {
	b := &SyncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// FindingsDuring scans what is pending, runs f, and returns the findings of
// the lines logged meanwhile (masked), which no later CheckSuiteLog reports:
// for a test of the scanner itself.
func FindingsDuring(f func()) []string {
	suite.mu.Lock()
	suite.scanLocked()
	before := len(suite.found)
	suite.mu.Unlock()
	f()
	suite.mu.Lock()
	defer suite.mu.Unlock()
	suite.scanLocked()
	found := append([]string(nil), suite.found[before:]...)
	suite.reported = len(suite.found)
	return found
}

// SecretShape names the first secret shape found in text ("a JWT", ...),
// or returns "".
func SecretShape(text string) string {
	for _, sh := range secretShapes {
		if sh.re.MatchString(text) {
			return sh.name
		}
	}
	return ""
}
