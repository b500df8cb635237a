package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// PostgresSuperuser is the superuser role that [NewPostgres] creates
	// (initdb -U).
	PostgresSuperuser = "mailgate"
	// postgresOSUser runs initdb and postgres when the tests run as root
	// (PostgreSQL refuses to run as root): the system user of Debian's
	// postgresql-common package.
	postgresOSUser = "postgres"
	// postgresGlob finds the server binaries of Debian's postgresql-NN packages.
	postgresGlob = "/usr/lib/postgresql/*/bin/initdb"
	// fastShutdownWait is how long a fast shutdown may take before Stop
	// asks for an immediate one, and immediateShutdownWait how long that
	// may take before the postmaster is killed (see stopPostgres).
	fastShutdownWait      = 3 * time.Second
	immediateShutdownWait = 2 * time.Second
)

// postgresName is what [Postgres.CreateDatabase] accepts as a database name.
var postgresName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// PostgresOptions configures [NewPostgres]. The zero value serves plaintext
// TCP with trust authentication.
type PostgresOptions struct {
	// BinDir holds initdb, postgres, pg_isready and psql. Empty: the one
	// [Check] finds (PartPostgres: the newest /usr/lib/postgresql/NN/bin).
	BinDir string
	// Password makes TCP clients authenticate as [PostgresSuperuser] with
	// SCRAM-SHA-256. Empty: trust (no password).
	Password string
}

// Postgres is a running PostgreSQL server on 127.0.0.1 (TCP only, no Unix
// socket) with its cluster in a temporary directory, tuned for tests
// (fsync off). Exported fields are read-only.
//
// Stop and Start take the server away and bring it back on the same port
// with its data; Close ends the instance and removes the cluster.
type Postgres struct {
	Dir      string // instance directory (removed by Close)
	Addr     string // 127.0.0.1:port, kept across Stop and Start
	Password string // as in PostgresOptions
	LogPath  string // the server's log (all its runs)
	Log      Log    // LogPath as a Log

	binDir, dataDir string
	setpriv         string // as root: the setpriv that runs the server as postgresOSUser; else ""

	mu sync.Mutex
	d  *daemon // nil: stopped

	closeOnce sync.Once
	closeErr  error
}

// StartPostgres starts PostgreSQL for a test and closes it in tb.Cleanup.
// It skips or fails tb (see [Require]) when PostgreSQL is missing.
func StartPostgres(tb testing.TB, opts PostgresOptions) *Postgres {
	tb.Helper()
	if opts.BinDir == "" {
		Require(tb, PartPostgres)
	}
	return startForTest(tb, "postgres", 30, func(ctx context.Context) (*Postgres, error) { return NewPostgres(ctx, opts) },
		func(x *Postgres) Log { return x.Log }, (*Postgres).Close)
}

