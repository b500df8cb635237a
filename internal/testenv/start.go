package testenv

import (
	"context"
	"errors"
	"testing"
)

// startForTest starts an instance with start (its context bounds the
// start-up: defaultStartTimeout) and ties it to tb: a missing daemon skips
// or fails tb (see [Require]), another start error fails it, and tb.Cleanup
// stops it with stop, logging the last tail lines of log first when the test
// failed. name names the daemon in messages ("dovecot").
func startForTest[T any](tb testing.TB, name string, tail int, start func(context.Context) (T, error),
	log func(T) Log, stop func(T) error) T {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultStartTimeout)
	defer cancel()
	inst, err := start(ctx)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			unavailable(tb, err)
		}
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s %s", name, log(inst).TailBlock(tail))
		}
		if err := stop(inst); err != nil {
			tb.Errorf("stop %s: %v", name, err)
		}
	})
	return inst
}
