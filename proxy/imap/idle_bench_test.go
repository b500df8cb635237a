package imap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/proxytest"
)

// BenchmarkIdleSessions measures what one relayed IMAP session in IDLE
// holds in mailgate: the clients and the backend run in a child process
// (TestIdleSessionsChild), so that this process's memory is mailgate's
// alone. It opens idleSessions sessions once (run it with -benchtime 1x)
// and reports, per session, the growth of the live heap after a GC, of
// goroutine stacks, and of the process's PSS (what bench/run.sh compares),
// then the PSS once the free heap went back to the OS (FreeOSMemory): the
// difference is the GC's headroom (GOGC), about the live heap again. Plus
// the goroutines.
//
//	go test ./proxy/imap/ -run '^$' -bench IdleSessions -benchtime 1x
//
// MAILGATE_IDLE_HEAPPROFILE=file writes the live heap by allocation site
// once the sessions are open (with -memprofilerate 1 it is complete);
// MAILGATE_IDLE_GCS=n collects garbage n times (default 2) before each
// measurement, to see whether goroutine stacks shrink further.
func BenchmarkIdleSessions(b *testing.B) {
	const idleSessions = 1000
	child := startIdleChild(b)
	backend := child.line("backend ")
	addr, _, _ := benchProxyTo(b, backend)
	if v, err := strconv.Atoi(os.Getenv("MAILGATE_IDLE_GCS")); err == nil {
		gcs = v
	}
	before := measureMemory()
	child.send(fmt.Sprintf("open %s %d", addr, idleSessions))
	child.line("ready")
	after := measureMemory()
	if f := os.Getenv("MAILGATE_IDLE_HEAPPROFILE"); f != "" {
		writeHeapProfile(b, f)
	}
	debug.FreeOSMemory() // what the GC's headroom adds to the PSS above
	freed := measureMemory()
	for b.Loop() {
	}
	n := float64(idleSessions)
	b.ReportMetric(float64(freed.pss-before.pss)/n, "pss-freed-B/session")
	b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/session")
	b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/session")
	b.ReportMetric(float64(after.pss-before.pss)/n, "pss-B/session")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/session")
}

// writeHeapProfile writes what the live heap holds, by allocation site.
func writeHeapProfile(tb testing.TB, name string) {
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
}

type memory struct{ heap, stack, pss, goroutines int64 }

// measureMemory collects garbage twice (finalizers, then what they freed)
// and reads the live heap, the stacks and the process's PSS.
var gcs = 2

func measureMemory() memory {
	for range gcs {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse), pss: pssBytes(), goroutines: int64(runtime.NumGoroutine())}
}

// pssBytes is the process's proportional set size (0 if unknown).
func pssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// idleChild is the child process of BenchmarkIdleSessions, spoken to by lines.
type idleChild struct {
	tb  testing.TB
	in  *os.File
	out *bufio.Reader
}

func startIdleChild(tb testing.TB) *idleChild {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestIdleSessionsChild$", "-test.bench", "^$")
	cmd.Env = append(os.Environ(), "MAILGATE_IDLE_CHILD=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	return &idleChild{tb: tb, in: stdin.(*os.File), out: bufio.NewReader(stdout)}
}

func (c *idleChild) send(line string) { fmt.Fprintln(c.in, line) }

// line reads the child's lines up to the one that starts with prefix and
// returns the rest of it.
func (c *idleChild) line(prefix string) string {
	for {
		l, err := c.out.ReadString('\n')
		if err != nil {
			c.tb.Fatalf("child: waiting for %q: %v", prefix, err)
		}
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			return rest
		}
	}
}

// TestIdleSessionsChild is BenchmarkIdleSessions's child: it runs the
// backend, opens the sessions it is told to into IDLE and holds them until
// its stdin closes.
func TestIdleSessionsChild(t *testing.T) {
	if os.Getenv("MAILGATE_IDLE_CHILD") == "" {
		t.Skip("the child process of BenchmarkIdleSessions")
	}
	be := proxytest.StartStubBackend(t, benchBackend)
	fmt.Printf("\nbackend %s\n", be.Addr)
	in := bufio.NewScanner(os.Stdin)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for in.Scan() {
		var addr string
		var n int
		if _, err := fmt.Sscanf(in.Text(), "open %s %d", &addr, &n); err != nil {
			t.Fatalf("child: %q: %v", in.Text(), err)
		}
		cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}}
		for range n {
			bc := dialBench(t, addr, cfg)
			bc.login()
			bc.send("a2 IDLE")
			bc.expect("+ ")
			conns = append(conns, bc.c)
		}
		fmt.Println("ready")
	}
}
