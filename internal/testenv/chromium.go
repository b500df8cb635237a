package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

const (
	// browserStartTimeout bounds NewBrowser's start of Chromium and its
	// first tab, so a broken browser fails the test instead of hanging it.
	browserStartTimeout = 30 * time.Second
	// browserCloseTimeout bounds the graceful close (Browser.close) in the
	// cleanup, before the remaining processes are killed.
	browserCloseTimeout = 10 * time.Second
	// browserLogLines is how much of the browser's log a failed test prints.
	browserLogLines = 80
	// browserHostRules makes every host but localhost and the loopback
	// addresses (127.0.0.0/8, ::1) fail to resolve, IP literals included,
	// so the browser cannot reach out to the internet (component updates,
	// safe browsing, ...) and a test page cannot load anything from
	// outside (net::ERR_NAME_NOT_RESOLVED). Not *.localhost either.
	browserHostRules = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE ::1, EXCLUDE [::1]"
)

// ChromiumBinary is the Chromium used by [NewBrowser]:
// $MAILGATE_CHROMIUM_BIN, else /usr/lib/chromium/chromium (Debian's package;
// /usr/bin/chromium is a wrapper script that adds Debian's Google API keys and
// flags of its own), else chromium in PATH, else /usr/bin/chromium.
func ChromiumBinary() string {
	if p := os.Getenv("MAILGATE_CHROMIUM_BIN"); p != "" {
		return p
	}
	const debian = "/usr/lib/chromium/chromium"
	if isExecutable(debian) {
		return debian
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return "/usr/bin/chromium"
}

// CheckChromium looks for Chromium; the error wraps [ErrUnavailable].
func CheckChromium() (string, error) {
	p := ChromiumBinary()
	if !isExecutable(p) {
		return "", fmt.Errorf("%w: missing Chromium %s (Debian package chromium, or set MAILGATE_CHROMIUM_BIN)", ErrUnavailable, p)
	}
	return p, nil
}

// RequireChromium is [Require] for Chromium: it skips tb when the binary is
// missing, or fails it when MAILGATE_INTEGRATION=1. It returns the binary.
func RequireChromium(tb testing.TB) string {
	tb.Helper()
	p, err := CheckChromium()
	if err != nil {
		unavailable(tb, err)
	}
	return p
}

// BrowserOptions configures [NewBrowser]. The zero value is a browser with
// JavaScript on that verifies certificates as usual.
type BrowserOptions struct {
	// NoJavaScript disables script execution in the browser's tab
	// (Emulation.setScriptExecutionDisabled, set before the first
	// navigation and kept across navigations), as a user with JavaScript
	// turned off has it: the page must work without, and <noscript>
	// content is shown. chromedp's actions still work, since they evaluate
	// through DevTools (Text, Value, Evaluate, ...); Click is a real mouse
	// click, so it submits forms natively. It applies to this context's tab
	// only, not to tabs or popups the page opens. False: scripts run.
	NoJavaScript bool
	// IgnoreCertErrors makes the browser accept any server certificate
	// (--ignore-certificate-errors), such as the harness's test CA's or
	// httptest.NewTLSServer's. False: certificates are verified against
	// the system's roots, so those pages fail to load.
	IgnoreCertErrors bool
}

// NewBrowser starts a headless Chromium ([RequireChromium]) for tb and
// returns a chromedp context for its one tab, ready to use with
// chromedp.Do and chromedp.Run. It fails tb if the browser does not start
// within 30 s.
//
// The browser runs without sandbox (tests run as root), without GPU, with a
// fresh profile and HOME under tb.TempDir(), none of the test's environment,
// no proxy, no extensions, sync, background networking or component
// updates, and a host resolver that knows only localhost and the loopback
// addresses, so it makes no connections to the outside.
//
// chromedp's log and errors and the browser's output are kept, and printed
// by tb.Cleanup only when tb failed. The cleanup closes the browser, kills
// whatever is left of its processes and waits until they are gone. If the
// test binary dies, the browser gets SIGKILL (parent-death signal) and its
// children exit with it.
//
// Do not give the returned context a deadline before it has run (it would
// stop the browser): derive a context.WithTimeout from it for one action.
func NewBrowser(tb testing.TB, opts BrowserOptions) context.Context {
	tb.Helper()
	bin := RequireChromium(tb)
	dir := tb.TempDir()
	home, profile := filepath.Join(dir, "home"), filepath.Join(dir, "profile")
	for _, d := range []string{home, profile} {
		if err := os.Mkdir(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	log := &browserLog{}
	var cmd *exec.Cmd // the browser's, once chromedp has made it
	env := append(append([]string(nil), daemonEnv...),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
	)
	aopts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("host-resolver-rules", browserHostRules),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,InterestFeedContentSuggestions"),
		chromedp.NoInheritEnv,
		chromedp.Env(env...),
		chromedp.CombinedOutput(log),
		// Its own process group, so the cleanup can find every process;
		// this replaces chromedp's default, which sets the parent-death
		// signal only. It runs in Allocate, so within chromedp.Do below.
		chromedp.ModifyCmdFunc(func(c *exec.Cmd) {
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			cmd = c
		}),
	)
	if opts.IgnoreCertErrors {
		aopts = append(aopts, chromedp.IgnoreCertErrors)
	}

	// parent ends everything: the start-up timer cancels it.
	parent, cancelParent := context.WithCancel(context.Background())
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, aopts...)
	ctx, _ := chromedp.NewContext(allocCtx,
		chromedp.WithLogf(log.printf("chromedp: ")),
		chromedp.WithErrorf(log.printf("chromedp ERROR: ")),
	)
	var closeOnce sync.Once
	closeBrowser := func() {
		closeOnce.Do(func() {
			if c := chromedp.FromContext(ctx); c != nil && c.Browser != nil {
				cctx, cancel := context.WithTimeout(ctx, browserCloseTimeout)
				if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
					log.Write([]byte("close: " + err.Error() + "\n"))
				}
				cancel()
			} else {
				_ = chromedp.Cancel(ctx) // never started: releases the context
			}
			cancelParent()
			cancelAlloc() // waits for chromedp's goroutines
			// chromedp.Do has returned: Start, if called, is done.
			if cmd != nil && cmd.Process != nil {
				killBrowserGroup(cmd.Process.Pid)
			}
			killProcessesWith(dir + "/")
		})
	}
	tb.Cleanup(func() {
		closeBrowser()
		if tb.Failed() {
			tb.Logf("--- browser log (%s), without D-Bus noise, last %d lines ---\n%s\n---", bin, browserLogLines, log.Tail())
		}
	})

	// The first Do starts the browser and attaches to its tab.
	setup := []chromedp.Action[chromedp.Void]{}
	if opts.NoJavaScript {
		setup = append(setup, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}))
	}
	timer := time.AfterFunc(browserStartTimeout, cancelParent)
	err := chromedp.Do(ctx, setup...)
	if !timer.Stop() {
		err = fmt.Errorf("not ready after %v (%v)", browserStartTimeout, err)
	}
	if err != nil {
		tb.Fatalf("start Chromium %s: %v", bin, err) // the cleanup prints the log
	}
	return ctx
}

