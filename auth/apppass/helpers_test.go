package apppass_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
	"github.com/mailgate/mailgate/internal/testenv"
)

// testTimeout bounds each store call of the tests.
const testTimeout = 30 * time.Second

// fastHasher keeps tests quick where the hash cost does not matter
// (BenchmarkVerify and TestConcurrentVerify use the defaults).
var fastHasher = apppass.Argon2id{Time: 1, MemoryKiB: 64}

// sharedPG is the PostgreSQL server of the whole test binary, started by
// the first test that needs it and stopped by TestMain.
var sharedPG struct {
	once sync.Once
	pg   *testenv.Postgres
	err  error
	dbs  atomic.Int64 // databases created, for unique names
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedPG.pg != nil {
		if err := sharedPG.pg.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close postgres:", err)
		}
	}
	os.Exit(code)
}

// backend is a database the suite runs against.
type backend struct {
	name string
	// newURL returns the URL of a new, empty database.
	newURL func(t testing.TB) string
	// raw opens the database at url directly, for checks behind the store.
	raw func(t testing.TB, url string) *sql.DB
}

var backends = []backend{
	{
		name: "sqlite",
		newURL: func(t testing.TB) string {
			return "sqlite://" + filepath.Join(t.TempDir(), "apppass.db")
		},
		raw: func(t testing.TB, url string) *sql.DB {
			return openRaw(t, "sqlite", strings.TrimPrefix(url, "sqlite://")+"?_pragma=busy_timeout(5000)")
		},
	},
	{
		name: "postgres",
		newURL: func(t testing.TB) string {
			pg := postgres(t)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			url, err := pg.CreateDatabase(ctx, fmt.Sprintf("apppass_%d", sharedPG.dbs.Add(1)))
			if err != nil {
				t.Fatal(err)
			}
			return url
		},
		raw: func(t testing.TB, url string) *sql.DB { return openRaw(t, "pgx", url) },
	},
}

// postgres returns the shared server, skipping t (or failing it under
// MAILGATE_INTEGRATION=1) when PostgreSQL is not installed.
func postgres(t testing.TB) *testenv.Postgres {
	t.Helper()
	testenv.Require(t, testenv.PartPostgres)
	sharedPG.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		sharedPG.pg, sharedPG.err = testenv.NewPostgres(ctx, testenv.PostgresOptions{})
	})
	if sharedPG.err != nil {
		t.Fatalf("start postgres: %v", sharedPG.err)
	}
	return sharedPG.pg
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openStore opens a store on url, closed at the end of the test.
func openStore(t testing.TB, url string, opts apppass.Options) *apppass.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := apppass.Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openRaw opens a database/sql handle, closed at the end of the test.
func openRaw(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// tctx returns a context bounded by testTimeout.
func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return c
}

// countingHasher counts the hashes (Hash and Compare calls) of a Hasher.
type countingHasher struct {
	apppass.Hasher
	n atomic.Int64
}

func (h *countingHasher) Hash(p []byte) (string, error) {
	h.n.Add(1)
	return h.Hasher.Hash(p)
}

func (h *countingHasher) Compare(p []byte, encoded string) (bool, error) {
	h.n.Add(1)
	return h.Hasher.Compare(p, encoded)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer is a logger that keeps what is logged at Warn and above.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// mustCreate creates an app password or fails t.
func mustCreate(t testing.TB, s *apppass.Store, user, name string, protos []apppass.Protocol, expiry time.Duration) (string, apppass.Record) {
	t.Helper()
	pw, rec, err := s.Create(tctx(t), user, name, protos, expiry)
	if err != nil {
		t.Fatalf("Create(%s, %q) = %v", user, name, err)
	}
	return pw, rec
}
