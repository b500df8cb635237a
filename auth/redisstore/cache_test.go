package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/redisstore"
	"github.com/mailgate/mailgate/internal/testenv"
)

// tokenKey is the Redis key of a token's shared cache entry.
func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "mailgate:token:" + hex.EncodeToString(sum[:])
}

// One token validated through two replicas within the TTL costs one
// provider call; so does a refusal; an outage is asked each time and
// never stored.
func TestCacheSharedOneProviderCall(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{})
	v := &countingValidator{}
	opts := auth.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Shared: st}
	a, b := auth.NewCache(v, opts), auth.NewCache(v, opts)
	policy := auth.Policy{RequireEmailVerified: true, RequiredScopes: []string{"mail"}}
	login := func(c *auth.Cache, tok string) (auth.Identity, error) {
		ta := auth.TokenAuthenticator{Validator: c, Policy: policy, Logger: discardLogger(), Source: "userinfo"}
		return ta.Authenticate(context.Background(), auth.Credentials{Mechanism: auth.MechXOAUTH2, User: "alice@example.test", Token: tok})
	}

	idA, errA := login(a, "ok-token-1")
	idB, errB := login(b, "ok-token-1")
	if errA != nil || errB != nil || idA != idB || idA.User != "alice@example.test" || idA.Expiry.IsZero() {
		t.Fatalf("replica A: %+v %v; replica B: %+v %v", idA, errA, idB, errB)
	}
	if n := v.calls.Load(); n != 1 {
		t.Errorf("provider calls for one accepted token = %d, want 1", n)
	}
	if s := b.Stats(); s.SharedHits != 1 || s.ProviderCalls != 0 {
		t.Errorf("replica B stats %+v", s)
	}

	_, errA = login(a, "bad-token-1")
	_, errB = login(b, "bad-token-1")
	if !errors.Is(errB, auth.ErrInvalidCredentials) || errors.Is(errB, auth.ErrUnavailable) || errA.Error() != errB.Error() {
		t.Errorf("refusal: replica A %v; replica B %v", errA, errB)
	}
	if n := v.calls.Load(); n != 2 {
		t.Errorf("provider calls after one refused token = %d, want 2", n)
	}

	_, errA = login(a, "down-token-1")
	_, errB = login(b, "down-token-1")
	if !errors.Is(errA, auth.ErrUnavailable) || !errors.Is(errB, auth.ErrUnavailable) {
		t.Errorf("outage: replica A %v; replica B %v", errA, errB)
	}
	if n := v.calls.Load(); n != 4 {
		t.Errorf("provider calls after an outage on both = %d, want 4 (outages are not cached)", n)
	}
	if n := rawClient(t, r).Exists(context.Background(), tokenKey("down-token-1")).Val(); n != 0 {
		t.Error("an outage was stored in Redis")
	}
}

// Entries live in Redis exactly as long as in the local cache: the TTL,
// capped at the token's exp; the negative TTL; nothing when not cached.
func TestCacheSharedTTL(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{})
	c := rawClient(t, r)
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		opts  auth.CacheOptions
		token string
		ttl   time.Duration // 0: not stored
	}{
		{"accepted: TTL", auth.CacheOptions{TTL: time.Minute}, "ok-ttl", time.Minute},
		{"accepted: capped at exp", auth.CacheOptions{TTL: 2 * time.Hour}, "ok-exp", time.Hour},
		{"accepted, TTL 0", auth.CacheOptions{NegativeTTL: time.Minute}, "ok-ttl0", 0},
		{"refused: negative TTL", auth.CacheOptions{TTL: time.Minute, NegativeTTL: 5 * time.Second}, "bad-neg", 5 * time.Second},
		{"refused, negative TTL 0", auth.CacheOptions{TTL: time.Minute}, "bad-neg0", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Shared = st
			auth.NewCache(&countingValidator{}, tt.opts).Validate(ctx, tt.token)
			got := c.PTTL(ctx, tokenKey(tt.token)).Val()
			if tt.ttl == 0 {
				if got != -2*time.Nanosecond { // go-redis: -2 = no such key
					t.Errorf("stored with TTL %v", got)
				}
				return
			}
			if got > tt.ttl || got < tt.ttl-2*time.Second {
				t.Errorf("TTL in Redis %v, want %v", got, tt.ttl)
			}
		})
	}
}

