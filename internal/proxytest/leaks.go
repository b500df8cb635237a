package proxytest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakSettle bounds the wait for goroutines and file descriptors to go back
// to where they were: connections are closed asynchronously (relay
// goroutines, go-smtp's connection goroutine, HTTP keep-alive readers).
const leakSettle = 10 * time.Second

// CheckLeaks records the goroutines and open file descriptors of the test
// process now and, once the test and every cleanup registered after this
// call have run, fails t if a goroutine started since is still running or
// more descriptors are open (both polled until leakSettle).
//
// Call it after the shared daemons the test uses have been obtained
// (testenv.Shared*: their first start leaves goroutines and descriptors
// behind on purpose) and before anything the test starts and stops itself
// (proxies, stubs, per-test daemons), so that their cleanups run first.
func CheckLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	before := OpenFDs()
	t.Cleanup(func() {
		t.Helper()
		// goleak.Find retries for about half a second; go on polling
		// up to leakSettle on a loaded machine.
		deadline := time.Now().Add(leakSettle)
		for {
			err := goleak.Find(ignore)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines leaked: %v", err)
				break
			}
		}
		deadline = time.Now().Add(leakSettle)
		for {
			after := OpenFDs()
			if len(after) <= len(before) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("file descriptors leaked: %d open before, %d after; new: %s",
					len(before), len(after), strings.Join(newFDs(before, after), ", "))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// OpenFDs maps the process's open descriptors to what they point at.
func OpenFDs() map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		m[e.Name()] = target
	}
	return m
}

func newFDs(before, after map[string]string) []string {
	var out []string
	for fd, target := range after {
		if before[fd] != target {
			out = append(out, fmt.Sprintf("%s -> %s", fd, target))
		}
	}
	sort.Strings(out)
	return out
}
