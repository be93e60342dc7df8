package greylist

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// KV is a small key/value store with a time to live, in the same storage as
// the greylist, for state that other parts of sekisho share between
// gateways the same way: MTA-STS policies (package relay) are the first
// user. Keys are the caller's; a caller prefixes its own ("mta-sts:…").
//
// Like Check, a method that cannot reach its storage returns an error; an
// absent or expired key is ok == false without error.
type KV interface {
	// GetValue returns the value stored under key, unless it expired.
	GetValue(ctx context.Context, key string) (value []byte, ok bool, err error)
	// PutValue stores value under key for ttl (which must be positive),
	// replacing any earlier value.
	PutValue(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// DeleteValue forgets key; an absent key is no error.
	DeleteValue(ctx context.Context, key string) error
}

var (
	_ KV = (*BoltStore)(nil)
	_ KV = (*RedisStore)(nil)
)

// bucketKV holds KV's entries in the bbolt file.
var bucketKV = []byte("kv")

// A KV record in bbolt: version byte, expiry (Unix milliseconds,
// big-endian), value.
const kvHeaderLen = 1 + 8

func kvUntil(b []byte) (int64, bool) {
	if len(b) < kvHeaderLen || b[0] != recordVersion {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), true
}

// GetValue implements KV: a read-only transaction.
func (s *BoltStore) GetValue(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var value []byte
	var found bool
	err := s.do(ctx, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketKV).Get([]byte(key))
			if b == nil {
				return nil
			}
			until, ok := kvUntil(b)
			if !ok {
				return fmt.Errorf("kv %q: %w", key, errBadRecord)
			}
			if until <= s.now().UnixMilli() {
				return nil
			}
			value, found = append([]byte(nil), b[kvHeaderLen:]...), true
			return nil
		})
	})
	if err != nil {
		return nil, false, boltKVErr(err)
	}
	return value, found, nil
}

// PutValue implements KV: one write transaction, committed before it
// returns.
func (s *BoltStore) PutValue(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("greylist: kv %q: ttl %v must be positive", key, ttl)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rec := make([]byte, kvHeaderLen+len(value))
	rec[0] = recordVersion
	copy(rec[kvHeaderLen:], value)
	err := s.do(ctx, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			binary.BigEndian.PutUint64(rec[1:9], uint64(s.now().Add(ttl).UnixMilli()))
			return tx.Bucket(bucketKV).Put([]byte(key), rec)
		})
	})
	if err != nil {
		return boltKVErr(err)
	}
	return nil
}

// DeleteValue implements KV: one write transaction.
func (s *BoltStore) DeleteValue(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.do(ctx, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketKV).Delete([]byte(key))
		})
	})
	if err != nil {
		return boltKVErr(err)
	}
	return nil
}

func boltKVErr(err error) error {
	if errors.Is(err, ErrStalled) {
		return err
	}
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	return fmt.Errorf("greylist: bbolt: %w", err)
}

// RedisKVPrefix starts the keys of KV in Redis.
const RedisKVPrefix = "sekisho:kv:"

// GetValue implements KV: GET; Redis expires the key itself (PX).
func (s *RedisStore) GetValue(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := s.client.Get(ctx, RedisKVPrefix+key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, redisKVErr(err)
	}
	return b, true, nil
}

// PutValue implements KV: SET with PX ttl.
func (s *RedisStore) PutValue(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("greylist: kv %q: ttl %v must be positive", key, ttl)
	}
	if err := s.client.Set(ctx, RedisKVPrefix+key, value, ttl).Err(); err != nil {
		return redisKVErr(err)
	}
	return nil
}

// DeleteValue implements KV: DEL.
func (s *RedisStore) DeleteValue(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, RedisKVPrefix+key).Err(); err != nil {
		return redisKVErr(err)
	}
	return nil
}

func redisKVErr(err error) error {
	if errors.Is(err, redis.ErrClosed) {
		err = ErrClosed
	}
	return fmt.Errorf("greylist: redis: %w", err)
}
