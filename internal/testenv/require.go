package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ErrUnavailable is wrapped by the errors of [Check] and of the New functions
// when a daemon cannot run on this machine (not root, package or binary missing).
var ErrUnavailable = errors.New("testenv: dependency unavailable")

// IntegrationEnv is the environment variable that turns skips into failures.
const IntegrationEnv = "MAILGATE_INTEGRATION"

// Part selects what [Require] and [Check] look for. Parts can be or-ed.
type Part uint

const (
	PartDovecot Part = 1 << iota
	PartPostfix
	PartHydra
	// PartRedis is redis-server (Debian's redis-server package), for
	// [StartRedis]. It is not part of PartAll.
	PartRedis
	// PartPostgres is the PostgreSQL server (Debian's postgresql package,
	// /usr/lib/postgresql/NN/bin), for [StartPostgres]; as root also the
	// system user postgres and setpriv. It is not part of PartAll.
	PartPostgres

	// PartAll is what Require checks when no part is given.
	PartAll = PartDovecot | PartPostfix | PartHydra
)

// Host describes the tools found on this machine.
type Host struct {
	Backend  string // the backend generation checked (BackendDeb12 or BackendDeb13)
	Root     string // the chroot the daemons run in ("" for the host's packages)
	Dovecot  string // path of the dovecot binary, inside Root ("" if not checked)
	Postfix  string // path of the postfix binary, inside Root ("" if not checked)
	OpenSSL  string // path of the openssl binary ("" if not checked)
	Hydra    string // path of the Hydra binary ("" if not checked)
	Redis    string // path of redis-server ("" if not checked)
	Postgres string // directory of initdb and postgres ("" if not checked)
	VmailUID int    // uid of the vmail user, in Root's user database (0 if not checked)
	VmailGID int    // gid of the vmail user (0 if not checked)

	gen generation
}

// Integration reports whether MAILGATE_INTEGRATION=1 is set, in which case a
// missing dependency fails tests instead of skipping them.
func Integration() bool { return os.Getenv(IntegrationEnv) == "1" }

// Require checks that the given parts (all when none is given) can run here.
// If not, it skips the test, or fails it when [Integration] is true.
func Require(tb testing.TB, parts ...Part) Host {
	tb.Helper()
	h, err := Check(parts...)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			tb.Fatal(err)
		}
		unavailable(tb, err)
	}
	return h
}

// unavailable skips or fails tb, depending on Integration.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if Integration() {
		tb.Fatalf("%v (%s=1, so this is a failure; run scripts/install-test-deps.sh as root)", err, IntegrationEnv)
	}
	tb.Skipf("%v (run scripts/install-test-deps.sh as root, or set %s=1 to fail instead of skip)", err, IntegrationEnv)
}

// Check is Require without testing.TB: it returns an error wrapping
// [ErrUnavailable] that lists everything missing.
func Check(parts ...Part) (Host, error) {
	var want Part
	for _, p := range parts {
		want |= p
	}
	if want == 0 {
		want = PartAll
	}
	var h Host
	var missing []string
	look := func(name string, dst *string) {
		p, err := exec.LookPath(name)
		if err != nil {
			// root's PATH usually has sbin; a test runner's may not.
			for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
				if fi, err2 := os.Stat(filepath.Join(dir, name)); err2 == nil && !fi.IsDir() {
					p, err = filepath.Join(dir, name), nil
					break
				}
			}
		}
		if err != nil {
			missing = append(missing, name)
			return
		}
		*dst = p
	}
	if want&(PartDovecot|PartPostfix) != 0 {
		g, err := currentGeneration()
		if err != nil {
			return h, err
		}
		h.gen, h.Backend, h.Root = g, g.name, g.root
		// exists checks a file inside the generation's root (or on the host).
		exists := func(inner, what string) bool {
			if _, err := os.Stat(g.hostPath(inner)); err != nil {
				missing = append(missing, g.hostPath(inner)+" ("+what+")")
				return false
			}
			return true
		}
		if os.Geteuid() != 0 {
			missing = append(missing, "root (Dovecot and Postfix masters must start as root)")
		}
		if g.root != "" {
			if fi, err := os.Stat(filepath.Join(g.root, "..", deb13Stamp)); err != nil || !fi.Mode().IsRegular() {
				missing = append(missing, "the Debian 13 root "+g.root+" (build it with MAILGATE_BACKENDS=\"deb12 deb13\" scripts/install-test-deps.sh)")
				return h, fmt.Errorf("%w: missing %s", ErrUnavailable, strings.Join(missing, ", "))
			}
		}
		if uid, gid, err := g.lookupUser(vmailUser); err != nil {
			missing = append(missing, "system user "+vmailUser)
		} else {
			h.VmailUID, h.VmailGID = uid, gid
		}
		if want&PartDovecot != 0 {
			look("openssl", &h.OpenSSL) // hashes passwords on the host
			if g.root == "" {
				look("dovecot", &h.Dovecot)
			} else if exists(deb13Dovecot, "dovecot-core") {
				h.Dovecot = deb13Dovecot
			}
			for _, f := range [][2]string{
				{"/usr/lib/dovecot/imap", "dovecot-imapd"},
				{"/usr/lib/dovecot/lmtp", "dovecot-lmtpd"},
				{"/usr/lib/dovecot/pop3", "dovecot-pop3d"},
				{"/usr/lib/dovecot/managesieve", "dovecot-managesieved"},
				{"/usr/lib/dovecot/modules/lib90_sieve_plugin.so", "dovecot-sieve"},
			} {
				exists(f[0], f[1])
			}
		}
		if want&PartPostfix != 0 {
			if g.root == "" {
				look("postfix", &h.Postfix)
			} else if exists(deb13Postfix, "postfix") {
				h.Postfix = deb13Postfix
			}
			exists(postfixMaster, "postfix")
			if _, err := g.lookupGroup("postdrop"); err != nil {
				missing = append(missing, "group postdrop")
			}
		}
	}
	if want&PartHydra != 0 {
		p := HydraBinary()
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, "Hydra binary "+p+" (set MAILGATE_HYDRA_BIN or build it with scripts/install-test-deps.sh)")
		} else {
			h.Hydra = p
		}
	}
	if want&PartRedis != 0 {
		look("redis-server", &h.Redis)
	}
	if want&PartPostgres != 0 {
		checkPostgres(&h, &missing)
	}
	if len(missing) > 0 {
		return h, fmt.Errorf("%w: missing %s", ErrUnavailable, strings.Join(missing, ", "))
	}
	return h, nil
}

// CacheDir is where third-party test binaries live:
// $MAILGATE_TEST_CACHE, else $HOME/.cache/mailgate-test.
// scripts/install-test-deps.sh uses the same rule.
func CacheDir() string {
	if d := os.Getenv("MAILGATE_TEST_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "mailgate-test")
}

// HydraBinary is the Hydra binary used by default: $MAILGATE_HYDRA_BIN, else
// CacheDir()/hydra.
func HydraBinary() string {
	if p := os.Getenv("MAILGATE_HYDRA_BIN"); p != "" {
		return p
	}
	return filepath.Join(CacheDir(), "hydra")
}
