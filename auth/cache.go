package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sync/singleflight"
)

// Cache defaults (see CacheOptions).
const (
	DefaultCacheEntries = 100_000
	// defaultCallTimeout bounds one provider call made on behalf of all the
	// callers waiting for it, independently of any one caller's context.
	defaultCallTimeout = 2 * DefaultValidateTimeout
	// evictScan is how many entries an insert into a full cache looks at
	// for expired ones before evicting one at random.
	evictScan = 64
)

// CacheOptions configures NewCache. The zero value caches nothing but still
// coalesces concurrent validations of one token.
type CacheOptions struct {
	// TTL is how long an accepted token's claims are kept; never beyond the
	// token's "exp" (from the claims, or read unverified from the token
	// when it is a JWT, as for userinfo answers). Zero: not cached.
	//
	// Trade-off: a revoked token keeps working for up to TTL.
	TTL time.Duration
	// NegativeTTL is how long a refusal (ErrInvalidCredentials) is kept, so
	// that a client retrying a dead token does not reach the provider each
	// time. Zero: not cached. ErrUnavailable is never cached.
	NegativeTTL time.Duration
	// MaxEntries bounds the number of cached tokens; when full, an insert
	// drops expired entries it finds or else a random one. Zero:
	// DefaultCacheEntries.
	MaxEntries int
	// MaxConcurrent bounds the provider calls in flight. A call that finds
	// the limit reached waits for a slot as long as its context allows,
	// then fails with ErrUnavailable. Zero: no limit.
	MaxConcurrent int
	// CallTimeout bounds one provider call, which runs detached from the
	// caller that started it (others may be waiting for its result).
	// Zero: 10 s.
	CallTimeout time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Shared, if not nil, is a cache shared with the other replicas (see
	// SharedCache). A token this replica does not know is looked up there
	// before the provider is asked, and the provider's answer is put there
	// for as long as it is kept locally (TTL, capped at "exp";
	// NegativeTTL), never an outage. The key is the hex SHA-256 of the
	// token, never the token; the value holds the claims of an accepted
	// token, or the text of a refusal, and its expiry. An entry read from
	// Shared is kept locally no longer than this cache's own TTLs allow.
	// Tokens that the wrapped Validator checks locally (SourceFor gives
	// SourceJWT) are not shared: a round trip costs more than the check.
	// Errors of Shared are counted (CacheStats.SharedErrors) and otherwise
	// ignored: the cache then works as if Shared were nil. Nil: local only.
	Shared SharedCache
	// SharedNamespace is put before the token hash in Shared's keys. Give
	// each provider configuration its own (for example a digest of the
	// oauth2 settings), so that after a change of issuer or mode no replica
	// accepts the answers given under the old one. Empty: none.
	SharedNamespace string
}

// CacheStats are cumulative counters (Entries is the current size).
// Coalesced validations are Misses - ProviderCalls - SharedHits -
// SharedNegativeHits: misses that waited for another caller's provider
// call, or found its result on a re-check.
type CacheStats struct {
	Hits           uint64 // answered from the cache, accepted
	NegativeHits   uint64 // answered from the cache, refused
	Misses         uint64 // not in the cache
	ProviderCalls  uint64 // calls to the wrapped Validator
	ProviderErrors uint64 // calls that ended with ErrUnavailable (not cached)
	Saturated      uint64 // calls abandoned waiting for a MaxConcurrent slot
	Evictions      uint64 // live entries dropped because the cache was full
	Entries        int

	SharedHits         uint64 // misses answered from CacheOptions.Shared, accepted
	SharedNegativeHits uint64 // misses answered from CacheOptions.Shared, refused
	SharedErrors       uint64 // failed operations of CacheOptions.Shared (and unreadable entries)
}

// Cache is a Validator that remembers the answers of another, keyed by the
// SHA-256 of the token (the token itself is not kept). Concurrent
// validations of one token make a single call to the wrapped Validator.
// With CacheOptions.Shared, the answers are also shared with the other
// replicas, so that one token costs one provider call for all of them.
//
// The Claims returned are shared between callers: treat them as read-only.
// A Cache is safe for concurrent use; create it with NewCache.
type Cache struct {
	next        Validator
	ttl, negTTL time.Duration
	max         int
	callTimeout time.Duration
	now         func() time.Time
	sem         chan struct{} // nil: no limit
	shared      SharedCache   // nil: local only
	sharedNS    string

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]cacheEntry

	flight singleflight.Group

	hits, negHits, misses, calls, provErrs, saturated, evictions atomic.Uint64
	sharedHits, sharedNegHits, sharedErrs                        atomic.Uint64
}

type cacheEntry struct {
	claims  Claims
	err     error // nil or wrapping ErrInvalidCredentials
	expires time.Time
}

var _ Validator = (*Cache)(nil)