// browserLog collects chromedp's messages and the browser's output.
type browserLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *browserLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *browserLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Tail is the last browserLogLines lines, without the errors about the
// missing D-Bus that Chromium logs all the time.
func (l *browserLog) Tail() string {
	var keep []string
	for line := range strings.Lines(l.String()) {
		if !strings.Contains(line, ":ERROR:dbus/") {
			keep = append(keep, line)
		}
	}
	return tail(strings.Join(keep, ""), browserLogLines)
}

// printf returns a printf-like function that appends one line to l.
func (l *browserLog) printf(prefix string) func(string, ...any) {
	return func(format string, args ...any) {
		line := time.Now().Format("15:04:05.000 ") + prefix + fmt.Sprintf(format, args...)
		l.Write([]byte(strings.TrimRight(line, "\n") + "\n"))
	}
}

// killBrowserGroup kills what is left of the browser's process group and
// waits (bounded) until it is gone.
func killBrowserGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	for deadline := time.Now().Add(killWait); groupAlive(pgid) && time.Now().Before(deadline); {
		time.Sleep(pollInterval)
	}
}

// killProcessesWith kills the processes with an argument containing s (the
// browser's unique directory: --user-data-dir of its children, --database
// of the crash handlers, which leave the process group) and waits (bounded)
// until none is left.
func killProcessesWith(s string) {
	for deadline := time.Now().Add(killWait); time.Now().Before(deadline); time.Sleep(pollInterval) {
		if n := signalProcessesWith(s, syscall.SIGKILL); n == 0 {
			return
		}
	}
}

// signalProcessesWith sends sig to every live process (not zombies) with an
// argument containing s and returns how many there were.
func signalProcessesWith(s string, sig syscall.Signal) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 { // gone, or a zombie
			continue
		}
		for a := range bytes.SplitSeq(cmdline, []byte{0}) {
			if bytes.Contains(a, []byte(s)) {
				_ = syscall.Kill(pid, sig)
				n++
				break
			}
		}
	}
	return n
}
