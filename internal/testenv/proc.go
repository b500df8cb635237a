package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	// stopGrace is how long a master gets to exit after SIGTERM, and then how
	// long its process group gets, before everything left is SIGKILLed.
	stopGrace = 10 * time.Second
	// killWait bounds the wait after SIGKILL.
	killWait = 5 * time.Second
	// pollInterval is the period of every readiness and exit poll.
	pollInterval = 25 * time.Millisecond
	// defaultStartTimeout bounds a daemon start when the context has no deadline.
	defaultStartTimeout = 30 * time.Second
)

// daemonEnv is the whole environment of the daemons: nothing of the test's
// environment (DSN, SECRETS_*, MAIL_CONFIG, ...) leaks into them.
var daemonEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}

// watchdogScript runs beside each daemon, in a session of its own, with its
// stdin the read end of a pipe whose only write end is held by the test
// binary. When the test binary dies (even by SIGKILL), read returns and the
// script stops the daemon's process group and removes its directory.
// The parent-death signal alone is not enough: the kernel clears it when a
// process changes its effective uid, which Postfix's master does, and
// Dovecot's children outlive their master.
// Arguments: $1 process group, $2 instance directory, $3 "1" to keep it.
// (dash's kill takes no "--"; "-PGID" after the signal is a process group.)
const watchdogScript = `read -r _
kill -TERM "-$1" 2>/dev/null
i=0
while kill -0 "-$1" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "-$1" 2>/dev/null
[ "$3" = 1 ] || rm -rf -- "$2"
`

// daemon is one foreground master process started in its own session (so its
// pid is the process group of every process it forks) with a parent-death
// signal and a watchdog (so it also stops when the test binary dies).
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the master has exited and was reaped

	watchdog *exec.Cmd // nil if it could not be started
	watchW   *os.File  // write end of the watchdog's stdin

	stopOnce sync.Once
	stopErr  error
}

// startDaemon starts path with args. Its stdin is /dev/null and its stdout and
// stderr go to the file outPath (never to the test's output: Dovecot keeps
// them open, which would block go test's pipe). dir is the instance
// directory the watchdog removes if the test binary dies. A non-empty root
// is a directory the daemon is chrooted into before path (a path inside root)
// is executed.
func startDaemon(name, path string, args, env []string, outPath, dir, root string) (*daemon, error) {
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s output: %w", name, err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	if root != "" {
		cmd.SysProcAttr.Chroot = root
		cmd.Dir = "/" // inside root: the kernel resolves it after the chroot
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status of a stopped daemon says nothing useful
		close(d.done)
	}()
	if err := d.startWatchdog(dir); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// startWatchdog starts watchdogScript for d.
func (d *daemon) startWatchdog(dir string) error {
	r, w, err := os.Pipe() // close-on-exec: only the watchdog gets r, nobody else gets w
	if err != nil {
		return fmt.Errorf("%s watchdog pipe: %w", d.name, err)
	}
	defer r.Close()
	keep := "0"
	if keepDirs() {
		keep = "1"
	}
	wd := exec.Command("/bin/sh", "-c", watchdogScript, "testenv-watchdog", strconv.Itoa(d.pid()), dir, keep)
	wd.Env = daemonEnv
	wd.Stdin = r
	wd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := wd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("%s watchdog: %w", d.name, err)
	}
	d.watchdog, d.watchW = wd, w
	return nil
}

// stopWatchdog kills the watchdog (it must not signal a group that may be
// gone and its id reused) and reaps it.
func (d *daemon) stopWatchdog() {
	if d.watchdog == nil {
		return
	}
	_ = d.watchdog.Process.Kill()
	_ = d.watchdog.Wait() // killed: the status is always "signal: killed"
	d.watchW.Close()
	d.watchdog = nil
}

// pid is the master's pid, which is also its process group id.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// exited reports whether the master has exited.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the master's process group and waits until every
// process of the group has exited, escalating to SIGKILL after stopGrace. It is
// idempotent.
func (d *daemon) stop() error {
	d.stopOnce.Do(func() { d.stopErr = d.doStop() })
	return d.stopErr
}

func (d *daemon) doStop() error {
	d.stopWatchdog()
	pgid := d.pid()
	if !d.exited() {
		// The whole group: Dovecot's master alone takes 1 s to shut down
		// its children, a group SIGTERM takes milliseconds.
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(stopGrace)
	select {
	case <-d.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-d.done:
		case <-time.After(killWait):
			return fmt.Errorf("%s master pid %d did not exit after SIGKILL", d.name, pgid)
		}
	}
	// Children (imap, smtpd, ...) may need a moment after their master.
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killDeadline := time.Now().Add(killWait)
			for groupAlive(pgid) {
				if time.Now().After(killDeadline) {
					return fmt.Errorf("%s: processes of group %d still alive after SIGKILL", d.name, pgid)
				}
				time.Sleep(pollInterval)
			}
			return nil
		}
		time.Sleep(pollInterval)
	}
	return nil
}

// groupAlive reports whether a live (non-zombie) process is in process group pgid.
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 3 || string(f[0]) == "Z" || string(f[0]) == "X" {
			continue
		}
		if g, err := strconv.Atoi(string(f[2])); err == nil && g == pgid {
			return true
		}
	}
	return false
}

// errExited is returned by readiness polls when the daemon died during start-up.
var errExited = errors.New("daemon exited during start-up")

// runQuiet runs a short helper command (postfix check, openssl) with the
// daemon environment and returns its combined output.
func runQuiet(stdin []byte, path string, args ...string) ([]byte, error) {
	return runQuietIn("", stdin, path, args...)
}

// runQuietIn is runQuiet with path (a path inside root) run chrooted into
// root when root is not empty.
func runQuietIn(root string, stdin []byte, path string, args ...string) ([]byte, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = daemonEnv
	if root != "" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/"
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}

// keepDirs reports whether MAILGATE_TESTENV_KEEP=1 asks to keep instance directories.
func keepDirs() bool { return os.Getenv("MAILGATE_TESTENV_KEEP") == "1" }

// makeInstanceDir creates a world-traversable temporary directory (the
// daemons' unprivileged users must reach their files in it).
// parent is the directory to create it in ("": os.TempDir()).
func makeInstanceDir(parent, kind string) (string, error) {
	dir, err := os.MkdirTemp(parent, "mailgate-"+kind+"-")
	if err != nil {
		return "", fmt.Errorf("create %s dir: %w", kind, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("chmod %s dir: %w", kind, err)
	}
	return dir, nil
}

// removeInstanceDir deletes dir unless MAILGATE_TESTENV_KEEP=1.
func removeInstanceDir(dir string) error {
	if dir == "" || keepDirs() {
		return nil
	}
	return os.RemoveAll(dir)
}
