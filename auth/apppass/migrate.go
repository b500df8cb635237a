package apppass

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// migrationsFS holds the schema migrations, one directory per dialect:
// NNNN_name.sql, numbered from 0001 without gaps, each applied once, in
// order, and never edited once released (add a new file instead).
//
//go:embed migrations
var migrationsFS embed.FS

// migration is one schema migration.
type migration struct {
	version int
	name    string // file name
	sql     string
}

// loadMigrations reads the migrations of dir, checking their numbering.
func loadMigrations(dir string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, fmt.Errorf("apppass: migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries { // sorted by name
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("apppass: migration file %s is not NNNN_name.sql", e.Name())
		}
		if v != len(ms)+1 {
			return nil, fmt.Errorf("apppass: migration %s: want version %d", e.Name(), len(ms)+1)
		}
		b, err := fs.ReadFile(migrationsFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("apppass: migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("apppass: no migrations in %s", dir)
	}
	return ms, nil
}

// SchemaVersion returns the schema version this code migrates to.
func SchemaVersion() int {
	ms, err := loadMigrations(sqliteDialect.migrations)
	if err != nil {
		return 0
	}
	return len(ms)
}

// migrate brings the schema to the latest version in one transaction,
// under the dialect's migration lock, so that replicas starting at once
// apply each migration once and a failure leaves the schema as it was.
// A database whose version is above the latest is refused.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations(s.d.migrations)
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	var applied []string
	err = s.inTx(ctx, "migrate", "", func(tx *sql.Tx) error {
		if s.d.lockMigrations != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
				return unavailable("migrate", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.createMigrations); err != nil {
			return fmt.Errorf("apppass: create schema_migrations: %w", err)
		}
		var current sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&current); err != nil {
			return unavailable("migrate", err)
		}
		if current.Int64 > int64(latest) {
			return fmt.Errorf("%w: %s is at version %d, this mailgate knows up to %d", ErrSchemaTooNew, s.name, current.Int64, latest)
		}
		for _, m := range ms[current.Int64:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apppass: migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				m.version, micros(s.now())); err != nil {
				return fmt.Errorf("apppass: record migration %s: %w", m.name, err)
			}
			applied = append(applied, m.name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range applied {
		s.log.Info("apppass: applied schema migration", "db", s.name, "migration", name)
	}
	return nil
}
