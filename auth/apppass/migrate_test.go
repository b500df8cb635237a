package apppass_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

// Opening migrates once; reopening changes nothing; a database migrated
// by a newer mailgate is refused and left alone.
func TestMigrations(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		url := b.newURL(t)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher})
		pw, _ := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
		s.Close()
		s = openStore(t, url, apppass.Options{Hasher: fastHasher})
		if _, err := s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, ""); err != nil {
			t.Errorf("Verify after reopening = %v", err)
		}
		s.Close()

		raw := b.raw(t, url)
		versions := func() (n, max int) {
			t.Helper()
			if err := raw.QueryRowContext(tctx(t), `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
				t.Fatal(err)
			}
			return n, max
		}
		latest := apppass.SchemaVersion()
		if n, max := versions(); latest < 1 || n != latest || max != latest {
			t.Fatalf("schema_migrations has %d rows up to %d; want %d", n, max, latest)
		}

		if _, err := raw.ExecContext(tctx(t), `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, latest+1); err != nil {
			t.Fatal(err)
		}
		_, err := apppass.Open(tctx(t), url, apppass.Options{})
		if !errors.Is(err, apppass.ErrSchemaTooNew) {
			t.Fatalf("Open of a newer schema = %v, want ErrSchemaTooNew", err)
		}
		if n, _ := versions(); n != latest+1 {
			t.Errorf("the refused Open changed schema_migrations: %d rows", n)
		}
	})
}

// A database of version 1 (app passwords and provider links only) is
// brought to the latest version at Open, its data kept.
func TestMigrateFromVersion1(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		url := b.newURL(t)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher})
		pw, _ := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
		s.Close()
		raw := b.raw(t, url)
		for _, q := range []string{`DROP TABLE web_sessions`, `DROP TABLE web_signins`, `DELETE FROM schema_migrations WHERE version > 1`} {
			if _, err := raw.ExecContext(tctx(t), q); err != nil {
				t.Fatal(err)
			}
		}
		s = openStore(t, url, apppass.Options{Hasher: fastHasher})
		if _, err := s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, ""); err != nil {
			t.Errorf("Verify after the migration = %v", err)
		}
		id, _, err := s.CreateSession(tctx(t), "alice@example.test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(tctx(t), id); err != nil {
			t.Errorf("Session after the migration = %v", err)
		}
		var max int
		if err := raw.QueryRowContext(tctx(t), `SELECT MAX(version) FROM schema_migrations`).Scan(&max); err != nil || max != apppass.SchemaVersion() || max < 2 {
			t.Errorf("schema version %d, %v; want %d", max, err, apppass.SchemaVersion())
		}
	})
}
