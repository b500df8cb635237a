package apppass_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
	"github.com/mailgate/mailgate/internal/testenv"
)

// concurrentLogins is how many logins TestConcurrentVerify runs at once.
const concurrentLogins = 50

// 50 logins with one password at once, with the default argon2id: all
// succeed, each costs one hash, nothing waits on a database lock long
// enough to log (the last-use write happens once), and the whole burst
// takes about 50 hashes / cores.
func TestConcurrentVerify(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		h := &countingHasher{Hasher: apppass.Argon2id{}}
		var logs logBuffer
		url := b.newURL(t)
		// A generous OpTimeout: on a loaded machine 50 hashes queued
		// behind GOMAXPROCS slots may take longer than the default 5 s,
		// and this test is about correctness, not latency.
		s := openStore(t, url, apppass.Options{Hasher: h, Logger: logs.logger(), OpTimeout: 2 * time.Minute})
		pw, rec := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
		before := h.n.Load()
		start := make(chan struct{})
		errs := make(chan error, concurrentLogins)
		var wg sync.WaitGroup
		for i := range concurrentLogins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := s.Verify(context.Background(), "alice@example.test", pw, apppass.IMAP, fmt.Sprintf("192.0.2.%d:1234", i+1)) // bounded by OpTimeout
				errs <- err
			}()
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		elapsed := time.Since(t0)
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Verify = %v", err)
			}
		}
		if n := h.n.Load() - before; n != concurrentLogins {
			t.Errorf("hashes = %d, want %d (one per login)", n, concurrentLogins)
		}
		if l := logs.String(); l != "" {
			t.Errorf("logged during the burst:\n%s", l)
		}
		var ip string
		if err := b.raw(t, url).QueryRowContext(tctx(t), `SELECT last_used_ip FROM app_passwords WHERE id = $1`, rec.ID).Scan(&ip); err != nil || !strings.HasPrefix(ip, "192.0.2.") {
			t.Errorf("last use address %q, %v", ip, err)
		}
		t.Logf("%d concurrent logins in %v", concurrentLogins, elapsed)
	})
}

// Nothing stored holds a password, its secret part, a refresh token, a
// session id or a sign-in state in clear: every column of every row of
// every table is scanned.
func TestNoPlaintextStored(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		url := b.newURL(t)
		s := openStore(t, url, apppass.Options{Hasher: fastHasher, Keys: testKeyring(t)})
		var secrets []string
		for i := range 3 {
			pw, rec := mustCreate(t, s, "alice@example.test", fmt.Sprintf("device %d", i), nil, 0)
			secrets = append(secrets, pw, pw[len(apppass.Prefix)+len(rec.ID)+1:])
			if _, err := s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
		}
		const token = "refresh-token-that-must-not-be-stored-in-clear"
		if err := s.SetRefreshToken(tctx(t), "alice@example.test", token); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, token)
		id, _, err := s.CreateSession(tctx(t), "alice@example.test", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		in, err := s.BeginSignIn(tctx(t), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, id, in.State) // the CSRF token and the verifier are stored by design
		raw := b.raw(t, url)
		cells := 0
		for _, table := range []string{"app_passwords", "provider_links", "schema_migrations", "web_sessions", "web_signins"} {
			cells += scanTable(t, raw, table, func(cell string) {
				for _, sec := range secrets {
					if strings.Contains(strings.ToLower(cell), strings.ToLower(sec)) {
						t.Errorf("table %s holds a secret in clear: %q", table, cell)
					}
				}
			})
		}
		if cells < 3*10+7 {
			t.Errorf("scanned only %d cells", cells)
		}
	})
}

