package greylist

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Counts is the report counters' part of the store (DESIGN.md §5): per
// (day, cause, listener) the number of attempts and of distinct (client
// network, sender, recipient) triplets, and per refused domain its attempts
// and distinct senders. package report fills it (report.Counter) and reads
// it (report.Build); the store only adds, reads and forgets.
//
// Weeks and days are the caller's strings ("2026-W47", "2026-11-22"), used
// as they are in keys: a week string must sort in time order (ISO
// "YYYY-Www" does), which SweepCounts relies on. Distinct counts are per
// week: a triplet seen on Monday and again on Friday is one, on the day (and
// listener) it was first seen in the week. The embedded store counts them
// exactly; Redis with a HyperLogLog (≈0.8% standard error).
type Counts interface {
	// AddCounts adds a batch, in one transaction (bbolt) or one pipeline
	// of MULTI/EXEC per week (Redis).
	AddCounts(ctx context.Context, b CountBatch) error
	// ReadCounts returns the counts of one week, with the top refused
	// domains of each cause (at most top, most attempts first).
	ReadCounts(ctx context.Context, week string, top int) (WeekCounts, error)
	// SweepCounts forgets the weeks before beforeWeek and returns how
	// many keys it deleted. Redis keys expire by themselves
	// (CountDelta.Until): there it does nothing.
	SweepCounts(ctx context.Context, beforeWeek string) (int, error)
	// CountsExact is true when distinct counts are exact (bbolt), false
	// for estimates (Redis HyperLogLog).
	CountsExact() bool
}

// CountBatch is what one flush adds.
type CountBatch struct {
	Counts  []CountDelta
	Domains []DomainDelta
}

// CountDelta adds to the counter of (Day, Cause, Listener).
type CountDelta struct {
	Week, Day, Cause, Listener string
	Attempts                   int64
	// Triplets seen, each "network NUL sender NUL recipient" (any string
	// identifying the triplet); the store counts those new in the week.
	Triplets []string
	// Until is when the week's counts may be forgotten (Redis TTL).
	Until time.Time
}

// DomainDelta adds to the counts of a refused domain in a week.
type DomainDelta struct {
	Week, Cause, Domain string
	Attempts            int64
	Senders             []string // envelope senders seen ("" is the null sender)
	Until               time.Time
}

// WeekCounts is one week read back.
type WeekCounts struct {
	Causes  map[string]CauseCounts    // causes with any count
	Domains map[string][]DomainCounts // per cause, the top domains
}

// CauseCounts is one cause in a week.
type CauseCounts struct {
	Attempts, Distinct int64
	Listeners          map[string]int64 // attempts per listener
}

// DomainCounts is one refused domain in a week.
type DomainCounts struct {
	Domain            string
	Attempts, Senders int64
}

var (
	_ Counts = (*BoltStore)(nil)
	_ Counts = (*RedisStore)(nil)
)

func (w *WeekCounts) add(cause, listener string, attempts, distinct int64) {
	if w.Causes == nil {
		w.Causes = map[string]CauseCounts{}
	}
	c := w.Causes[cause]
	if c.Listeners == nil {
		c.Listeners = map[string]int64{}
	}
	c.Attempts += attempts
	c.Distinct += distinct
	if attempts != 0 {
		c.Listeners[listener] += attempts
	}
	w.Causes[cause] = c
}

// topDomains sorts each cause's domains (most attempts first, then by
// name) and keeps top of them.
func topDomains(all map[string][]DomainCounts, top int) map[string][]DomainCounts {
	for cause, ds := range all {
		sort.Slice(ds, func(i, j int) bool {
			if ds[i].Attempts != ds[j].Attempts {
				return ds[i].Attempts > ds[j].Attempts
			}
			return ds[i].Domain < ds[j].Domain
		})
		if len(ds) > top {
			ds = ds[:top]
		}
		all[cause] = ds
	}
	return all
}

// The embedded layout: bucket "report", flat keys starting with the week so
// that a sweep deletes a range from the first key. Parts are separated by
// NUL, which no address, domain, cause or listener holds.
//
//	WEEK 0 "a" 0 DAY 0 CAUSE 0 LISTENER  -> version, attempts, distinct (uint64 BE)
//	WEEK 0 "t" 0 CAUSE 0 TRIPLET         -> version (the triplet was seen this week)
//	WEEK 0 "d" 0 CAUSE 0 DOMAIN          -> version, attempts, senders
//	WEEK 0 "s" 0 CAUSE 0 DOMAIN 0 SENDER -> version (the sender used the domain this week)
//
// "distinct" of an "a" record counts the triplets first seen in the week on
// that day through that listener: their sum over a week is the week's
// distinct count, exactly.
var bucketReport = []byte("report")

const countRecordLen = 1 + 8 + 8

