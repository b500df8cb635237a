package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// Env is a set of instances shared by the tests of one test binary.
type Env struct {
	Dovecot *Dovecot
	Postfix *Postfix // authenticates against and delivers to Dovecot
	Hydra   *Hydra
}

// lazy starts one shared instance at most once.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

var (
	mainActive    atomic.Bool
	sharedDovecot lazy[*Dovecot]
	sharedPostfix lazy[*Postfix]
	sharedHydra   lazy[*Hydra]
)

// Main runs the tests of a package that uses [Shared] and friends, stops the
// shared instances (waiting for their processes), and exits with the tests'
// status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// SIGINT and SIGTERM also stop the shared instances before exiting.
func Main(m *testing.M) {
	mainActive.Store(true)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s, ok := <-sig
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "testenv: %v: stopping shared daemons\n", s)
		_ = StopShared()
		os.Exit(1)
	}()
	code := m.Run()
	signal.Stop(sig)
	if err := StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// StopShared stops every shared instance that was started (Postfix first).
// Main calls it; call it yourself only from a TestMain that does not use Main.
func StopShared() error {
	var errs []error
	if p := sharedPostfix.v; p != nil {
		errs = append(errs, p.Stop())
	}
	if d := sharedDovecot.v; d != nil {
		errs = append(errs, d.Stop())
	}
	if h := sharedHydra.v; h != nil {
		errs = append(errs, h.Stop())
	}
	return errors.Join(errs...)
}

// Shared returns the test binary's shared Dovecot, Postfix and Hydra,
// starting them (with default options) on first use. It skips or fails tb
// like [Require]; it fails tb if TestMain does not call [Main]. When tb
// fails, the log lines written during tb are printed.
func Shared(tb testing.TB) *Env {
	tb.Helper()
	pf := SharedPostfix(tb) // starts SharedDovecot first
	return &Env{Dovecot: pf.Dovecot, Postfix: pf, Hydra: SharedHydra(tb)}
}

// SharedDovecot is Shared for Dovecot alone (DovecotOptions{}).
func SharedDovecot(tb testing.TB) *Dovecot {
	tb.Helper()
	requireMain(tb)
	Require(tb, PartDovecot)
	sharedDovecot.once.Do(func() {
		sharedDovecot.v, sharedDovecot.err = NewDovecot(context.Background(), DovecotOptions{})
	})
	checkShared(tb, "dovecot", sharedDovecot.err)
	logOnFailure(tb, "dovecot", sharedDovecot.v.Log)
	return sharedDovecot.v
}

// SharedPostfix is Shared for Postfix in front of SharedDovecot (PostfixOptions{}).
func SharedPostfix(tb testing.TB) *Postfix {
	tb.Helper()
	dc := SharedDovecot(tb)
	Require(tb, PartPostfix)
	sharedPostfix.once.Do(func() {
		sharedPostfix.v, sharedPostfix.err = NewPostfix(context.Background(), dc, PostfixOptions{})
	})
	checkShared(tb, "postfix", sharedPostfix.err)
	logOnFailure(tb, "postfix", sharedPostfix.v.Log)
	return sharedPostfix.v
}

// SharedHydra is Shared for Hydra alone (HydraOptions{}); it needs no root.
func SharedHydra(tb testing.TB) *Hydra {
	tb.Helper()
	requireMain(tb)
	Require(tb, PartHydra)
	sharedHydra.once.Do(func() {
		sharedHydra.v, sharedHydra.err = NewHydra(context.Background(), HydraOptions{})
	})
	checkShared(tb, "hydra", sharedHydra.err)
	logOnFailure(tb, "hydra", sharedHydra.v.Log)
	return sharedHydra.v
}

func requireMain(tb testing.TB) {
	tb.Helper()
	if !mainActive.Load() {
		tb.Fatal("testenv: shared instances need func TestMain(m *testing.M) { testenv.Main(m) } so they are stopped at exit")
	}
}

func checkShared(tb testing.TB, name string, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrUnavailable) {
		unavailable(tb, err)
	}
	tb.Fatalf("start shared %s: %v", name, err)
}

// logOnFailure prints what l received during tb if tb fails.
func logOnFailure(tb testing.TB, name string, l Log) {
	mark := l.Mark()
	tb.Cleanup(func() {
		if !tb.Failed() {
			return
		}
		since := strings.TrimRight(l.Since(mark), "\n")
		if since == "" {
			tb.Logf("--- %s log (%s): nothing new during this test ---", name, l.Path)
			return
		}
		lines := strings.Split(since, "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		tb.Logf("--- %s log during this test (%s, last %d lines) ---\n%s\n---", name, l.Path, len(lines), strings.Join(lines, "\n"))
	})
}
