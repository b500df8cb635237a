// Package rig starts what the benchmarks measure, all on 127.0.0.1: mailgate
// (the binary, as `mailgate serve`), the nginx mail proxy with an auth_http
// handler, and a request-counting reverse proxy in front of the OpenID
// provider. Dovecot, Postfix and Hydra come from internal/testenv.
//
// Every process started here runs in a process group of its own with a
// parent-death signal, and Stop ends the whole group.
package rig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	// readyTimeout bounds the wait for a started proxy to answer.
	readyTimeout = 20 * time.Second
	// stopGrace is how long a process group gets after SIGTERM.
	stopGrace = 5 * time.Second
	// pollEvery is the period of readiness and exit polls.
	pollEvery = 20 * time.Millisecond
)

// FreePort returns a loopback address with a port that was free a moment
// ago.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// LoadUsers returns n mailboxes user000@example.test ... with password
// "password".
func LoadUsers(n int) []testenv.User {
	users := make([]testenv.User, n)
	for i := range users {
		users[i] = testenv.User{Name: fmt.Sprintf("user%03d@example.test", i), Password: "password"}
	}
	return users
}

// MintTokens mints one access token per address, conc at a time. Use
// conc 1 with testenv.Hydra: its Mint flows share one cookie jar.
func MintTokens(ctx context.Context, h *testenv.Hydra, emails []string, conc int) (map[string]string, error) {
	var (
		mu   sync.Mutex
		out  = make(map[string]string, len(emails))
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, max(conc, 1))
	)
	for _, e := range emails {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tok, err := h.Mint(ctx, e, testenv.TokenOptions{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("mint %s: %w", e, err))
				return
			}
			out[e] = tok.AccessToken
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// group is a child process leading its own process group.
type group struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// startGroup starts path with args and a clean environment; its output goes
// to logPath. deathSig is what the kernel sends it if we die first.
func startGroup(name, path string, args []string, logPath string, deathSig syscall.Signal) (*group, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g := &group{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(g.done) }()
	return g, nil
}

func (g *group) pid() int { return g.cmd.Process.Pid }

func (g *group) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, then SIGKILL after stopGrace, and waits
// until no member is left.
func (g *group) stop() {
	g.once.Do(func() {
		pgid := g.pid()
		syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := time.Now().Add(stopGrace)
		for time.Now().Before(deadline) && (len(proc.Group(pgid)) > 0 || !g.exited()) {
			time.Sleep(pollEvery)
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		deadline = time.Now().Add(stopGrace)
		for time.Now().Before(deadline) && (len(proc.Group(pgid)) > 0 || !g.exited()) {
			time.Sleep(pollEvery)
		}
	})
}

// waitIMAP polls addr until it greets over TLS, or the group exits.
func waitIMAP(ctx context.Context, g *group, addr string, tc *tls.Config, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		c, err := imapc.Dial(addr, imapc.Options{TLS: tc, Timeout: time.Second})
		if err == nil {
			c.Close()
			return nil
		}
		if g.exited() {
			return fmt.Errorf("%s exited: %s", g.name, tail(logPath, 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w (last: %v)\n%s", g.name, addr, ctx.Err(), err, tail(logPath, 20))
		case <-time.After(pollEvery):
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return path + ":\n" + strings.Join(lines, "\n")
}

// DovecotPIDs returns the master pid of dc and the pids of every process of
// its session (master, login, auth, imap, ...).
func DovecotPIDs(dc *testenv.Dovecot) (int, []int, error) {
	master, ok := proc.FindByCmdline("dovecot -F -c " + dc.Dir + "/conf/dovecot.conf")
	if !ok {
		return 0, nil, errors.New("dovecot master process not found")
	}
	st, err := proc.ReadStat(master)
	if err != nil {
		return 0, nil, err
	}
	return master, proc.Session(st.SID), nil
}

// IdleDovecotExtra tunes a Dovecot for 10,000 concurrent sessions: TLS
// sessions held by a few long-lived imap-login processes ("high-performance
// mode") instead of one process each, one imap process per session as in
// DMS, and process limits raised accordingly. mailbox_idle_check_interval
// goes back to Dovecot's (and DMS's) default of 30 s: internal/testenv sets
// 1 s for its tests, which makes every idle imap process wake each second,
// and 10,000 of them then keep 2 cores busy and slow the opening of sessions
// to a crawl (the setting is read last-wins).
const IdleDovecotExtra = `
mailbox_idle_check_interval = 30 secs
protocol imap {
  mail_max_userip_connections = 100000
}
service imap-login {
  service_count = 0
  process_min_avail = 4
  process_limit = 8
  client_limit = 4000
  vsz_limit = 2G
}
service imap {
  process_limit = 12000
}
default_client_limit = 15000
`

// FirstLine runs a command and returns the first line of its output ("?"
// when it could not run), e.g. FirstLine(binary, "version").
func FirstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
