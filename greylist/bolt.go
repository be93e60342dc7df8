package greylist

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The buckets of the greylist in the bbolt file. Other state gets buckets
// of its own in the same file (bucketKV: kv.go; bucketReport: counts.go).
var (
	bucketTriplets = []byte("greylist.triplets")
	bucketNetworks = []byte("greylist.networks")
)

// Record layouts (big-endian), each starting with a version byte so that a
// later layout can be read next to this one.
const (
	recordVersion  = 1
	entryRecordLen = 1 + 8 + 8 + 8 + 4 // version, First, LastPass, Until, Passes
	netRecordLen   = 1 + 4 + 8         // version, Count, Until
	sweepBatch     = 1000              // keys deleted per write transaction
)

// BoltOptions configures OpenBolt. The zero value is usable.
type BoltOptions struct {
	// Now is the clock; default time.Now. Tests pass a controllable one.
	Now func() time.Time
	// SweepInterval is how often expired entries are deleted in the
	// background; default 10 minutes, negative disables the sweeper. Expired
	// entries are ignored on read either way: sweeping only frees space.
	SweepInterval time.Duration
	// LockTimeout is how long to wait for the file lock another process
	// holds; default 1 second, after which OpenBolt fails.
	LockTimeout time.Duration
	// Logger receives sweep errors; default slog.Default().
	Logger *slog.Logger
	// BatchDelay is how long a batch of Checks that came while another
	// write was under way waits for more to share its commit (one fsync for
	// all of them; bbolt's MaxBatchDelay); default DefaultBatchDelay. A
	// Check alone does not wait.
	BatchDelay time.Duration
	// MaxStalled is how many calls may be left behind by callers whose
	// deadline passed while bbolt did not return (a stalled disk) before
	// further calls fail at once with ErrStalled instead of starting
	// another goroutine; default DefaultMaxStalled.
	MaxStalled int

	// soloWrites (benchmarks) makes every Check a transaction of its own
	// (DB.Update), as before writes were batched.
	soloWrites bool
	// sweptHook, if set (tests), receives the number of keys each
	// background sweep deleted.
	sweptHook chan<- int
}

// initialMmapSize is the address space bbolt maps at the start (not
// memory, not disk: the file grows as before). Without it bbolt maps the
// file's size rounded up to a power of two, from 32 KiB for a new file,
// and maps again each time the file outgrows that: every remap waits for
// all read transactions (the sessions' greylist lookups) and copies every
// key and value the write transaction holds, a batch of decision records
// included (profiled: most of the history's CPU while the file grew). Up
// to 256 MiB of file, no remap; beyond, bbolt maps as it does without the
// option.
const initialMmapSize = 256 << 20

// Defaults of BoltOptions.
const (
	DefaultBatchDelay = time.Millisecond
	DefaultMaxStalled = 100
)

// ErrStalled is returned at once, without asking bbolt, while
// BoltOptions.MaxStalled earlier calls are still waiting for the disk after
// their callers gave up on them.
var ErrStalled = errors.New("greylist: bbolt stalled")

// BoltStore is the embedded store: one bbolt file, which survives restarts
// and needs no server. Each Check runs in a read-write transaction, so
// check-and-set is atomic, and returns after its transaction is committed
// (fsynced). A Check alone commits at once (DB.Update); Checks that come
// while another write is under way share the next transaction and its fsync
// (DB.Batch, which waits up to BoltOptions.BatchDelay for more of them).
//
// bbolt takes no context, and a write or fsync on a stalled disk does not
// return. So a call whose context can end runs bbolt in a goroutine of its
// own and returns at the context's end with the context's error; the bbolt
// call finishes (or not) on its own. A Check whose caller has gone by the
// time its turn in the transaction comes writes nothing; one already written
// is committed whenever the disk comes back — a complete transaction either
// way, as bbolt never commits part of one. Calls left behind are counted:
// at BoltOptions.MaxStalled, new calls fail at once with ErrStalled, so a
// disk that never comes back costs a bounded number of goroutines.
type BoltStore struct {
	db     *bolt.DB
	now    func() time.Time
	logger *slog.Logger

	maxStalled int
	soloWrites bool
	writers    atomic.Int64   // Checks in bbolt (or waiting for it)
	stalled    atomic.Int64   // calls left behind by their callers, still in bbolt
	calls      sync.WaitGroup // goroutines running bbolt calls for callers (tests wait for them)

	stop     chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once
	swept    chan<- int
}

var _ Store = (*BoltStore)(nil)

