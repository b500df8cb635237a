// Package clustertest runs mailgate as operators scale it out: three
// `mailgate serve` replicas (the binary, built from this tree, each a
// process with a YAML configuration) behind a real HAProxy in TCP mode
// (send-proxy-v2 to the replicas' listeners, HTTP health checks on each
// replica's /readyz), optionally sharing a real Redis, in front of the real
// Dovecot, Postfix and Ory Hydra of internal/testenv. Every client connects
// from a loopback address of its own (127.0.0.0/8), so that each hop's
// handling of the client address shows in the daemons' logs.
//
// The package has only tests; see harness_test.go for the rig and the
// *_test.go files for what each test proves.
package clustertest

import (
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
