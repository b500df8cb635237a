package apppass

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Hasher makes and checks the stored form of app passwords. Each call of
// either method is one slow hash. Implementations must be safe for
// concurrent use.
type Hasher interface {
	// Hash returns the encoded hash of password, with a fresh salt.
	Hash(password []byte) (string, error)
	// Compare reports whether password matches encoded (made by Hash, maybe
	// with other parameters), comparing in constant time.
	Compare(password []byte, encoded string) (bool, error)
}

// Default argon2id parameters (see Argon2id and the package doc).
const (
	DefaultArgon2Time      = 2
	DefaultArgon2MemoryKiB = 19 * 1024 // 19 MiB
	DefaultArgon2Threads   = 1
	DefaultArgon2KeyLen    = 32
	DefaultArgon2SaltLen   = 16
)

// Bounds on the parameters read from a stored hash, so that a damaged or
// hostile row cannot make one login allocate gigabytes or run for minutes.
const (
	maxArgon2Time      = 16
	maxArgon2MemoryKiB = 1 << 20 // 1 GiB
	minArgon2KeyLen    = 16
	maxArgon2KeyLen    = 64
	minArgon2SaltLen   = 8
	maxArgon2SaltLen   = 64
)

// errEncoding is the error of Compare for a stored hash it cannot read.
var errEncoding = errors.New("apppass: malformed argon2id hash")

// Argon2id is the Hasher of RFC 9106 argon2id (golang.org/x/crypto/argon2),
// encoded in the PHC string format that libsodium, Dovecot (ARGON2ID) and
// passlib also use:
//
//	$argon2id$v=19$m=<MemoryKiB>,t=<Time>,p=<Threads>$<salt>$<key>
//
// (salt and key in unpadded standard base64). Compare takes the parameters
// from the encoded string, so they can change without invalidating stored
// hashes. The zero value uses the defaults: t=2, m=19 MiB, p=1, a 32-byte
// key and a 16-byte salt (OWASP's argon2id minimum; about 30 ms per hash
// on one core of the 2-core reference machine, see the package doc).
type Argon2id struct {
	// Time is the number of passes. Zero: DefaultArgon2Time.
	Time uint32
	// MemoryKiB is the memory per hash in KiB. Zero: DefaultArgon2MemoryKiB.
	MemoryKiB uint32
	// Threads is the parallelism (lanes). Zero: 1: a proxy runs many
	// logins at once, so one core per hash gives the best throughput.
	Threads uint8
	// KeyLen is the derived key length in bytes. Zero: 32.
	KeyLen uint32
	// SaltLen is the random salt length in bytes. Zero: 16.
	SaltLen int
}

var _ Hasher = Argon2id{}

// params returns a with defaults filled in.
func (a Argon2id) params() Argon2id {
	if a.Time == 0 {
		a.Time = DefaultArgon2Time
	}
	if a.MemoryKiB == 0 {
		a.MemoryKiB = DefaultArgon2MemoryKiB
	}
	if a.Threads == 0 {
		a.Threads = DefaultArgon2Threads
	}
	if a.KeyLen == 0 {
		a.KeyLen = DefaultArgon2KeyLen
	}
	if a.SaltLen == 0 {
		a.SaltLen = DefaultArgon2SaltLen
	}
	return a
}

// Hash implements Hasher.
func (a Argon2id) Hash(password []byte) (string, error) {
	p := a.params()
	if err := p.check(p.SaltLen); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	_, _ = rand.Read(salt) // never fails
	key := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Compare implements Hasher.
func (Argon2id) Compare(password []byte, encoded string) (bool, error) {
	p, salt, want, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// check refuses parameters outside the bounds.
func (p Argon2id) check(saltLen int) error {
	switch {
	case p.Time < 1 || p.Time > maxArgon2Time:
		return fmt.Errorf("%w: t=%d not in 1..%d", errEncoding, p.Time, maxArgon2Time)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB:
		return fmt.Errorf("%w: m=%d not in %d..%d", errEncoding, p.MemoryKiB, 8*uint32(p.Threads), maxArgon2MemoryKiB)
	case p.Threads < 1:
		return fmt.Errorf("%w: p=0", errEncoding)
	case p.KeyLen < minArgon2KeyLen || p.KeyLen > maxArgon2KeyLen:
		return fmt.Errorf("%w: key length %d not in %d..%d", errEncoding, p.KeyLen, minArgon2KeyLen, maxArgon2KeyLen)
	case saltLen < minArgon2SaltLen || saltLen > maxArgon2SaltLen:
		return fmt.Errorf("%w: salt length %d not in %d..%d", errEncoding, saltLen, minArgon2SaltLen, maxArgon2SaltLen)
	}
	return nil
}

// parseArgon2id reads an encoded hash made by Hash.
func parseArgon2id(encoded string) (p Argon2id, salt, key []byte, err error) {
	f := strings.Split(encoded, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, errEncoding
	}
	var v int
	if _, err := fmt.Sscanf(f[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("%w: version %q", errEncoding, f[2])
	}
	var threads uint32
	if n, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &threads); err != nil || n != 3 || threads > 255 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.MemoryKiB, p.Time, threads) != f[3] {
		return p, nil, nil, fmt.Errorf("%w: parameters %q", errEncoding, f[3])
	}
	p.Threads = uint8(threads)
	if salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil {
		return p, nil, nil, fmt.Errorf("%w: salt", errEncoding)
	}
	if key, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil {
		return p, nil, nil, fmt.Errorf("%w: key", errEncoding)
	}
	p.KeyLen = uint32(len(key))
	if err := p.check(len(salt)); err != nil {
		return p, nil, nil, err
	}
	return p, salt, key, nil
}
