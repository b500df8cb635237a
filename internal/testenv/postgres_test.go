package testenv_test

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// postgresTimeout bounds each psql call in these tests.
const postgresTimeout = 10 * time.Second

// TestPostgresStopStart: the server answers on 127.0.0.1, is gone after
// Stop (even with an idle session open), and comes back on the same
// address with its data after Start.
func TestPostgresStopStart(t *testing.T) {
	p := testenv.StartPostgres(t, testenv.PostgresOptions{})
	if !strings.HasPrefix(p.Addr, "127.0.0.1:") {
		t.Fatalf("Addr %q is not on 127.0.0.1", p.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*postgresTimeout)
	defer cancel()
	u, err := p.CreateDatabase(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://mailgate@" + p.Addr + "/kept?sslmode=disable"; u != want {
		t.Errorf("URL %q, want %q", u, want)
	}
	if _, err := p.Psql(ctx, "kept", "CREATE TABLE t (v text); INSERT INTO t VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	// A connection that never sends its startup packet: a smart shutdown
	// waits for it, and if the postmaster accepts it only once shutting
	// down, fast and immediate shutdowns wait for it too.
	idle, err := net.DialTimeout("tcp", p.Addr, postgresTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Stop took %v with an idle connection", d)
	}
	if c, err := net.DialTimeout("tcp", p.Addr, postgresTimeout); err == nil {
		c.Close()
		t.Fatal("the server still accepts connections after Stop")
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Psql(ctx, "kept", "SELECT v FROM t"); err != nil || got != "x" {
		t.Errorf("row after restart: %q, %v; want x", got, err)
	}
	if err := p.Start(ctx); err == nil {
		t.Error("Start of a running server succeeded")
	}
	if _, err := p.CreateDatabase(ctx, "Bad-Name"); err == nil {
		t.Error("an invalid database name was accepted")
	}
}

// TestPostgresPassword: with a password, psql without it is refused and
// with it accepted; the URL carries it.
func TestPostgresPassword(t *testing.T) {
	p := testenv.StartPostgres(t, testenv.PostgresOptions{Password: "s3cret-pw"})
	ctx, cancel := context.WithTimeout(context.Background(), postgresTimeout)
	defer cancel()
	if got, err := p.Psql(ctx, "postgres", "SELECT current_user"); err != nil || got != testenv.PostgresSuperuser {
		t.Fatalf("psql with the password: %q, %v", got, err)
	}
	if !strings.Contains(p.URL("postgres"), "mailgate:s3cret-pw@") {
		t.Errorf("URL %q has no password", p.URL("postgres"))
	}
	host := testenv.Require(t, testenv.PartPostgres)
	out, err := exec.CommandContext(ctx, filepath.Join(host.Postgres, "psql"), "-X", "-w", "-At",
		"-d", "postgres://mailgate@"+p.Addr+"/postgres?sslmode=disable", "-c", "SELECT 1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "password") {
		t.Errorf("psql without the password: %v: %s; want a password failure", err, out)
	}
}