// OpenBolt opens (creating if needed, with its directory) the bbolt file at
// path and starts the background sweeper.
func OpenBolt(path string, opts BoltOptions) (*BoltStore, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = 10 * time.Minute
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BatchDelay <= 0 {
		opts.BatchDelay = DefaultBatchDelay
	}
	if opts.MaxStalled <= 0 {
		opts.MaxStalled = DefaultMaxStalled
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("greylist: %w", err)
	}
	db, err := bolt.Open(path, 0o640, &bolt.Options{Timeout: opts.LockTimeout, InitialMmapSize: initialMmapSize})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("greylist: %s is locked by another process (is another sekisho running?)", path)
		}
		return nil, fmt.Errorf("greylist: opening %s: %w", path, err)
	}
	db.MaxBatchDelay = opts.BatchDelay
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTriplets, bucketNetworks, bucketKV, bucketReport, bucketStats} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: initialising %s: %w", path, err)
	}
	s := &BoltStore{
		db:         db,
		now:        opts.Now,
		logger:     opts.Logger,
		maxStalled: opts.MaxStalled,
		soloWrites: opts.soloWrites,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		swept:      opts.sweptHook,
	}
	if opts.SweepInterval > 0 {
		go s.sweeper(opts.SweepInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Check implements Store.
//
// Most Checks of a busy correspondent change nothing (a network on the
// auto-whitelist whose expiry was extended lately, a retry before the
// delay): a read-only transaction decides them, and only a decision that
// writes takes a write transaction (which decides again, atomically with
// its writes), so they cost no disk write and no fdatasync.
func (s *BoltStore) Check(ctx context.Context, t Triplet, p Policy) (Decision, error) {
	d, writes, err := s.run(ctx, t, p, false)
	if err != nil || !writes {
		return d, err
	}
	d, _, err = s.run(ctx, t, p, true)
	return d, err
}

// Peek implements Store: a read-only transaction, nothing written.
func (s *BoltStore) Peek(ctx context.Context, t Triplet, p Policy) (Decision, error) {
	d, _, err := s.run(ctx, t, p, false)
	return d, err
}

// run decides in one transaction, a write transaction that writes the
// outcome when write is set; writes says whether the outcome has anything
// to write.
func (s *BoltStore) run(ctx context.Context, t Triplet, p Policy, write bool) (Decision, bool, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, false, err
	}
	tkey, nkey := tripletKey(t), []byte(t.Source())
	// Set by fn, which may still run after do returned (a stalled disk):
	// read only once do says fn finished.
	var d Decision
	var writes bool
	var gone bool // fn found ctx ended and did nothing
	fn := func(tx *bolt.Tx) error {
		gone = ctx.Err() != nil
		if gone {
			// The caller has gone (its deadline passed while an
			// earlier transaction held the disk): decide nothing,
			// write nothing. Not an error, which would make bbolt
			// roll back and re-run the whole batch.
			return nil
		}
		tb, nb := tx.Bucket(bucketTriplets), tx.Bucket(bucketNetworks)
		e, err := decodeEntry(tb.Get(tkey))
		if err != nil {
			return fmt.Errorf("triplet %s: %w", t, err)
		}
		n, err := decodeNetEntry(nb.Get(nkey))
		if err != nil {
			return fmt.Errorf("network %s: %w", t.Source(), err)
		}
		o := decide(e, n, s.now().UnixMilli(), p)
		d, writes = o.d, o.entry != nil || o.netEntry != nil
		if !write {
			return nil
		}
		if o.entry != nil {
			if err := tb.Put(tkey, encodeEntry(o.entry)); err != nil {
				return err
			}
		}
		if o.netEntry != nil {
			if err := nb.Put(nkey, encodeNetEntry(o.netEntry)); err != nil {
				return err
			}
		}
		return nil
	}
	err := s.do(ctx, func() error {
		if write {
			// Alone, a Check commits at once; while another write is
			// under way, it joins the batch that commits next.
			n := s.writers.Add(1)
			defer s.writers.Add(-1)
			if n == 1 || s.soloWrites {
				return s.db.Update(fn)
			}
			return s.db.Batch(fn)
		}
		return s.db.View(fn)
	})
	if err == nil && gone {
		err = ctx.Err() // ended just as fn ran: d was not decided
	}
	if err != nil {
		if errors.Is(err, ErrStalled) {
			return Decision{}, false, err // bbolt was not asked
		}
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			err = ErrClosed
		}
		return Decision{}, false, fmt.Errorf("greylist: bbolt: %w", err)
	}
	return d, writes, nil
}

// do runs the bbolt call f for a caller with ctx and returns its error, or
// ctx's error (wrapped) when ctx ends first; f then goes on in its goroutine
// and is counted as stalled until it returns.
func (s *BoltStore) do(ctx context.Context, f func() error) error {
	if n := s.stalled.Load(); n >= int64(s.maxStalled) {
		return fmt.Errorf("%w: %d calls still waiting for the disk", ErrStalled, n)
	}
	if ctx.Done() == nil {
		return f() // nothing to return early for
	}
	const (
		running = iota
		finished
		abandoned
	)
	var state atomic.Int32
	res := make(chan error, 1)
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		err := f()
		if !state.CompareAndSwap(running, finished) {
			s.stalled.Add(-1) // the caller left it behind
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
	}
	s.stalled.Add(1) // before the swap, so that the count never goes below 0
	if state.CompareAndSwap(running, abandoned) {
		return fmt.Errorf("no answer in time (disk stalled?): %w", ctx.Err())
	}
	s.stalled.Add(-1)
	return <-res // it finished just now: its answer is good
}

