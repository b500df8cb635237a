package main

import (
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
)

// TestMain stops the shared Dovecot and Postfix (started on first use by
// integration tests) when the tests are done.
func TestMain(m *testing.M) { testenv.Main(m) }
