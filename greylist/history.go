package greylist

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// History is the decision history's part of the store (DESIGN.md §6,
// `sekisho history`): records the store does not read, each with its time,
// kept in time order and bounded by age and by size, the oldest going
// first. package history encodes, writes (history.Recorder) and searches
// them; the store only appends, reads back newest first and forgets.
//
// Layouts: on bbolt one bucket, "history", keyed by the record's time (8
// bytes, big-endian Unix nanoseconds) and a sequence number, with the
// total of its keys and values in "history.meta"; every append deletes,
// in the same transaction, what is older than HistoryLimits.Keep and the
// oldest records beyond HistoryLimits.MaxBytes. On Redis one stream per
// UTC day, sekisho:history:{YYYY-MM-DD}, expiring Keep after its day, with
// its byte count beside it (sekisho:history:{YYYY-MM-DD}:bytes); every
// append trims the oldest days' streams until the total fits MaxBytes.
// Several gateways appending at once may trim a little more than needed:
// the cap is never exceeded by more than one batch.
type History interface {
	// AppendHistory writes a batch of records in one transaction (bbolt)
	// or one pipeline (Redis), then enforces lim.
	AppendHistory(ctx context.Context, recs []HistoryEntry, lim HistoryLimits) error
	// ReadHistory calls f with the records from since to until (inclusive),
	// newest first, until f returns false.
	ReadHistory(ctx context.Context, since, until time.Time, f func(HistoryEntry) bool) error
}

// HistoryEntry is one stored record: its time and its bytes.
type HistoryEntry struct {
	Time time.Time
	Data []byte
}

// HistoryLimits bound the history: records older than Keep, and the oldest
// beyond MaxBytes (0: no size limit), are deleted.
type HistoryLimits struct {
	Keep     time.Duration
	MaxBytes int64
	// Now is the clock for Keep; default time.Now.
	Now func() time.Time
}

func (l HistoryLimits) cutoff() time.Time {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	return now().Add(-l.Keep)
}

var (
	bucketHistory     = []byte("history")
	bucketHistoryMeta = []byte("history.meta")
	historyBytesKey   = []byte("bytes")
)

// historyOverhead is what an entry costs beyond its data in the byte count:
// its key (bbolt) or stream id and field name (Redis), roughly.
const historyOverhead = 16

var _ History = (*BoltStore)(nil)
var _ History = (*RedisStore)(nil)

// AppendHistory implements History.
func (s *BoltStore) AppendHistory(ctx context.Context, recs []HistoryEntry, lim HistoryLimits) error {
	return s.do(ctx, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketHistory)
			if err != nil {
				return err
			}
			m, err := tx.CreateBucketIfNotExists(bucketHistoryMeta)
			if err != nil {
				return err
			}
			var total int64
			if v := m.Get(historyBytesKey); len(v) == 8 {
				total = int64(binary.BigEndian.Uint64(v))
			}
			// Keys only grow (time, then sequence) and the oldest go
			// first: pages filled to the brim, not split in half, are
			// half the pages to write and to map.
			b.FillPercent = 1
			keys := make([]byte, 16*len(recs)) // one allocation; bbolt keeps the keys until the commit
			for i, r := range recs {
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				k := keys[16*i : 16*i+16 : 16*i+16]
				binary.BigEndian.PutUint64(k, uint64(r.Time.UnixNano()))
				binary.BigEndian.PutUint64(k[8:], seq)
				if err := b.Put(k, r.Data); err != nil {
					return err
				}
				total += int64(len(k) + len(r.Data))
			}
			cut := uint64(lim.cutoff().UnixNano())
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.First() {
				old := lim.Keep > 0 && binary.BigEndian.Uint64(k) < cut
				big := lim.MaxBytes > 0 && total > lim.MaxBytes
				if !old && !big {
					break
				}
				total -= int64(len(k) + len(v))
				if err := c.Delete(); err != nil {
					return err
				}
			}
			if total < 0 {
				total = 0
			}
			var nb [8]byte
			binary.BigEndian.PutUint64(nb[:], uint64(total))
			return m.Put(historyBytesKey, nb[:])
		})
	})
}

// ReadHistory implements History.
func (s *BoltStore) ReadHistory(ctx context.Context, since, until time.Time, f func(HistoryEntry) bool) error {
	return s.do(ctx, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketHistory)
			if b == nil {
				return nil
			}
			lo := uint64(since.UnixNano())
			var hi [16]byte
			binary.BigEndian.PutUint64(hi[:], uint64(until.UnixNano()))
			for i := 8; i < 16; i++ {
				hi[i] = 0xff
			}
			c := b.Cursor()
			k, v := c.Seek(hi[:])
			if k == nil {
				k, v = c.Last()
			} else if bytes.Compare(k, hi[:]) > 0 {
				k, v = c.Prev()
			}
			for ; k != nil; k, v = c.Prev() {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t := binary.BigEndian.Uint64(k)
				if t < lo {
					return nil
				}
				if !f(HistoryEntry{Time: time.Unix(0, int64(t)), Data: bytes.Clone(v)}) {
					return nil
				}
			}
			return nil
		})
	})
}