// NewCache returns a Cache in front of next.
func NewCache(next Validator, opts CacheOptions) *Cache {
	c := &Cache{
		next:        next,
		ttl:         opts.TTL,
		negTTL:      opts.NegativeTTL,
		max:         opts.MaxEntries,
		callTimeout: opts.CallTimeout,
		now:         opts.Now,
		shared:      opts.Shared,
		sharedNS:    opts.SharedNamespace,
		entries:     map[[sha256.Size]byte]cacheEntry{},
	}
	if c.max <= 0 {
		c.max = DefaultCacheEntries
	}
	if c.callTimeout <= 0 {
		c.callTimeout = defaultCallTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if opts.MaxConcurrent > 0 {
		c.sem = make(chan struct{}, opts.MaxConcurrent)
	}
	return c
}

// Forget drops what the cache knows about token, so that its next use asks
// the provider (for example after the provider refused it on revalidation).
// The shared entry, if any, is deleted too (other replicas may still hold
// the answer in their local cache until it expires).
func (c *Cache) Forget(token string) {
	key := tokenKey(token)
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
	c.sharedForget(context.Background(), key, token)
}

// Unwrap returns the wrapped Validator.
func (c *Cache) Unwrap() Validator { return c.next }

// SourceFor asks the wrapped Validator who decides about token.
func (c *Cache) SourceFor(token string) string { return sourceOf(c.next, token) }

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.RLock()
	n := len(c.entries)
	c.mu.RUnlock()
	return CacheStats{
		Hits:           c.hits.Load(),
		NegativeHits:   c.negHits.Load(),
		Misses:         c.misses.Load(),
		ProviderCalls:  c.calls.Load(),
		ProviderErrors: c.provErrs.Load(),
		Saturated:      c.saturated.Load(),
		Evictions:      c.evictions.Load(),
		Entries:        n,

		SharedHits:         c.sharedHits.Load(),
		SharedNegativeHits: c.sharedNegHits.Load(),
		SharedErrors:       c.sharedErrs.Load(),
	}
}

// Validate implements Validator. If ctx ends while the answer is awaited,
// the error wraps ErrUnavailable (the provider call goes on for the others).
func (c *Cache) Validate(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidCredentials)
	}
	key := tokenKey(token)
	if e, ok := c.lookup(key); ok {
		if e.err != nil {
			c.negHits.Add(1)
		} else {
			c.hits.Add(1)
		}
		return e.claims, e.err
	}
	c.misses.Add(1)
	return c.miss(ctx, key, token)
}

// tokenKey is the SHA-256 of token, computed without copying it (SHA-256
// neither keeps nor changes its input).
func tokenKey(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// miss waits for the (shared) provider call for key. It is apart from
// Validate so that the hit path does not pay for the closure.
func (c *Cache) miss(ctx context.Context, key [sha256.Size]byte, token string) (Claims, error) {
	ch := c.flight.DoChan(string(key[:]), func() (any, error) {
		return c.fill(ctx, key, token), nil
	})
	select {
	case r := <-ch:
		e := r.Val.(cacheEntry)
		return e.claims, e.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: gave up waiting for the provider: %w", ErrUnavailable, ctx.Err())
	}
}

// lookup returns a live entry.
func (c *Cache) lookup(key [sha256.Size]byte) (cacheEntry, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || !c.now().Before(e.expires) {
		return cacheEntry{}, false
	}
	return e, true
}

// fill calls the wrapped Validator for all the callers of one token and
// stores the answer, unless the shared cache has it. ctx is the first
// caller's: its values are kept, its cancellation is not.
func (c *Cache) fill(ctx context.Context, key [sha256.Size]byte, token string) cacheEntry {
	// A caller that missed just before the previous flight stored its
	// answer must not make a second call.
	if e, ok := c.lookup(key); ok {
		return e
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.callTimeout)
	defer cancel()
	if e, ok := c.sharedLookup(fctx, key, token); ok {
		return e
	}
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
			defer func() { <-c.sem }()
		case <-ctx.Done():
			c.saturated.Add(1)
			return cacheEntry{err: fmt.Errorf("%w: too many provider calls in flight: %w", ErrUnavailable, ctx.Err())}
		case <-fctx.Done():
			c.saturated.Add(1)
			return cacheEntry{err: fmt.Errorf("%w: too many provider calls in flight", ErrUnavailable)}
		}
	}
	c.calls.Add(1)
	claims, err := c.next.Validate(fctx, token)
	return c.record(fctx, key, token, claims, err)
}

// record keeps the provider's answer for token (an outage is not kept),
// locally and in the shared cache, and returns it as an entry.
func (c *Cache) record(ctx context.Context, key [sha256.Size]byte, token string, claims Claims, err error) cacheEntry {
	now := c.now()
	e := cacheEntry{claims: claims, err: err}
	switch {
	case err == nil:
		ttl := c.ttl
		if exp := tokenExpiry(claims, token); !exp.IsZero() && exp.Sub(now) < ttl {
			ttl = exp.Sub(now)
		}
		e.expires = now.Add(ttl)
		if ttl > 0 {
			c.store(key, e, now)
			c.sharedStore(ctx, key, token, e, ttl)
		}
	case errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrUnavailable):
		e.claims = nil
		e.expires = now.Add(c.negTTL)
		if c.negTTL > 0 {
			c.store(key, e, now)
			c.sharedStore(ctx, key, token, e, c.negTTL)
		}
	default:
		c.provErrs.Add(1)
	}
	return e
}

// store inserts e, making room first when the cache is full.
func (c *Cache) store(key [sha256.Size]byte, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.entries[key]; !exists && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[key] = e
}

// evictLocked drops the expired entries among the first evictScan of the
// (randomly ordered) map, or one live entry if none was expired.
func (c *Cache) evictLocked(now time.Time) {
	var victim [sha256.Size]byte
	found, dropped, n := false, 0, 0
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
			dropped++
		} else if !found {
			victim, found = k, true
		}
		if n++; n >= evictScan {
			break
		}
	}
	if dropped == 0 && found {
		delete(c.entries, victim)
		c.evictions.Add(1)
	}
}
