package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestMain starts the shared Dovecot, Postfix and Hydra on first use (by
// integration tests) and stops them when the tests are done. slog.Default
// (package auth's logger when none is given) writes into suiteLog, which
// searches every line for secrets (logscan_test.go).
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(suiteLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	testenv.Main(m)
}

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