// RedisHistoryPrefix starts the history's keys in Redis.
const RedisHistoryPrefix = "sekisho:history:"

const day = 24 * time.Hour

func historyStream(d time.Time) string {
	return RedisHistoryPrefix + "{" + d.UTC().Format("2006-01-02") + "}"
}

// historyReadPage is how many entries one XREVRANGE reads.
const historyReadPage = 500

// AppendHistory implements History.
func (s *RedisStore) AppendHistory(ctx context.Context, recs []HistoryEntry, lim HistoryLimits) error {
	if len(recs) == 0 {
		return nil
	}
	added := map[string]int64{}
	var order []string
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range recs {
			key := historyStream(r.Time)
			if _, ok := added[key]; !ok {
				order = append(order, key)
			}
			added[key] += int64(len(r.Data) + historyOverhead)
			p.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"r", string(r.Data)}})
		}
		for _, key := range order {
			d, _ := time.Parse("2006-01-02", key[len(RedisHistoryPrefix)+1:len(key)-1])
			exp := d.Add(day + lim.Keep)
			p.IncrBy(ctx, key+":bytes", added[key])
			p.ExpireAt(ctx, key, exp)
			p.ExpireAt(ctx, key+":bytes", exp)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if lim.MaxBytes > 0 {
		return s.trimHistory(ctx, lim)
	}
	return nil
}

// historyDays lists the day streams that may hold records from since to
// until, newest first.
func historyDays(since, until time.Time) []string {
	var keys []string
	first := since.UTC().Truncate(day)
	for d := until.UTC().Truncate(day); !d.Before(first); d = d.Add(-day) {
		keys = append(keys, historyStream(d))
	}
	return keys
}

// trimHistory deletes the oldest entries while the days' byte counts add up
// to more than lim.MaxBytes.
func (s *RedisStore) trimHistory(ctx context.Context, lim HistoryLimits) error {
	now := time.Now()
	if lim.Now != nil {
		now = lim.Now()
	}
	keys := historyDays(now.Add(-lim.Keep-day), now.Add(day))
	counts := make([]*redis.StringCmd, len(keys))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			counts[i] = p.Get(ctx, k+":bytes")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var total int64
	sizes := make([]int64, len(keys))
	for i, c := range counts {
		sizes[i], _ = c.Int64()
		total += sizes[i]
	}
	for i := len(keys) - 1; i >= 0 && total > lim.MaxBytes; i-- { // oldest day first
		key := keys[i]
		for total > lim.MaxBytes && sizes[i] > 0 {
			msgs, err := s.client.XRangeN(ctx, key, "-", "+", historyReadPage).Result()
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				break
			}
			var freed int64
			var ids []string
			for _, m := range msgs {
				if total-freed <= lim.MaxBytes {
					break
				}
				r, _ := m.Values["r"].(string)
				freed += int64(len(r) + historyOverhead)
				ids = append(ids, m.ID)
			}
			if err := s.client.XDel(ctx, key, ids...).Err(); err != nil {
				return err
			}
			if err := s.client.DecrBy(ctx, key+":bytes", freed).Err(); err != nil {
				return err
			}
			total -= freed
			sizes[i] -= freed
		}
	}
	return nil
}

// ReadHistory implements History. Within a day the order is the order the
// records reached Redis (batches of several gateways interleave).
func (s *RedisStore) ReadHistory(ctx context.Context, since, until time.Time, f func(HistoryEntry) bool) error {
	for _, key := range historyDays(since, until) {
		hi := "+"
		for {
			msgs, err := s.client.XRevRangeN(ctx, key, hi, "-", historyReadPage).Result()
			if err != nil {
				return err
			}
			for _, m := range msgs {
				r, _ := m.Values["r"].(string)
				t, ok := historyTime(r)
				if ok && (t.Before(since) || t.After(until)) {
					continue
				}
				if !f(HistoryEntry{Time: t, Data: []byte(r)}) {
					return nil
				}
			}
			if len(msgs) < historyReadPage {
				break
			}
			hi = "(" + msgs[len(msgs)-1].ID
		}
	}
	return nil
}

// historyTime reads the time a record starts with: package history writes
// its records as JSON objects whose first field is "time" in Unix
// nanoseconds ({"t":1700000000000000000,...}).
func historyTime(r string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(r, `{"t":`)
	if !ok {
		return time.Time{}, false
	}
	end := strings.IndexAny(rest, ",}")
	if end < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(rest[:end], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// HistoryBytes is the history's size as the store counts it (tests, status).
func (s *BoltStore) HistoryBytes() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketHistoryMeta); m != nil {
			if v := m.Get(historyBytesKey); len(v) == 8 {
				n = int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("greylist: %w", err)
	}
	return n, nil
}
