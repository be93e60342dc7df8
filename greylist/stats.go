package greylist

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Stats is what `sekisho greylist stats` reads: per ISO week and sender
// domain, the longest delay greylisting imposed (from a triplet's first
// attempt to its first pass) and the distinct client addresses its
// greylisted mail was retried from. filters.Greylist records a retry — an
// attempt on a triplet seen before that has not passed yet, or its first
// pass — so mail that passes at once, and first attempts never retried,
// cost no write.
type Stats interface {
	// AddRetry records one retry.
	AddRetry(ctx context.Context, r Retry) error
	// ReadStats returns a week's longest delays and widest pools, top of
	// each (largest first).
	ReadStats(ctx context.Context, week string, top int) (WeekStats, error)
}

// Retry is one retry of a greylisted triplet.
type Retry struct {
	Week   string // ISO week, "2026-W47"
	Domain string // the sender's domain ("" for the null sender)
	Client string // the client's address
	// Delay is how long the triplet was held, at its first pass; 0 for a
	// retry that was held again.
	Delay time.Duration
	// Until is when the week's stats may be forgotten.
	Until time.Time
}

// WeekStats is one week of Stats.
type WeekStats struct {
	Delays []DomainDelay // longest first
	Pools  []DomainPool  // most addresses first
}

// DomainDelay is a sender domain's longest delay in a week.
type DomainDelay struct {
	Domain string
	Delay  time.Duration
}

// DomainPool is how many client addresses a sender domain's greylisted
// mail was retried from in a week.
type DomainPool struct {
	Domain    string
	Addresses int64
}

var (
	_ Stats = (*BoltStore)(nil)
	_ Stats = (*RedisStore)(nil)
)

// bucketStats holds Stats in the bbolt file. Keys: week NUL "d" NUL domain
// → until, delay ms; week NUL "a" NUL domain NUL client → until (each 8
// bytes, big-endian). The sweeper forgets them after until.
var bucketStats = []byte("greylist.stats")

// AddRetry implements Stats: one write transaction.
func (s *BoltStore) AddRetry(ctx context.Context, r Retry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	until := uint64(r.Until.UnixMilli())
	err := s.do(ctx, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketStats)
			akey := []byte(r.Week + "\x00a\x00" + r.Domain + "\x00" + r.Client)
			if err := b.Put(akey, binary.BigEndian.AppendUint64(nil, until)); err != nil {
				return err
			}
			if r.Delay <= 0 {
				return nil
			}
			dkey := []byte(r.Week + "\x00d\x00" + r.Domain)
			if old := b.Get(dkey); len(old) == 16 && int64(binary.BigEndian.Uint64(old[8:])) >= r.Delay.Milliseconds() {
				return nil
			}
			v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, until), uint64(r.Delay.Milliseconds()))
			return b.Put(dkey, v)
		})
	})
	if err != nil {
		return boltKVErr(err)
	}
	return nil
}

// ReadStats implements Stats: one read transaction over the week's keys.
func (s *BoltStore) ReadStats(ctx context.Context, week string, top int) (WeekStats, error) {
	var ws WeekStats
	pools := map[string]int64{}
	err := s.do(ctx, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketStats).Cursor()
			prefix := []byte(week + "\x00")
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				kind, rest, _ := strings.Cut(string(k[len(prefix):]), "\x00")
				switch {
				case kind == "d" && len(v) == 16:
					ws.Delays = append(ws.Delays, DomainDelay{Domain: rest, Delay: time.Duration(binary.BigEndian.Uint64(v[8:])) * time.Millisecond})
				case kind == "a":
					domain, _, _ := strings.Cut(rest, "\x00")
					pools[domain]++
				}
			}
			return nil
		})
	})
	if err != nil {
		return WeekStats{}, boltKVErr(err)
	}
	for d, n := range pools {
		ws.Pools = append(ws.Pools, DomainPool{Domain: d, Addresses: n})
	}
	ws.sortTop(top)
	return ws, nil
}

// sortTop sorts both lists, largest first, then by domain, and keeps top.
func (ws *WeekStats) sortTop(top int) {
	sort.Slice(ws.Delays, func(i, j int) bool {
		if ws.Delays[i].Delay != ws.Delays[j].Delay {
			return ws.Delays[i].Delay > ws.Delays[j].Delay
		}
		return ws.Delays[i].Domain < ws.Delays[j].Domain
	})
	sort.Slice(ws.Pools, func(i, j int) bool {
		if ws.Pools[i].Addresses != ws.Pools[j].Addresses {
			return ws.Pools[i].Addresses > ws.Pools[j].Addresses
		}
		return ws.Pools[i].Domain < ws.Pools[j].Domain
	})
	if len(ws.Delays) > top {
		ws.Delays = ws.Delays[:top]
	}
	if len(ws.Pools) > top {
		ws.Pools = ws.Pools[:top]
	}
}

// statsUntil reads the expiry of a record of bucketStats.
func statsUntil(b []byte) (int64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// RedisStatsPrefix starts the keys of Stats in Redis: {week} is the hash
// tag, so that a week's keys live in one Cluster slot. A sorted set of the
// longest delays (ms) by domain, a set of the week's domains, and per
// domain a HyperLogLog of client addresses (≈0.8% standard error).
const RedisStatsPrefix = "sekisho:glstats:"

func redisStatsKeys(week string) (delays, domains, addrs string) {
	tag := RedisStatsPrefix + "{" + week + "}"
	return tag + ":delays", tag + ":domains", tag + ":addrs:"
}

// AddRetry implements Stats: one MULTI/EXEC.
func (s *RedisStore) AddRetry(ctx context.Context, r Retry) error {
	delays, domains, addrs := redisStatsKeys(r.Week)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.PFAdd(ctx, addrs+r.Domain, r.Client)
		p.PExpireAt(ctx, addrs+r.Domain, r.Until)
		p.SAdd(ctx, domains, r.Domain)
		p.PExpireAt(ctx, domains, r.Until)
		if r.Delay > 0 {
			p.ZAddGT(ctx, delays, redis.Z{Score: float64(r.Delay.Milliseconds()), Member: r.Domain})
			p.PExpireAt(ctx, delays, r.Until)
		}
		return nil
	})
	if err != nil {
		return redisKVErr(err)
	}
	return nil
}

// ReadStats implements Stats.
func (s *RedisStore) ReadStats(ctx context.Context, week string, top int) (WeekStats, error) {
	delays, domains, addrs := redisStatsKeys(week)
	var ws WeekStats
	zs, err := s.client.ZRevRangeWithScores(ctx, delays, 0, int64(top)-1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return WeekStats{}, redisKVErr(err)
	}
	for _, z := range zs {
		ws.Delays = append(ws.Delays, DomainDelay{Domain: fmt.Sprint(z.Member), Delay: time.Duration(z.Score) * time.Millisecond})
	}
	ds, err := s.client.SMembers(ctx, domains).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return WeekStats{}, redisKVErr(err)
	}
	for _, d := range ds {
		n, err := s.client.PFCount(ctx, addrs+d).Result()
		if err != nil {
			return WeekStats{}, redisKVErr(err)
		}
		ws.Pools = append(ws.Pools, DomainPool{Domain: d, Addresses: n})
	}
	ws.sortTop(top)
	return ws, nil
}
