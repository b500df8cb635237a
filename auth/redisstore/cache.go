package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/redis/go-redis/v9"
)

var _ auth.SharedCache = (*Store)(nil)

// tokenKey is the Redis key of a cache key (a token hash).
func (s *Store) tokenKey(key string) string { return s.prefix + "token:" + key }

// Get implements auth.SharedCache (GET KeyPrefix + "token:" + key).
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := s.do(ctx, "get", func(ctx context.Context) error {
		var err error
		b, err = s.client.Get(ctx, s.tokenKey(key)).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// Set implements auth.SharedCache (SET ... PX ttl). A ttl under a
// millisecond stores nothing.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return nil
	}
	ttl = ttl.Truncate(time.Millisecond) // never beyond what was asked
	return s.do(ctx, "set", func(ctx context.Context) error {
		return s.client.Set(ctx, s.tokenKey(key), value, ttl).Err()
	})
}

// Delete implements auth.SharedCache (DEL).
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, "del", func(ctx context.Context) error {
		return s.client.Del(ctx, s.tokenKey(key)).Err()
	})
}
