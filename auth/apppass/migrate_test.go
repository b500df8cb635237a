package apppass_test

import (
	"errors"
	"testing"

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
