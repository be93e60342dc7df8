package history

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"sekisho/greylist"
)

// Defaults of Options.
const (
	DefaultKeep          = 14 * 24 * time.Hour
	DefaultMaxBytes      = 1 << 30 // 1 GiB
	DefaultFlushInterval = time.Second
	DefaultMaxPending    = 50_000
)

// Options configures NewRecorder. The zero value is usable.
type Options struct {
	// Keep and MaxBytes bound the history (history.keep, history.max_bytes).
	Keep     time.Duration
	MaxBytes int64
	// FlushInterval is how often the buffer is written; negative: only
	// Flush and Close write (tests).
	FlushInterval time.Duration
	// MaxPending bounds the records waiting for the next write; beyond it
	// records are dropped and counted.
	MaxPending int
	// StoreTimeout bounds each write; default 10 seconds.
	StoreTimeout time.Duration
	// Now is the clock of records without a time; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// chunkLen is how many records a chunk of the buffer holds. The buffer is
// a list of chunks, never one slice that grows: appending never copies the
// records already there (a growing slice of a busy second's ~400-byte
// records was all of Record's cost), and the chunks of a written batch are
// used again.
const chunkLen = 256

// Recorder buffers records and writes them to the store in batches, one
// transaction (bbolt) or one pipeline (Redis) every FlushInterval. Record
// appends to a chunk of the buffer under a mutex: no encoding, no I/O on the session's
// path, never a wait for the store. A record that cannot be kept — the
// buffer is full, or the write of its batch failed (the store is down) —
// is lost and counted (Lost; the metric sekisho_history_lost_total):
// history is lost, never mail. Unlike the report counters, a failed batch
// is not kept for a retry: records are many and each is small, and a
// store that is down for an hour would hold the buffer full anyway.
type Recorder struct {
	store greylist.History
	lim   greylist.HistoryLimits
	now   func() time.Time
	log   *slog.Logger
	max   int
	tmo   time.Duration

	mu      sync.Mutex
	pending [][]Record // chunks, the last one being filled
	n       int        // records in pending
	free    [][]Record // written chunks, emptied, for Record to fill again
	spare   [][]Record // under flushMu: the other list of chunks

	lost    atomic.Uint64
	written atomic.Uint64

	flushMu  sync.Mutex
	failing  bool
	recBytes int // under flushMu: the last batch's bytes per record, and some

	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

// NewRecorder starts a recorder on store. Close it to write what is left.
func NewRecorder(store greylist.History, o Options) *Recorder {
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.MaxBytes < 0 {
		o.MaxBytes = 0
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Recorder{
		store: store, now: o.Now, log: o.Logger, max: o.MaxPending, tmo: o.StoreTimeout,
		lim:  greylist.HistoryLimits{Keep: o.Keep, MaxBytes: o.MaxBytes, Now: o.Now},
		stop: make(chan struct{}),
	}
	if o.FlushInterval > 0 {
		r.done.Add(1)
		go func() {
			defer r.done.Done()
			t := time.NewTicker(o.FlushInterval)
			defer t.Stop()
			for {
				select {
				case <-r.stop:
					return
				case <-t.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), r.tmo)
				r.Flush(ctx)
				cancel()
			}
		}()
	}
	return r
}

// Record keeps rec for the next write. It never blocks beyond a mutex.
func (r *Recorder) Record(rec Record) {
	if r == nil {
		return
	}
	if rec.Time.IsZero() {
		rec.Time = r.now()
	}
	r.mu.Lock()
	if r.n >= r.max {
		r.mu.Unlock()
		r.lost.Add(1)
		return
	}
	last := len(r.pending) - 1
	if last < 0 || len(r.pending[last]) == chunkLen {
		var c []Record
		if f := len(r.free) - 1; f >= 0 {
			c, r.free = r.free[f], r.free[:f]
		} else {
			c = make([]Record, 0, chunkLen)
		}
		r.pending = append(r.pending, c)
		last++
	}
	r.pending[last] = append(r.pending[last], rec)
	r.n++
	r.mu.Unlock()
}

// Lost is how many records were never written: the buffer was full or the
// store failed.
func (r *Recorder) Lost() uint64 { return r.lost.Load() }

// Written is how many records the store took.
func (r *Recorder) Written() uint64 { return r.written.Load() }

// Flush writes the buffer now, as one batch.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	batch, n := r.pending, r.n
	r.pending, r.n = r.spare, 0
	r.mu.Unlock()
	defer func() {
		for i := range batch {
			clear(batch[i]) // let go of the strings
			batch[i] = batch[i][:0]
		}
		r.mu.Lock()
		r.free = append(r.free, batch...)
		r.mu.Unlock()
		clear(batch)
		r.spare = batch[:0]
	}()
	if n == 0 {
		return nil
	}
	// Every record is encoded into one buffer, sized from the last batch:
	// one allocation per batch, not one per record. The buffer is not
	// reused for the next batch: a write abandoned at StoreTimeout may
	// still be reading it.
	entries := make([]greylist.HistoryEntry, 0, n)
	buf := make([]byte, 0, n*max(r.recBytes, 256)+512)
	for _, c := range batch {
		for i := range c {
			c[i].resolve()
			start := len(buf)
			buf = c[i].appendJSON(buf)
			entries = append(entries, greylist.HistoryEntry{Time: c[i].Time, Data: buf[start:len(buf):len(buf)]})
		}
	}
	r.recBytes = len(buf)/n + 16
	if err := r.store.AppendHistory(ctx, entries, r.lim); err != nil {
		r.lost.Add(uint64(len(entries)))
		if !r.failing {
			r.log.Warn("history: cannot write decision records to the store; they are lost until it answers (mail is not affected)", "err", err, "lost", len(entries))
		}
		r.failing = true
		return err
	}
	if r.failing {
		r.log.Info("history: decision records written to the store again", "lost_total", r.lost.Load())
	}
	r.failing = false
	r.written.Add(uint64(len(entries)))
	return nil
}

// Close stops the background writes and writes what is left.
func (r *Recorder) Close(ctx context.Context) error {
	r.closeOnce.Do(func() { close(r.stop) })
	r.done.Wait()
	return r.Flush(ctx)
}
