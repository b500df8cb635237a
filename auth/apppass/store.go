package apppass

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Defaults of Options.
const (
	// DefaultOpTimeout bounds each operation (SQLite's busy timeout too).
	DefaultOpTimeout = 5 * time.Second
	// DefaultMaxConns is the connection pool size.
	DefaultMaxConns = 8
	// migrateTimeout bounds Open's migrations when ctx has no deadline.
	migrateTimeout = time.Minute
	// connMaxIdle closes pooled connections unused this long (not for an
	// in-memory SQLite database, which lives in its one connection).
	connMaxIdle = 5 * time.Minute
)

// Options configures Open. The zero value is usable: the default Policy,
// argon2id with the default parameters, no provider links.
type Options struct {
	// Policy bounds what users may create and use.
	Policy Policy
	// Hasher hashes passwords. Nil: Argon2id{} (the defaults).
	Hasher Hasher
	// MaxConcurrentHashes bounds the hashes running at once, and so the
	// memory they take (19 MiB each with the defaults); logins beyond it
	// wait, within their context. Zero: GOMAXPROCS.
	MaxConcurrentHashes int
	// Keys seals and opens the refresh tokens of provider links. Nil: the
	// provider-link operations that need a key fail with ErrNoKey.
	Keys *Keyring
	// OpTimeout bounds each operation, hashing and waiting for a pooled
	// connection included (for SQLite also the wait for the write lock).
	// Zero: DefaultOpTimeout.
	OpTimeout time.Duration
	// MaxConns bounds the pooled database connections (SQLite in memory:
	// always 1). Zero: DefaultMaxConns.
	MaxConns int
	// Logger receives migrations and failures to record a last use. Nil:
	// slog.Default(). Nothing secret is ever logged.
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Store keeps app passwords and provider links in SQLite or PostgreSQL.
// It is safe for concurrent use; Close releases it.
type Store struct {
	db        *sql.DB
	d         dialect
	name      string // the database URL without password, for logs
	policy    Policy
	hasher    Hasher
	hashes    chan struct{} // semaphore of running hashes
	keys      *Keyring
	opTimeout time.Duration
	log       *slog.Logger
	now       func() time.Time
}

// Open opens the database at dbURL (see the package doc for the forms),
// runs the missing migrations in one transaction (refusing a database
// migrated by a newer mailgate with ErrSchemaTooNew), and returns the
// store. ctx bounds the opening and the migrations (a minute if it has no
// deadline). A database that cannot be reached is an error wrapping
// auth.ErrUnavailable. Errors and logs never show the URL's password.
func Open(ctx context.Context, dbURL string, opts Options) (*Store, error) {
	s := newStore(opts)
	t, err := parseURL(dbURL, s.opTimeout)
	if err != nil {
		return nil, err
	}
	s.d, s.name = t.d, t.redacted
	if s.db, err = sql.Open(t.d.driver, t.dsn); err != nil {
		return nil, fmt.Errorf("apppass: open %s: %w", s.name, err)
	}
	s.configurePool(opts.MaxConns, t.memory)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, migrateTimeout)
		defer cancel()
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, unavailable("open "+s.name, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// newStore returns a Store with opts and their defaults, without a database.
func newStore(opts Options) *Store {
	s := &Store{policy: opts.Policy, hasher: opts.Hasher, keys: opts.Keys, opTimeout: opts.OpTimeout,
		log: opts.Logger, now: opts.Now}
	if s.hasher == nil {
		s.hasher = Argon2id{}
	}
	n := opts.MaxConcurrentHashes
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	s.hashes = make(chan struct{}, n)
	if s.opTimeout <= 0 {
		s.opTimeout = DefaultOpTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// configurePool sizes the pool: every connection stays idle in the pool
// (logins come in bursts; a new PostgreSQL connection costs a handshake),
// and an in-memory SQLite database has exactly one, kept forever.
func (s *Store) configurePool(maxConns int, memory bool) {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if memory {
		maxConns = 1
	} else {
		s.db.SetConnMaxIdleTime(connMaxIdle)
	}
	s.db.SetMaxOpenConns(maxConns)
	s.db.SetMaxIdleConns(maxConns)
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// opContext bounds one operation by OpTimeout.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// withHash runs f (one hash) once a hash slot is free, within ctx.
func (s *Store) withHash(ctx context.Context, f func() error) error {
	select {
	case s.hashes <- struct{}{}:
	case <-ctx.Done():
		return unavailable("wait for a hash slot", ctx.Err())
	}
	defer func() { <-s.hashes }()
	return f()
}

// inTx runs f in a transaction that holds the write lock (SQLite) or the
// lock of user (PostgreSQL, when user is not ""), and commits it if f
// returns nil. Database errors are wrapped as unavailable for op; f's own
// errors are returned as they are.
func (s *Store) inTx(ctx context.Context, op, user string, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(op, err)
	}
	defer tx.Rollback() // after Commit: sql.ErrTxDone, nothing to undo
	if user != "" && s.d.lockUser != "" {
		if _, err := tx.ExecContext(ctx, s.d.lockUser, user); err != nil {
			return unavailable(op, err)
		}
	}
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return unavailable(op, err)
	}
	return nil
}

// exec runs one statement and returns how many rows it changed. Database
// errors are wrapped as unavailable for op.
func (s *Store) exec(ctx context.Context, op, query string, args ...any) (int, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, unavailable(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, unavailable(op, err)
	}
	return int(n), nil
}

// storedNow is the clock's time as it is stored: to the microsecond, UTC.
func (s *Store) storedNow() time.Time { return timeOf(micros(s.now())) }

// micros is the stored form of a time: microseconds since 1970 UTC.
func micros(t time.Time) int64 { return t.UnixMicro() }

// timeOf is the time of a stored value.
func timeOf(v int64) time.Time { return time.UnixMicro(v).UTC() }

// fromMicros is the time of a stored optional value (zero for NULL).
func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return timeOf(v.Int64)
}

// nullMicros is the stored form of an optional time (NULL for zero).
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}