func countKey(parts ...string) []byte { return []byte(strings.Join(parts, "\x00")) }

var memberRecord = []byte{recordVersion}

func addCountRecord(b *bolt.Bucket, key []byte, attempts, distinct int64) error {
	var a, d int64
	if v := b.Get(key); v != nil {
		if len(v) != countRecordLen || v[0] != recordVersion {
			return fmt.Errorf("report counter %q: %w", key, errBadRecord)
		}
		a, d = int64(binary.BigEndian.Uint64(v[1:])), int64(binary.BigEndian.Uint64(v[9:]))
	}
	rec := make([]byte, countRecordLen)
	rec[0] = recordVersion
	binary.BigEndian.PutUint64(rec[1:], uint64(a+attempts))
	binary.BigEndian.PutUint64(rec[9:], uint64(d+distinct))
	return b.Put(key, rec)
}

// addMember records key and reports whether it was new.
func addMember(b *bolt.Bucket, key []byte) (bool, error) {
	if b.Get(key) != nil {
		return false, nil
	}
	return true, b.Put(key, memberRecord)
}

// AddCounts implements Counts: one write transaction.
func (s *BoltStore) AddCounts(ctx context.Context, batch CountBatch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.do(ctx, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketReport)
			for _, c := range batch.Counts {
				var distinct int64
				for _, t := range c.Triplets {
					isNew, err := addMember(b, countKey(c.Week, "t", c.Cause, t))
					if err != nil {
						return err
					}
					if isNew {
						distinct++
					}
				}
				if err := addCountRecord(b, countKey(c.Week, "a", c.Day, c.Cause, c.Listener), c.Attempts, distinct); err != nil {
					return err
				}
			}
			for _, d := range batch.Domains {
				var senders int64
				for _, sender := range d.Senders {
					isNew, err := addMember(b, countKey(d.Week, "s", d.Cause, d.Domain, sender))
					if err != nil {
						return err
					}
					if isNew {
						senders++
					}
				}
				if err := addCountRecord(b, countKey(d.Week, "d", d.Cause, d.Domain), d.Attempts, senders); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return boltKVErr(err)
	}
	return nil
}

// ReadCounts implements Counts: a read-only transaction over the week's
// "a" and "d" records.
func (s *BoltStore) ReadCounts(ctx context.Context, week string, top int) (WeekCounts, error) {
	if err := ctx.Err(); err != nil {
		return WeekCounts{}, err
	}
	var w WeekCounts
	err := s.do(ctx, func() error {
		w = WeekCounts{}
		return s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReport).Cursor()
			prefix := countKey(week, "a", "")
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				parts := strings.Split(string(k[len(prefix):]), "\x00") // day, cause, listener
				if len(parts) != 3 || len(v) != countRecordLen || v[0] != recordVersion {
					return fmt.Errorf("report counter %q: %w", k, errBadRecord)
				}
				w.add(parts[1], parts[2], int64(binary.BigEndian.Uint64(v[1:])), int64(binary.BigEndian.Uint64(v[9:])))
			}
			all := map[string][]DomainCounts{}
			prefix = countKey(week, "d", "")
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				parts := strings.Split(string(k[len(prefix):]), "\x00") // cause, domain
				if len(parts) != 2 || len(v) != countRecordLen || v[0] != recordVersion {
					return fmt.Errorf("report domain %q: %w", k, errBadRecord)
				}
				all[parts[0]] = append(all[parts[0]], DomainCounts{Domain: parts[1],
					Attempts: int64(binary.BigEndian.Uint64(v[1:])), Senders: int64(binary.BigEndian.Uint64(v[9:]))})
			}
			w.Domains = topDomains(all, top)
			return nil
		})
	})
	if err != nil {
		return WeekCounts{}, boltKVErr(err)
	}
	return w, nil
}

// SweepCounts implements Counts: deletes every key of a week before
// beforeWeek, sweepBatch keys per write transaction.
func (s *BoltStore) SweepCounts(ctx context.Context, beforeWeek string) (int, error) {
	limit := []byte(beforeWeek)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := s.do(ctx, func() error {
			n = 0
			return s.db.Update(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketReport).Cursor()
				for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0 && n < sweepBatch; k, _ = c.First() {
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
				return nil
			})
		})
		if err != nil {
			return total, boltKVErr(err)
		}
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}

// CountsExact implements Counts: bbolt keeps every triplet of the week.
func (s *BoltStore) CountsExact() bool { return true }