// scanTable calls f with every cell of table as text and returns how many.
func scanTable(t *testing.T, db *sql.DB, table string, f func(string)) int {
	t.Helper()
	rows, err := db.QueryContext(tctx(t), "SELECT * FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	n := 0
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if b, ok := v.([]byte); ok {
				f(string(b))
			} else {
				f(fmt.Sprint(v))
			}
			n++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// A PostgreSQL outage is a temporary failure (auth.ErrUnavailable), never
// a refusal; the pool recovers when the server is back.
func TestPostgresOutage(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	url, err := pg.CreateDatabase(tctx(t), "outage")
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, url, apppass.Options{Hasher: fastHasher, OpTimeout: 3 * time.Second})
	pw, _ := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
	if _, err := s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, ""); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, "")
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Verify during the outage = %v, want ErrUnavailable only", err)
	}
	if d := time.Since(t0); d > 6*time.Second {
		t.Errorf("Verify during the outage took %v (OpTimeout 3 s)", d)
	}
	if _, _, err := s.Create(tctx(t), "alice@example.test", "x", nil, 0); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("Create during the outage = %v", err)
	}
	if err := pg.Start(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(tctx(t), "alice@example.test", pw, apppass.IMAP, ""); err != nil {
		t.Errorf("Verify after the outage = %v", err)
	}
}

// An ended context is a temporary failure too, also while waiting for a
// hash slot.
func TestVerifyCanceled(t *testing.T) {
	s := openStore(t, "sqlite::memory:", apppass.Options{Hasher: fastHasher})
	pw, _ := mustCreate(t, s, "alice@example.test", "phone", nil, 0)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Verify(c, "alice@example.test", pw, apppass.IMAP, ""); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("Verify with a canceled context = %v", err)
	}
}

// StillValid follows revocation, expiry, suspension and scope without a
// hash, and says nothing good about unknown ids or another user's.
func TestStillValid(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		clock := newClock()
		s := openStore(t, b.newURL(t), apppass.Options{Hasher: fastHasher, Keys: testKeyring(t), Now: clock.Now})
		ctx := tctx(t)
		_, rec := mustCreate(t, s, "alice@example.test", "phone", []apppass.Protocol{apppass.IMAP}, time.Hour)
		_, other := mustCreate(t, s, "alice@example.test", "laptop", nil, 0)
		if err := s.StillValid(ctx, rec.ID, "Alice@example.test", apppass.IMAP); err != nil {
			t.Fatalf("a fresh password: %v", err)
		}
		refused := func(what, id, user string, proto apppass.Protocol, want error) {
			t.Helper()
			err := s.StillValid(ctx, id, user, proto)
			if !errors.Is(err, want) || !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Errorf("%s: %v, want %v", what, err, want)
			}
		}
		refused("out of scope", rec.ID, "alice@example.test", apppass.SMTP, apppass.ErrProtocol)
		refused("another user", rec.ID, "bob@example.test", apppass.IMAP, apppass.ErrInvalid)
		refused("unknown id", "aaaaaaaaaaaaaaaa", "alice@example.test", apppass.IMAP, apppass.ErrInvalid)
		refused("malformed id", "x", "alice@example.test", apppass.IMAP, apppass.ErrInvalid)
		if err := s.SetRefreshToken(ctx, "alice@example.test", "rt"); err != nil {
			t.Fatal(err)
		}
		if err := s.Suspend(ctx, "alice@example.test", "invalid_grant"); err != nil {
			t.Fatal(err)
		}
		refused("suspended", other.ID, "alice@example.test", apppass.IMAP, apppass.ErrSuspended)
		if err := s.SetRefreshToken(ctx, "alice@example.test", "rt2"); err != nil {
			t.Fatal(err)
		}
		if err := s.StillValid(ctx, other.ID, "alice@example.test", apppass.SMTP); err != nil {
			t.Errorf("after signing in again: %v", err)
		}
		if err := s.Revoke(ctx, "alice@example.test", other.ID); err != nil {
			t.Fatal(err)
		}
		refused("revoked", other.ID, "alice@example.test", apppass.IMAP, apppass.ErrInvalid)
		clock.Add(time.Hour)
		refused("expired", rec.ID, "alice@example.test", apppass.IMAP, apppass.ErrInvalid)
	})
}
