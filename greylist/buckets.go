package greylist

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Token buckets in Redis, for budgets that several gateways must share: the
// MSA's failure throttles and hourly sending limits (package auth). A
// bucket holds up to Burst tokens and gains one every Every; an absent key
// is a full bucket, and a key expires once its bucket is full again, so
// Redis forgets idle budgets by itself. Each operation is one Lua script on
// Redis' own clock: atomic across gateways, whatever their clocks.

// BucketOp is what Bucket does.
type BucketOp int

// The bucket operations.
const (
	// BucketPeek reports whether a whole token is left, and takes none.
	BucketPeek BucketOp = iota
	// BucketTake takes a token whatever is left (the bucket may go into
	// debt, paid back in time), and reports whether one was left.
	BucketTake
	// BucketAllow takes a token if one is left and reports whether it did.
	BucketAllow
	// BucketReset forgets the bucket (full again); reports true.
	BucketReset
)

// RedisBucketPrefix starts the keys of the buckets in Redis.
const RedisBucketPrefix = "sekisho:bucket:"

// Buckets is the shared token buckets' interface (RedisStore).
type Buckets interface {
	Bucket(ctx context.Context, key string, burst int, every time.Duration, op BucketOp) (bool, error)
}

var _ Buckets = (*RedisStore)(nil)

// Bucket implements Buckets: one script, with Redis' clock.
func (s *RedisStore) Bucket(ctx context.Context, key string, burst int, every time.Duration, op BucketOp) (bool, error) {
	if burst <= 0 || every <= 0 {
		return false, fmt.Errorf("greylist: bucket %q: burst %d and every %v must be positive", key, burst, every)
	}
	n, err := bucketScript.Run(ctx, s.client, []string{RedisBucketPrefix + key},
		burst, every.Microseconds(), int(op), ms(s.offset)).Int64()
	if err != nil {
		if errors.Is(err, redis.ErrClosed) {
			err = ErrClosed
		}
		return false, fmt.Errorf("greylist: redis: %w", err)
	}
	return n == 1, nil
}

// bucketScript keeps a bucket in a hash: m = tokens in millionths, t = when
// (Redis TIME, microseconds) m was counted. ARGV: burst, every
// (microseconds), op (BucketOp), clock offset (milliseconds, tests only).
// The key expires when the bucket would be full again.
var bucketScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[4]) * 1000
local burst, every, op = tonumber(ARGV[1]) * 1000000, tonumber(ARGV[2]), tonumber(ARGV[3])
if op == 3 then
  redis.call('DEL', KEYS[1])
  return 1
end
local h = redis.call('HMGET', KEYS[1], 'm', 't')
local m, at = tonumber(h[1]), tonumber(h[2])
if m == nil or at == nil then
  m, at = burst, now
end
if now > at then
  m = math.min(burst, m + math.floor((now - at) * 1000000 / every))
end
local left = m >= 1000000
if op == 0 then
  return left and 1 or 0
end
if op == 2 and not left then
  return 0
end
m = m - 1000000
redis.call('HSET', KEYS[1], 'm', string.format('%d', m), 't', string.format('%d', now))
local full = math.ceil((burst - m) * every / 1000000 / 1000)
redis.call('PEXPIRE', KEYS[1], math.max(full, 1))
return left and 1 or 0
`)
