package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// BackendEnv is the environment variable that selects the Dovecot/Postfix
// generation the tests run against: "deb12" (default) or "deb13".
const BackendEnv = "MAILGATE_BACKEND"

// Backend generations: which Debian release's Dovecot and Postfix.
const (
	// BackendDeb12 is Debian 12's Dovecot 2.3 and Postfix 3.7, installed on
	// the host (docker-mailserver up to v15).
	BackendDeb12 = "deb12"
	// BackendDeb13 is Debian 13's Dovecot 2.4 and Postfix 3.10 in a cached
	// Debian 13 root, started with chroot (docker-mailserver's Debian 13 image).
	BackendDeb13 = "deb13"
)

// deb13Listen is the loopback address the Debian 13 daemons listen on. It is
// not 127.0.0.1 on purpose: Dovecot 2.4 treats a connection whose two ends
// have the same address as "localhost" and always secured, which would hide
// what a proxy in another container meets (ssl = required applies to
// login_trusted_networks too). Clients that do not bind connect from
// 127.0.0.1, so the default trusted networks (127.0.0.1/32) still apply.
const deb13Listen = "127.0.24.1"

const (
	// deb13Stamp is the file next to the Debian 13 root that
	// scripts/install-test-deps.sh writes when the root is complete.
	deb13Stamp   = "stamp"
	deb13Dovecot = "/usr/sbin/dovecot"
	deb13Postfix = "/usr/sbin/postfix"
)

// generation describes one backend generation.
type generation struct {
	name    string // BackendDeb12 or BackendDeb13
	dovecot string // "2.3" or "2.4"
	postfix string // "3.7" or "3.10"
	root    string // chroot directory; "" for the host's own packages
	listen  string // address the daemons listen on
}

// Backend returns the selected backend generation: $MAILGATE_BACKEND, or
// "deb12" when it is unset or empty.
func Backend() string {
	if b := os.Getenv(BackendEnv); b != "" {
		return b
	}
	return BackendDeb12
}

// Generation returns the Dovecot version line of the selected backend, "2.3"
// (deb12) or "2.4" (deb13), for tests whose expectations legitimately differ
// ("" for an unknown MAILGATE_BACKEND, which fails every Start).
func Generation() string {
	g, err := currentGeneration()
	if err != nil {
		return ""
	}
	return g.dovecot
}

// PostfixGeneration returns the Postfix version line of the selected
// backend, "3.7" (deb12) or "3.10" (deb13).
func PostfixGeneration() string {
	g, err := currentGeneration()
	if err != nil {
		return ""
	}
	return g.postfix
}

// BackendHost returns the loopback address the selected generation's Dovecot
// and Postfix listen on: 127.0.0.1 (deb12) or 127.0.24.1 (deb13, see
// [DovecotOptions]).
func BackendHost() string {
	g, err := currentGeneration()
	if err != nil {
		return "127.0.0.1"
	}
	return g.listen
}

// Deb13Root is the Debian 13 root the deb13 daemons run in:
// $MAILGATE_DEB13_ROOT, else CacheDir()/debian13/root. It is built by
// scripts/install-test-deps.sh.
func Deb13Root() string {
	if d := os.Getenv("MAILGATE_DEB13_ROOT"); d != "" {
		return d
	}
	return filepath.Join(CacheDir(), "debian13", "root")
}

func currentGeneration() (generation, error) {
	switch b := Backend(); b {
	case BackendDeb12:
		return generation{name: b, dovecot: "2.3", postfix: "3.7", listen: "127.0.0.1"}, nil
	case BackendDeb13:
		return generation{name: b, dovecot: "2.4", postfix: "3.10", root: Deb13Root(), listen: deb13Listen}, nil
	default:
		return generation{}, fmt.Errorf("testenv: %s=%q: want %q or %q", BackendEnv, b, BackendDeb12, BackendDeb13)
	}
}

// hostPath maps a path inside the generation's root to the host's view.
func (g generation) hostPath(inner string) string {
	if g.root == "" {
		return inner
	}
	return filepath.Join(g.root, inner)
}

// innerPath maps a host path under the generation's root to the daemons' view.
func (g generation) innerPath(host string) string {
	if g.root == "" {
		return host
	}
	rel, err := filepath.Rel(g.root, host)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		panic(fmt.Sprintf("testenv: %s is not under %s", host, g.root))
	}
	return "/" + rel
}

// tempDir is where instance directories are created (inside the root for
// chrooted daemons).
func (g generation) tempDir() string {
	if g.root == "" {
		return ""
	}
	return filepath.Join(g.root, "tmp")
}

// lookupUser returns the uid and primary gid of name in the generation's
// user database (the root's /etc/passwd for chrooted daemons).
func (g generation) lookupUser(name string) (uid, gid int, err error) {
	if g.root == "" {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, 0, err
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		return uid, gid, nil
	}
	f, err := findEntry(filepath.Join(g.root, "etc", "passwd"), name)
	if err != nil {
		return 0, 0, err
	}
	if len(f) < 4 {
		return 0, 0, fmt.Errorf("malformed passwd entry for %s", name)
	}
	if uid, err = strconv.Atoi(f[2]); err == nil {
		gid, err = strconv.Atoi(f[3])
	}
	return uid, gid, err
}

// lookupGroup returns the gid of group name in the generation's group database.
func (g generation) lookupGroup(name string) (int, error) {
	if g.root == "" {
		grp, err := user.LookupGroup(name)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(grp.Gid)
	}
	f, err := findEntry(filepath.Join(g.root, "etc", "group"), name)
	if err != nil {
		return 0, err
	}
	if len(f) < 3 {
		return 0, fmt.Errorf("malformed group entry for %s", name)
	}
	return strconv.Atoi(f[2])
}

// findEntry returns the colon-separated fields of the line of file whose
// first field is name.
func findEntry(file, name string) ([]string, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if f[0] == name {
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s: no entry %q", file, name)
}