// NewPostgres creates a cluster (initdb) and starts postgres on a free port
// of 127.0.0.1, waiting until it accepts connections; ctx bounds the start-up
// only (default 30 s). As root, both run as the system user "postgres". The
// caller must call Close.
func NewPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	binDir := opts.BinDir
	if binDir == "" {
		h, err := Check(PartPostgres)
		if err != nil {
			return nil, err
		}
		binDir = h.Postgres
	}
	if strings.ContainsAny(opts.Password, "\n\r") {
		return nil, errors.New("testenv: a postgres password cannot contain a line break")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	p := &Postgres{Password: opts.Password, binDir: binDir}
	var err error
	if os.Geteuid() == 0 {
		if p.setpriv, err = exec.LookPath("setpriv"); err != nil {
			return nil, fmt.Errorf("%w: setpriv (util-linux) to run postgres as %s: %v", ErrUnavailable, postgresOSUser, err)
		}
	}
	if p.Dir, err = makeInstanceDir("", "postgres"); err != nil {
		return nil, err
	}
	p.dataDir = filepath.Join(p.Dir, "data")
	p.LogPath = filepath.Join(p.Dir, "postgres.log")
	p.Log = Log{Path: p.LogPath}
	if err := p.initdb(ctx); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.firstStart(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// initdb creates the cluster in dataDir, owned by the user the server runs as.
func (p *Postgres) initdb(ctx context.Context) error {
	if err := os.Mkdir(p.dataDir, 0o700); err != nil {
		return fmt.Errorf("create postgres data dir: %w", err)
	}
	if err := p.giveAway(p.dataDir); err != nil {
		return err
	}
	args := []string{"-D", p.dataDir, "-U", PostgresSuperuser, "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"}
	if p.Password == "" {
		args = append(args, "--auth=trust")
	} else {
		pwfile := filepath.Join(p.Dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
			return fmt.Errorf("write postgres pwfile: %w", err)
		}
		defer os.Remove(pwfile)
		if err := p.giveAway(pwfile); err != nil {
			return err
		}
		args = append(args, "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile)
	}
	path, argv := p.argv("initdb", args...)
	cmd := exec.CommandContext(ctx, path, argv...)
	cmd.Env = daemonEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// argv returns the path and arguments that run the server binary name
// with args as the user the server runs as.
func (p *Postgres) argv(name string, args ...string) (string, []string) {
	bin := filepath.Join(p.binDir, name)
	if p.setpriv == "" {
		return bin, args
	}
	return p.setpriv, append([]string{"--reuid=" + postgresOSUser, "--regid=" + postgresOSUser, "--clear-groups", "--", bin}, args...)
}

// giveAway hands path to the user the server runs as (a no-op unless root).
func (p *Postgres) giveAway(path string) error {
	if p.setpriv == "" {
		return nil
	}
	u, err := user.Lookup(postgresOSUser)
	if err != nil {
		return fmt.Errorf("%w: system user %s: %v", ErrUnavailable, postgresOSUser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("system user %s: %w", postgresOSUser, err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// firstStart picks a free port and starts the server, with another port if
// the first one was taken meanwhile.
func (p *Postgres) firstStart(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		ports, err := pickPorts("127.0.0.1", 1)
		if err != nil {
			return err
		}
		p.Addr = loopback(ports[0])
		mark := p.Log.Mark()
		err = p.Start(ctx)
		if err == nil || attempt >= maxStartAttempts || !portConflict(p.Log.Since(mark)) {
			return err
		}
	}
}

// Start starts the server again after Stop, on the same port and with its
// data, and waits until it accepts connections; ctx bounds the wait
// (default 30 s). It fails if the server is running, or if its port was
// taken meanwhile.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.d != nil {
		return errors.New("testenv: postgres is running")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	_, port, _ := strings.Cut(p.Addr, ":")
	path, argv := p.argv("postgres", "-D", p.dataDir, "-p", port,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", // TCP only: no socket in /run/postgresql
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	d, err := startDaemon("postgres", path, argv, daemonEnv, p.LogPath, p.Dir, "")
	if err != nil {
		return err
	}
	if err := pollReady(ctx, d, []func(context.Context) error{p.ready}); err != nil {
		stopPostgres(d)
		return fmt.Errorf("postgres did not start: %w\n%s", err, p.Log.TailBlock(20))
	}
	p.d = d
	return nil
}

// ready is the readiness probe: pg_isready says "accepting connections".
func (p *Postgres) ready(ctx context.Context) error {
	host, port, _ := strings.Cut(p.Addr, ":")
	out, err := exec.CommandContext(ctx, filepath.Join(p.binDir, "pg_isready"),
		"-h", host, "-p", port, "-U", PostgresSuperuser, "-d", "postgres").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_isready: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Stop stops the server (fast shutdown: open sessions are ended) and waits
// for it to exit. The cluster stays: Start brings the server back on the
// same port with its data. Stopping a stopped server does nothing.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.d == nil {
		return nil
	}
	err := stopPostgres(p.d)
	p.d = nil
	return err
}

// stopPostgres stops the server in at most fastShutdownWait +
// immediateShutdownWait (plus the daemon stop's wait for the exit): a fast
// shutdown first (SIGINT; SIGTERM, which the daemon stop sends, is a smart
// shutdown that waits for idle pooled sessions), then an immediate one
// (SIGQUIT: the next start recovers from the WAL), then SIGKILL. The last
// two are for connections accepted during the shutdown that never send a
// startup packet: the postmaster waits for their "dead end" children up
// to authentication_timeout (a minute) and never signals them; they exit
// on their own once the postmaster is gone. Signalling an exited process
// is not an error here.
func stopPostgres(d *daemon) error {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, fastShutdownWait}, {syscall.SIGQUIT, immediateShutdownWait}, {syscall.SIGKILL, 0}} {
		if d.exited() {
			break
		}
		_ = syscall.Kill(d.pid(), step.sig)
		select {
		case <-d.done:
		case <-time.After(step.wait):
		}
	}
	return d.stop()
}

// Close stops the server and removes Dir (unless MAILGATE_TESTENV_KEEP=1).
// It is idempotent.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = errors.Join(p.Stop(), removeInstanceDir(p.Dir))
	})
	return p.closeErr
}

// URL returns the connection URL of database db as PostgresSuperuser
// (with the password, if any, and sslmode=disable).
func (p *Postgres) URL(db string) string {
	u := &url.URL{Scheme: "postgres", Host: p.Addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	if p.Password != "" {
		u.User = url.UserPassword(PostgresSuperuser, p.Password)
	} else {
		u.User = url.User(PostgresSuperuser)
	}
	return u.String()
}

// CreateDatabase creates the database name ([a-z_][a-z0-9_]*, at most 63
// bytes) and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	if !postgresName.MatchString(name) {
		return "", fmt.Errorf("testenv: invalid postgres database name %q", name)
	}
	if _, err := p.Psql(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return p.URL(name), nil
}

// Psql runs the SQL commands in query with psql on database db and returns
// the rows of the last one, unaligned ("|" between columns, one line each).
// An error of the server fails it.
func (p *Postgres) Psql(ctx context.Context, db, query string) (string, error) {
	host, port, _ := strings.Cut(p.Addr, ":")
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, "psql"), "-X", "-w", "-At", "-v", "ON_ERROR_STOP=1",
		"-h", host, "-p", port, "-U", PostgresSuperuser, "-d", db, "-c", query)
	cmd.Env = daemonEnv
	if p.Password != "" {
		cmd.Env = append(slices.Clone(daemonEnv), "PGPASSWORD="+p.Password)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// postgresBinDir returns the bin directory of the newest PostgreSQL server
// installed from Debian's packages.
func postgresBinDir() (string, error) {
	matches, _ := filepath.Glob(postgresGlob) // the pattern is valid
	best, bestVersion := "", -1
	for _, m := range matches {
		bin := filepath.Dir(m)
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
		if err != nil || v <= bestVersion {
			continue
		}
		if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
			continue
		}
		best, bestVersion = bin, v
	}
	if best == "" {
		return "", errors.New("no " + postgresGlob)
	}
	return best, nil
}

// checkPostgres is Check's part for PartPostgres: it sets h.Postgres or
// adds what is missing.
func checkPostgres(h *Host, missing *[]string) {
	bin, err := postgresBinDir()
	if err != nil {
		*missing = append(*missing, "PostgreSQL server ("+postgresGlob+", Debian's postgresql package)")
	} else {
		h.Postgres = bin
	}
	if os.Geteuid() != 0 {
		return
	}
	if _, err := user.Lookup(postgresOSUser); err != nil {
		*missing = append(*missing, "system user "+postgresOSUser+" (to run PostgreSQL as root)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		*missing = append(*missing, "setpriv (util-linux, to run PostgreSQL as root)")
	}
}
