package apppass

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite", pure Go
)

// dialect is what differs between the two databases; every query is
// written once, with $N placeholders, which both drivers accept.
type dialect struct {
	name   string // "sqlite" or "postgres"
	driver string // database/sql driver name
	// migrations is the directory of the dialect's files in migrationsFS.
	migrations string
	// createMigrations creates the schema_migrations table if missing.
	createMigrations string
	// lockMigrations serialises the migrations of replicas that start at
	// once ("": the transaction itself is exclusive).
	lockMigrations string
	// lockUser, with $1 the user, serialises the transactions that count
	// and add one user's passwords ("": the transaction is exclusive).
	lockUser string
}

// SQLite: every transaction is BEGIN IMMEDIATE (_txlock), so it holds the
// write lock from the start and never fails to upgrade a read lock.
var sqliteDialect = dialect{
	name:             "sqlite",
	driver:           "sqlite",
	migrations:       "migrations/sqlite",
	createMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
}

// PostgreSQL: transaction-scoped advisory locks (the migration lock key is
// an arbitrary constant, "mgap" in ASCII).
var postgresDialect = dialect{
	name:             "postgres",
	driver:           "pgx",
	migrations:       "migrations/postgres",
	createMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
	lockMigrations:   `SELECT pg_advisory_xact_lock(1835495792)`,
	lockUser:         `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
}

// target is a parsed database URL.
type target struct {
	d        dialect
	dsn      string // for sql.Open
	memory   bool   // an in-memory SQLite database: one connection only
	redacted string // the URL without its password, for errors and logs
}

// parseURL reads a database URL:
//
//	sqlite:///var/lib/mailgate/apppass.db   an absolute path
//	sqlite:apppass.db                       a path relative to the working directory
//	sqlite::memory:                         in memory (tests; gone at Close)
//	postgres://user:pw@host:5432/db?sslmode=verify-full   (or postgresql://), as libpq/pgx take it
func parseURL(raw string, busy time.Duration) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("apppass: database URL: %w", stripURL(err))
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		return target{d: postgresDialect, dsn: raw, redacted: u.Redacted()}, nil
	case "sqlite":
	default:
		return target{}, fmt.Errorf("apppass: database URL: scheme %q is not sqlite, postgres or postgresql", u.Scheme)
	}
	path := u.Opaque
	if path == "" {
		path = u.Path
	}
	switch {
	case u.Host != "":
		return target{}, fmt.Errorf("apppass: database URL %s: sqlite takes no host (sqlite:///absolute/path)", u.Redacted())
	case path == "" || u.RawQuery != "" || u.ForceQuery || strings.ContainsAny(path, "?#"):
		return target{}, fmt.Errorf("apppass: database URL %s: want sqlite:///path, sqlite:path or sqlite::memory:", u.Redacted())
	}
	q := url.Values{}
	q.Add("_txlock", "immediate")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	memory := path == ":memory:"
	if !memory {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)") // durable enough with WAL: a crash loses at most the last commits
	}
	return target{d: sqliteDialect, dsn: path + "?" + q.Encode(), memory: memory, redacted: "sqlite:" + path}, nil
}

// stripURL returns the error of url.Parse without the URL it quotes (it
// may hold a password).
func stripURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
