package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Kinds of shared cache entries.
const (
	sharedAccepted = "accepted"
	sharedRefused  = "refused"
	// maxRefusalText bounds the refusal text put in the shared cache.
	maxRefusalText = 512
)

// sharedEntry is a cache entry as the shared cache keeps it, in JSON. It
// holds what a replica needs to answer as the provider did, and never the
// token.
type sharedEntry struct {
	Kind    string `json:"kind"`              // sharedAccepted or sharedRefused
	Claims  Claims `json:"claims"`            // accepted: the provider's claims
	Refusal string `json:"refusal,omitempty"` // refused: the error's text
	Expires int64  `json:"expires_ms"`        // Unix milliseconds, by the writer's clock
}

// SharedRefusal is a refusal read from the shared cache: another replica's
// (or this one's) answer, with its text. It wraps ErrInvalidCredentials.
type SharedRefusal struct{ Text string }

// Error returns the refusal's text.
func (e *SharedRefusal) Error() string {
	if e.Text == "" {
		return ErrInvalidCredentials.Error()
	}
	return e.Text
}

// Unwrap returns ErrInvalidCredentials.
func (e *SharedRefusal) Unwrap() error { return ErrInvalidCredentials }

// sharable reports whether token's answers go to the shared cache: not
// when this cache keeps no answer, nor for tokens checked locally.
func (c *Cache) sharable(token string) bool {
	return c.shared != nil && (c.ttl > 0 || c.negTTL > 0) && sourceOf(c.next, token) != SourceJWT
}

// sharedKey is the shared cache's key of a token hash.
func (c *Cache) sharedKey(key [sha256.Size]byte) string {
	return c.sharedNS + hex.EncodeToString(key[:])
}

// sharedLookup returns the shared cache's live entry for token, and keeps
// it locally.
func (c *Cache) sharedLookup(ctx context.Context, key [sha256.Size]byte, token string) (cacheEntry, bool) {
	if !c.sharable(token) {
		return cacheEntry{}, false
	}
	b, ok, err := c.shared.Get(ctx, c.sharedKey(key))
	if err != nil {
		c.sharedErrs.Add(1)
		return cacheEntry{}, false
	}
	if !ok {
		return cacheEntry{}, false
	}
	now := c.now()
	e, err := c.decodeShared(b, token, now)
	if err != nil {
		c.sharedErrs.Add(1)
		return cacheEntry{}, false
	}
	if !now.Before(e.expires) {
		return cacheEntry{}, false
	}
	c.store(key, e, now)
	if e.err != nil {
		c.sharedNegHits.Add(1)
	} else {
		c.sharedHits.Add(1)
	}
	return e, true
}

// decodeShared rebuilds a cache entry, which expires no later than this
// cache's own TTLs (and the token's "exp") allow.
func (c *Cache) decodeShared(b []byte, token string, now time.Time) (cacheEntry, error) {
	var se sharedEntry
	if err := json.Unmarshal(b, &se); err != nil {
		return cacheEntry{}, fmt.Errorf("auth: shared cache entry: %w", err)
	}
	exp := time.UnixMilli(se.Expires)
	switch se.Kind {
	case sharedAccepted:
		exp = earliest(exp, now.Add(c.ttl), tokenExpiry(se.Claims, token))
		return cacheEntry{claims: se.Claims, expires: exp}, nil
	case sharedRefused:
		exp = earliest(exp, now.Add(c.negTTL))
		return cacheEntry{err: &SharedRefusal{Text: se.Refusal}, expires: exp}, nil
	}
	return cacheEntry{}, fmt.Errorf("auth: shared cache entry of unknown kind %q", se.Kind)
}

// earliest returns the earliest of times that are not zero.
func earliest(t time.Time, more ...time.Time) time.Time {
	for _, m := range more {
		if !m.IsZero() && m.Before(t) {
			t = m
		}
	}
	return t
}

// sharedStore puts a provider's answer e for token in the shared cache
// for ttl.
func (c *Cache) sharedStore(ctx context.Context, key [sha256.Size]byte, token string, e cacheEntry, ttl time.Duration) {
	if !c.sharable(token) {
		return
	}
	se := sharedEntry{Kind: sharedAccepted, Claims: e.claims, Expires: e.expires.UnixMilli()}
	if e.err != nil {
		se = sharedEntry{Kind: sharedRefused, Refusal: refusalText(e.err, token), Expires: e.expires.UnixMilli()}
	}
	b, err := json.Marshal(se)
	if err == nil {
		err = c.shared.Set(ctx, c.sharedKey(key), b, ttl)
	}
	if err != nil {
		c.sharedErrs.Add(1)
	}
}

// refusalText is the text of a refusal as the shared cache keeps it:
// bounded, and withheld if it contains the token.
func refusalText(err error, token string) string {
	text := err.Error()
	if strings.Contains(text, token) {
		return ErrInvalidCredentials.Error() + ": refused (text withheld: it contained the token)"
	}
	if len(text) > maxRefusalText {
		text = strings.ToValidUTF8(text[:maxRefusalText], "") + "…"
	}
	return text
}

// sharedForget deletes token's entry from the shared cache.
func (c *Cache) sharedForget(ctx context.Context, key [sha256.Size]byte, token string) {
	if !c.sharable(token) {
		return
	}
	if err := c.shared.Delete(ctx, c.sharedKey(key)); err != nil {
		c.sharedErrs.Add(1)
	}
}
