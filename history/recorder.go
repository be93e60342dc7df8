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

// pendingHint sizes the buffers.
const pendingHint = 1024

// Recorder buffers records and writes them to the store in batches, one
// transaction (bbolt) or one pipeline (Redis) every FlushInterval. Record
// appends to a slice under a mutex: no encoding, no I/O on the session's
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
	pending []Record
	spare   []Record // under flushMu: the other half of the double buffer

	lost    atomic.Uint64
	written atomic.Uint64

	flushMu sync.Mutex
	failing bool

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
		// A busy gateway's second of decisions fits without growing.
		pending: make([]Record, 0, pendingHint), spare: make([]Record, 0, pendingHint),
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
	if len(r.pending) >= r.max {
		r.mu.Unlock()
		r.lost.Add(1)
		return
	}
	r.pending = append(r.pending, rec)
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
	batch := r.pending
	r.pending = r.spare
	r.mu.Unlock()
	defer func() {
		clear(batch) // let go of the strings
		r.spare = batch[:0]
	}()
	if len(batch) == 0 {
		return nil
	}
	entries := make([]greylist.HistoryEntry, 0, len(batch))
	for i := range batch {
		batch[i].resolve()
		b, err := batch[i].Marshal()
		if err != nil {
			r.lost.Add(1)
			continue
		}
		entries = append(entries, greylist.HistoryEntry{Time: batch[i].Time, Data: b})
	}
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