// Redis holds the hash of each token, never the token, in keys or values.
func TestCacheSharedKeysHoldNoToken(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{})
	const secret = "S3CR3T-t0ken-material"
	tokens := []string{"ok-" + secret, "bad-" + secret, "badecho-" + secret}
	cache := auth.NewCache(&countingValidator{}, auth.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Shared: st})
	th := auth.NewThrottle(auth.ThrottleOptions{Shared: st, Logger: discardLogger()})
	for _, tok := range tokens {
		cache.Validate(context.Background(), tok)
		th.Failure("192.0.2.1:993", "")
	}
	c := rawClient(t, r)
	got := keys(t, c)
	want := []string{tokenKey(tokens[0]), tokenKey(tokens[1]), tokenKey(tokens[2]), "mailgate:throttle:ip:192.0.2.1"}
	if len(got) != len(want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
	for _, k := range want {
		var val string
		switch typ := c.Type(context.Background(), k).Val(); typ {
		case "string":
			val = c.Get(context.Background(), k).Val()
		case "hash":
			val = strings.Join(c.HVals(context.Background(), k).Val(), " ")
		default:
			t.Fatalf("key %q: type %q", k, typ)
		}
		if strings.Contains(k, secret) || strings.Contains(val, secret) {
			t.Errorf("Redis holds the token: %q = %q", k, val)
		}
	}
}

// Forget deletes the shared entry: a third replica asks the provider.
func TestCacheSharedForget(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{})
	v := &countingValidator{}
	opts := auth.CacheOptions{TTL: time.Minute, Shared: st}
	a, b := auth.NewCache(v, opts), auth.NewCache(v, opts)
	ctx := context.Background()
	a.Validate(ctx, "ok-forget")
	b.Forget("ok-forget")
	auth.NewCache(v, opts).Validate(ctx, "ok-forget")
	if n := v.calls.Load(); n != 2 {
		t.Errorf("provider calls = %d, want 2", n)
	}
}

// jwtValidator is a validator that checks tokens locally, as
// JWTValidator does.
type jwtValidator struct{ countingValidator }

func (*jwtValidator) SourceFor(string) string { return auth.SourceJWT }

// Tokens checked locally are not shared, and namespaces keep apart the
// answers of different provider configurations.
func TestCacheSharedScope(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	st := newStore(t, r, redisstore.Options{})
	ctx := context.Background()
	auth.NewCache(&jwtValidator{}, auth.CacheOptions{TTL: time.Minute, Shared: st}).Validate(ctx, "ok-jwt")
	if k := keys(t, rawClient(t, r)); len(k) != 0 {
		t.Errorf("a locally checked token was shared: %q", k)
	}
	v := &countingValidator{}
	auth.NewCache(v, auth.CacheOptions{TTL: time.Minute, Shared: st, SharedNamespace: "issuer1:"}).Validate(ctx, "ok-ns")
	auth.NewCache(v, auth.CacheOptions{TTL: time.Minute, Shared: st, SharedNamespace: "issuer2:"}).Validate(ctx, "ok-ns")
	if n := v.calls.Load(); n != 2 {
		t.Errorf("provider calls across namespaces = %d, want 2", n)
	}
}

// BenchmarkCacheSharedHit is the cost of a validation that the local cache
// misses and Redis answers (a token first seen on this replica), against a
// local hit; the difference is the Redis round trip and the decoding.
func BenchmarkCacheSharedHit(b *testing.B) {
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	st := newStore(b, r, redisstore.Options{})
	ctx := context.Background()
	tokA, tokB := "ok-A-"+strings.Repeat("x", 900), "ok-B-"+strings.Repeat("x", 900)
	writer := auth.NewCache(&countingValidator{}, auth.CacheOptions{TTL: time.Hour, Shared: st})
	writer.Validate(ctx, tokA)
	writer.Validate(ctx, tokB)
	b.Run("local", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writer.Validate(ctx, tokA)
		}
	})
	b.Run("store-get", func(b *testing.B) { // the round trip alone
		key := strings.TrimPrefix(tokenKey(tokA), "mailgate:token:")
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := st.Get(ctx, key); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("shared", func(b *testing.B) {
		// One local entry: alternating tokens always miss locally.
		v := &countingValidator{}
		c := auth.NewCache(v, auth.CacheOptions{TTL: time.Hour, MaxEntries: 1, Shared: st})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			tok := tokA
			if i%2 == 1 {
				tok = tokB
			}
			if _, err := c.Validate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		if n := v.calls.Load(); n != 0 {
			b.Fatalf("%d provider calls", n)
		}
	})
}
