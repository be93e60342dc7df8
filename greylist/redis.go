package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisKeyPrefix starts every key the greylist writes in Redis. Report
// counters use another prefix in the same keyspace.
const RedisKeyPrefix = "sekisho:greylist:"

// RedisStore keeps the greylist in Redis, so that several gateways share it.
// It works through a go-redis UniversalClient: one address is a standalone
// server, MasterName selects Sentinel, several addresses (or IsClusterMode)
// a Cluster.
//
// Each Check is one Lua script (checkScript) that reads the triplet and its
// network's auto-whitelist count, decides and writes, with Redis' own clock
// (TIME): Redis runs a script atomically, so concurrent gateways cannot
// both create an entry, and the gateways' clocks do not matter. The two keys
// of a script share the hash tag {network}, so in a Cluster they live in one
// slot. Keys carry a TTL (retry window, then expiry), so Redis itself forgets
// old entries; the script also compares the stored deadlines, so an entry is
// never used past its time even while Redis has not yet evicted it.
type RedisStore struct {
	client redis.UniversalClient

	// offset is added to Redis' clock inside the script. Only tests set it,
	// to step through delays and windows without sleeping.
	offset time.Duration
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore connects through redis.NewUniversalClient(opts). It turns on
// ContextTimeoutEnabled, so that the caller's context deadline bounds every
// round trip, and where opts leaves them zero it sets one dial attempt per
// connection (go-redis' default is five, 100 ms apart) and one retry per
// command (default three): enough to replace a pooled connection that a
// restarted server dropped, and a down server is reported in milliseconds
// instead of seconds of retries on every recipient. Connecting is lazy: an
// unreachable server shows as an error from Check, and a server that comes
// back is used again without a new store.
func NewRedisStore(opts *redis.UniversalOptions) *RedisStore {
	o := *opts
	o.ContextTimeoutEnabled = true
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
	return NewRedisStoreWithClient(redis.NewUniversalClient(&o))
}

// NewRedisStoreWithClient uses a client the caller built (and still owns:
// Close closes it).
func NewRedisStoreWithClient(c redis.UniversalClient) *RedisStore {
	return &RedisStore{client: c}
}

// Client is the underlying client, for other state that shares the Redis
// keyspace (report counters).
func (s *RedisStore) Client() redis.UniversalClient { return s.client }

// Check implements Store.
func (s *RedisStore) Check(ctx context.Context, t Triplet, p Policy) (Decision, error) {
	return s.run(ctx, t, p, true)
}

// Peek implements Store: the same script with writing turned off.
func (s *RedisStore) Peek(ctx context.Context, t Triplet, p Policy) (Decision, error) {
	return s.run(ctx, t, p, false)
}

// Close closes the client.
func (s *RedisStore) Close() error {
	err := s.client.Close()
	if errors.Is(err, redis.ErrClosed) {
		return nil
	}
	return err
}

func (s *RedisStore) run(ctx context.Context, t Triplet, p Policy, write bool) (Decision, error) {
	w := "0"
	if write {
		w = "1"
	}
	keys := redisKeys(t)
	res, err := checkScript.Run(ctx, s.client, keys[:],
		ms(p.Delay), ms(p.RetryWindow), ms(p.Expire), p.AutoWhitelist, ms(s.offset), w).Int64Slice()
	if err != nil {
		if errors.Is(err, redis.ErrClosed) {
			err = ErrClosed
		}
		return Decision{}, fmt.Errorf("greylist: redis: %w", err)
	}
	if len(res) != 5 {
		return Decision{}, fmt.Errorf("greylist: redis: script returned %d values, want 5", len(res))
	}
	return Decision{
		Pass:            res[0] == 1,
		Wait:            time.Duration(res[1]) * time.Millisecond,
		New:             res[2] == 1,
		AutoWhitelisted: res[3] == 1,
		Delayed:         time.Duration(res[4]) * time.Millisecond,
	}, nil
}

// redisKeys returns the triplet's key and its network's key. Both carry the
// network as hash tag, so they hash to one Cluster slot. The triplet key ends
// with sender NUL recipient (NUL cannot occur in an SMTP address).
func redisKeys(t Triplet) [2]string {
	tag := RedisKeyPrefix + "{" + t.Source() + "}"
	return [2]string{
		tag + ":t:" + t.Sender + "\x00" + t.Recipient,
		tag + ":n",
	}
}

// checkScript is decide (decide.go) in Lua, step for step.
//
// KEYS[1]: the triplet, a hash: f = first attempt, p = last pass (0: not
// passed yet), u = forgotten at, n = passes. KEYS[2]: the network, a hash:
// c = passes, u = forgotten at. Times are Unix milliseconds of Redis' clock.
//
// ARGV: delay, retry window, expire (milliseconds), auto-whitelist count,
// clock offset (milliseconds, tests only), write ("1") or peek ("0").
//
// Returns {pass, wait ms, new, auto-whitelisted, delayed ms (at a first
// pass)}.
var checkScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[5])
local delay, retry, expire = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local awl = tonumber(ARGV[4])
local write = ARGV[6] == '1'
local function int(x) return string.format('%d', x) end

local n = redis.call('HMGET', KEYS[2], 'c', 'u')
local count, nuntil = tonumber(n[1]), tonumber(n[2])
if count == nil or nuntil == nil or nuntil <= now then count = 0 end
if awl > 0 and count >= awl then
  -- refreshSlack (decide.go): the expiry is extended once it is that stale
  if write and nuntil < now + expire - math.min(math.floor(expire / 100), 3600000) then
    redis.call('HSET', KEYS[2], 'u', int(now + expire))
    redis.call('PEXPIRE', KEYS[2], expire)
  end
  return {1, 0, 0, 1, 0}
end

local e = redis.call('HMGET', KEYS[1], 'f', 'p', 'u', 'n')
local first, lastpass, untl = tonumber(e[1]), tonumber(e[2]), tonumber(e[3])
local passes = tonumber(e[4]) or 0
if first == nil or lastpass == nil or untl == nil or untl <= now then
  if write then
    redis.call('HSET', KEYS[1], 'f', int(now), 'p', '0', 'u', int(now + retry), 'n', '0')
    redis.call('PEXPIRE', KEYS[1], retry)
  end
  return {0, delay, 1, 0, 0}
end

if lastpass == 0 then
  if first > now then
    -- the clock went back: start the round again now
    if write then
      redis.call('HSET', KEYS[1], 'f', int(now), 'u', int(now + retry))
      redis.call('PEXPIRE', KEYS[1], retry)
    end
    return {0, delay, 0, 0, 0}
  end
  if now - first < delay then
    return {0, delay - (now - first), 0, 0, 0}
  end
end
local delayed = 0
if lastpass == 0 then delayed = now - first end

if write then
  redis.call('HSET', KEYS[1], 'p', int(now), 'u', int(now + expire), 'n', int(passes + 1))
  redis.call('PEXPIRE', KEYS[1], expire)
  if awl > 0 then
    redis.call('HSET', KEYS[2], 'c', int(count + 1), 'u', int(now + expire))
    redis.call('PEXPIRE', KEYS[2], expire)
  end
end
return {1, 0, 0, 0, delayed}
`)

// RedisLogger adapts a *slog.Logger to go-redis' logger, for
// redis.SetLogger (process-wide, so main calls it). go-redis logs every
// failed dial of its pool; routed here at Debug level they do not flood the
// log during an outage, which filters.Greylist reports once per incident.
type RedisLogger struct{ Logger *slog.Logger }

// Printf implements go-redis' internal.Logging.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.Logger.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
