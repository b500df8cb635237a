package apppass

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the size of a refresh-token key: AES-256.
const KeySize = 32

// keyIDContext separates key ids from any other use of SHA-256 on the key.
const keyIDContext = "mailgate apppass key id\x00"

// sealContext starts the additional data of every sealed token.
const sealContext = "mailgate apppass refresh token\x00"

// Key is one AES-256-GCM key for refresh tokens. Its id, stored with each
// token so that keys can be rotated, is derived from the key (16 hex
// digits of a SHA-256 with a context string) and safe to log. The key
// itself never appears in any output: String, GoString and every fmt
// verb show only the id, and the cipher is held in a closure, which fmt
// prints as an address, so that even a struct with an unexported Key
// field printed with any verb shows no key material. The zero value is
// no key.
type Key struct {
	id   string
	aead func() cipher.AEAD
}

// NewKey returns the Key of exactly KeySize secret bytes.
func NewKey(secret []byte) (Key, error) {
	if len(secret) != KeySize {
		return Key{}, fmt.Errorf("apppass: a key is %d bytes, not %d", KeySize, len(secret))
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return Key{}, fmt.Errorf("apppass: key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return Key{}, fmt.Errorf("apppass: key: %w", err)
	}
	sum := sha256.Sum256(append([]byte(keyIDContext), secret...))
	return Key{id: hex.EncodeToString(sum[:8]), aead: func() cipher.AEAD { return aead }}, nil
}

// ParseKeyFile returns the Key in the contents of a key file: 32 raw
// bytes, or (with surrounding white space) 64 hex digits or the standard
// base64 of 32 bytes, as made by "openssl rand -hex 32" or
// "openssl rand -base64 32". Its errors never quote the contents.
func ParseKeyFile(b []byte) (Key, error) {
	if len(b) == KeySize && !printable(b) {
		return NewKey(b)
	}
	t := bytes.TrimSpace(b)
	if raw, err := hex.DecodeString(string(t)); err == nil && len(raw) == KeySize {
		return NewKey(raw)
	}
	if raw, err := base64.StdEncoding.DecodeString(string(t)); err == nil && len(raw) == KeySize {
		return NewKey(raw)
	}
	return Key{}, errors.New("apppass: a key file holds 32 raw bytes, 64 hex digits or 44 base64 characters")
}

// printable reports whether b is all printable ASCII: 32 such bytes are a
// mistake (a 128-bit "openssl rand -hex 16" without its newline), not a
// raw 256-bit key.
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// ID returns the key's id ("" for the zero Key).
func (k Key) ID() string { return k.id }

// String returns "apppass.Key(<id>)".
func (k Key) String() string { return "apppass.Key(" + k.id + ")" }

// GoString is String, so that %#v shows no more.
func (k Key) GoString() string { return k.String() }

// Format shows String for every verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// Keyring holds the key that seals new refresh tokens (the primary) and
// older keys that still open tokens sealed before a rotation (see
// Store.Rekey). It is immutable and safe for concurrent use.
type Keyring struct {
	primary Key
	keys    map[string]Key // by id
}

// NewKeyring returns a keyring that seals with primary and opens tokens
// sealed with primary or any of older.
func NewKeyring(primary Key, older ...Key) (*Keyring, error) {
	kr := &Keyring{primary: primary, keys: make(map[string]Key)}
	for _, k := range append([]Key{primary}, older...) {
		if k.aead == nil {
			return nil, errors.New("apppass: zero Key in keyring")
		}
		kr.keys[k.id] = k
	}
	return kr, nil
}

// String returns "apppass.Keyring(<primary id>)".
func (kr *Keyring) String() string { return "apppass.Keyring(" + kr.primary.id + ")" }

// PrimaryID returns the id of the key that seals new tokens.
func (kr *Keyring) PrimaryID() string { return kr.primary.id }

// seal encrypts token for user with the primary key: nonce || ciphertext.
// The additional data binds it to user and to the key id, so that a
// sealed token copied to another user's row does not open.
func (kr *Keyring) seal(user, token string) (keyID string, sealed []byte) {
	aead := kr.primary.aead()
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(token)+aead.Overhead())
	_, _ = rand.Read(nonce) // never fails
	return kr.primary.id, aead.Seal(nonce, nonce, []byte(token), additionalData(user, kr.primary.id))
}

// open decrypts what seal returned. Any failure is ErrKey.
func (kr *Keyring) open(user, keyID string, sealed []byte) (string, error) {
	k, ok := kr.keys[keyID]
	if !ok {
		return "", fmt.Errorf("%w: key %s is not in the keyring", ErrKey, keyID)
	}
	aead := k.aead()
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return "", fmt.Errorf("%w: truncated", ErrKey)
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], additionalData(user, keyID))
	if err != nil {
		return "", fmt.Errorf("%w: does not authenticate under key %s", ErrKey, keyID)
	}
	return string(plain), nil
}

// additionalData is the GCM additional data of user's token under keyID.
func additionalData(user, keyID string) []byte {
	return []byte(sealContext + user + "\x00" + keyID)
}