// RedisReportPrefix starts the report counters' keys in Redis. Every key of
// a week carries the week as hash tag, so that in a Cluster a week lives in
// one slot (PFCOUNT, MULTI):
//
//	sekisho:report:{WEEK}:a               hash "DAY|CAUSE|LISTENER" -> attempts
//	sekisho:report:{WEEK}:t:CAUSE         HyperLogLog of the triplets
//	sekisho:report:{WEEK}:d               hash "CAUSE|DOMAIN" -> attempts
//	sekisho:report:{WEEK}:s:CAUSE:DOMAIN  HyperLogLog of the senders
//
// Each write sets the key's expiry to CountDelta.Until (PEXPIREAT).
const RedisReportPrefix = "sekisho:report:"

func redisWeekPrefix(week string) string { return RedisReportPrefix + "{" + week + "}:" }

// AddCounts implements Counts: one MULTI/EXEC per week, pipelined. A
// connection lost after Redis applied a batch but before the answer came
// makes the caller retry it: its attempts are then counted twice (distinct
// counts are not: PFADD is idempotent).
func (s *RedisStore) AddCounts(ctx context.Context, batch CountBatch) error {
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range batch.Counts {
			pre := redisWeekPrefix(c.Week)
			p.HIncrBy(ctx, pre+"a", c.Day+"|"+c.Cause+"|"+c.Listener, c.Attempts)
			p.PExpireAt(ctx, pre+"a", c.Until)
			if len(c.Triplets) > 0 {
				members := make([]any, len(c.Triplets))
				for i, t := range c.Triplets {
					members[i] = t
				}
				p.PFAdd(ctx, pre+"t:"+c.Cause, members...)
				p.PExpireAt(ctx, pre+"t:"+c.Cause, c.Until)
			}
		}
		for _, d := range batch.Domains {
			pre := redisWeekPrefix(d.Week)
			p.HIncrBy(ctx, pre+"d", d.Cause+"|"+d.Domain, d.Attempts)
			p.PExpireAt(ctx, pre+"d", d.Until)
			if len(d.Senders) > 0 {
				members := make([]any, len(d.Senders))
				for i, sender := range d.Senders {
					members[i] = "<" + sender + ">" // the null sender is "<>", never an empty element
				}
				key := pre + "s:" + d.Cause + ":" + d.Domain
				p.PFAdd(ctx, key, members...)
				p.PExpireAt(ctx, key, d.Until)
			}
		}
		return nil
	})
	if err != nil {
		return redisKVErr(err)
	}
	return nil
}

// ReadCounts implements Counts: HGETALL of the week's two hashes, then the
// PFCOUNTs of its causes and top domains in one pipeline.
func (s *RedisStore) ReadCounts(ctx context.Context, week string, top int) (WeekCounts, error) {
	pre := redisWeekPrefix(week)
	var attempts, domains *redis.MapStringStringCmd
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		attempts = p.HGetAll(ctx, pre+"a")
		domains = p.HGetAll(ctx, pre+"d")
		return nil
	}); err != nil {
		return WeekCounts{}, redisKVErr(err)
	}
	var w WeekCounts
	for field, v := range attempts.Val() {
		parts := strings.Split(field, "|") // day, cause, listener
		n, err := strconv.ParseInt(v, 10, 64)
		if len(parts) != 3 || err != nil {
			return WeekCounts{}, fmt.Errorf("greylist: redis: report counter %q=%q: %w", field, v, errBadRecord)
		}
		w.add(parts[1], parts[2], n, 0)
	}
	all := map[string][]DomainCounts{}
	for field, v := range domains.Val() {
		cause, domain, ok := strings.Cut(field, "|")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			return WeekCounts{}, fmt.Errorf("greylist: redis: report domain %q=%q: %w", field, v, errBadRecord)
		}
		all[cause] = append(all[cause], DomainCounts{Domain: domain, Attempts: n})
	}
	w.Domains = topDomains(all, top)
	if len(w.Causes) == 0 && len(w.Domains) == 0 {
		return w, nil
	}
	distinct := map[string]*redis.IntCmd{}
	senders := map[string][]*redis.IntCmd{}
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for cause := range w.Causes {
			distinct[cause] = p.PFCount(ctx, pre+"t:"+cause)
		}
		for cause, ds := range w.Domains {
			for _, d := range ds {
				senders[cause] = append(senders[cause], p.PFCount(ctx, pre+"s:"+cause+":"+d.Domain))
			}
		}
		return nil
	}); err != nil {
		return WeekCounts{}, redisKVErr(err)
	}
	for cause, cmd := range distinct {
		c := w.Causes[cause]
		c.Distinct = cmd.Val()
		w.Causes[cause] = c
	}
	for cause, cmds := range senders {
		for i, cmd := range cmds {
			w.Domains[cause][i].Senders = cmd.Val()
		}
	}
	return w, nil
}

// SweepCounts implements Counts: Redis expires the keys itself.
func (s *RedisStore) SweepCounts(context.Context, string) (int, error) { return 0, nil }

// CountsExact implements Counts: distinct counts are HyperLogLog estimates.
func (s *RedisStore) CountsExact() bool { return false }
