package proxy

import (
	"bufio"
	"io"
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestMain starts the shared Dovecot, Postfix and Hydra on first use (by
// integration tests) and stops them when the tests are done.
func TestMain(m *testing.M) { testenv.Main(m) }

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