// Close stops the sweeper and closes the file. bbolt waits for a write
// transaction in progress, so on a stalled disk Close returns when the disk
// comes back.
func (s *BoltStore) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

func (s *BoltStore) sweeper(every time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		n, err := s.sweep()
		if err != nil {
			s.logger.Warn("greylist: sweeping expired entries failed", "err", err, "deleted", n)
		}
		if s.swept != nil {
			select {
			case s.swept <- n:
			case <-s.stop:
				return
			}
		}
	}
}

// sweep deletes the expired entries of both buckets, in batches of
// sweepBatch keys per write transaction so that Checks are not held up by one
// long transaction. It returns how many keys it deleted.
func (s *BoltStore) sweep() (int, error) {
	total := 0
	for _, bucket := range [][]byte{bucketTriplets, bucketNetworks, bucketKV, bucketStats} {
		var after []byte // resume point: the last key examined
		for {
			select {
			case <-s.stop:
				return total, nil
			default:
			}
			now := s.now().UnixMilli()
			var expired [][]byte
			done := true
			err := s.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucket).Cursor()
				k, v := c.First()
				if after != nil {
					k, v = c.Seek(after)
					if k != nil && string(k) == string(after) {
						k, v = c.Next()
					}
				}
				for ; k != nil; k, v = c.Next() {
					if until, ok := untilOf(bucket, v); !ok || until <= now {
						expired = append(expired, append([]byte(nil), k...))
					}
					after = append(after[:0], k...)
					if len(expired) == sweepBatch {
						done = false
						break
					}
				}
				return nil
			})
			if err != nil {
				return total, err
			}
			if len(expired) > 0 {
				err = s.db.Update(func(tx *bolt.Tx) error {
					b := tx.Bucket(bucket)
					for _, k := range expired {
						// Re-check: a Check may have renewed it meanwhile.
						if until, ok := untilOf(bucket, b.Get(k)); ok && until > now {
							continue
						}
						if err := b.Delete(k); err != nil {
							return err
						}
						total++
					}
					return nil
				})
				if err != nil {
					return total, err
				}
			}
			if done {
				break
			}
		}
	}
	return total, nil
}

// tripletKey is source NUL sender NUL recipient: NUL cannot occur in an
// SMTP address, so the key is unambiguous; a domain triplet's source
// ("spf:domain") is never a network's.
func tripletKey(t Triplet) []byte {
	return []byte(t.Source() + "\x00" + t.Sender + "\x00" + t.Recipient)
}

func encodeEntry(e *entry) []byte {
	b := make([]byte, entryRecordLen)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], uint64(e.First))
	binary.BigEndian.PutUint64(b[9:], uint64(e.LastPass))
	binary.BigEndian.PutUint64(b[17:], uint64(e.Until))
	binary.BigEndian.PutUint32(b[25:], e.Passes)
	return b
}

// errBadRecord is a record this version cannot read. It is an error, not
// "no entry": a damaged store is a store problem, and the caller decides.
var errBadRecord = errors.New("unreadable record")

func decodeEntry(b []byte) (*entry, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) != entryRecordLen || b[0] != recordVersion {
		return nil, errBadRecord
	}
	return &entry{
		First:    int64(binary.BigEndian.Uint64(b[1:])),
		LastPass: int64(binary.BigEndian.Uint64(b[9:])),
		Until:    int64(binary.BigEndian.Uint64(b[17:])),
		Passes:   binary.BigEndian.Uint32(b[25:]),
	}, nil
}

func encodeNetEntry(n *netEntry) []byte {
	b := make([]byte, netRecordLen)
	b[0] = recordVersion
	binary.BigEndian.PutUint32(b[1:], n.Count)
	binary.BigEndian.PutUint64(b[5:], uint64(n.Until))
	return b
}

func decodeNetEntry(b []byte) (*netEntry, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) != netRecordLen || b[0] != recordVersion {
		return nil, errBadRecord
	}
	return &netEntry{
		Count: binary.BigEndian.Uint32(b[1:]),
		Until: int64(binary.BigEndian.Uint64(b[5:])),
	}, nil
}

// untilOf reads the expiry of a record of bucket.
func untilOf(bucket, b []byte) (int64, bool) {
	switch string(bucket) {
	case string(bucketKV):
		return kvUntil(b)
	case string(bucketStats):
		return statsUntil(b)
	}
	return recordUntil(b)
}

// recordUntil reads the expiry of either record kind; ok is false for a
// record neither layout reads (the sweeper deletes those).
func recordUntil(b []byte) (int64, bool) {
	switch {
	case len(b) == entryRecordLen && b[0] == recordVersion:
		return int64(binary.BigEndian.Uint64(b[17:])), true
	case len(b) == netRecordLen && b[0] == recordVersion:
		return int64(binary.BigEndian.Uint64(b[5:])), true
	}
	return 0, false
}
