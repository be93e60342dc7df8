package report

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"sekisho/greylist"
)

// CounterOptions configures NewCounter. The zero value is usable.
type CounterOptions struct {
	// Now is the clock for events without a Time and for retention;
	// default time.Now.
	Now func() time.Time
	// FlushInterval is how often the buffer is written to the store;
	// default DefaultFlushInterval. Negative: only Flush and Close write
	// (tests).
	FlushInterval time.Duration
	// MaxPending bounds the buffer: the triplets, refused domains and
	// their senders not yet written; default DefaultMaxPending.
	MaxPending int
	// Keep is how long counts are kept (report.keep); default DefaultKeep.
	Keep time.Duration
	// SweepInterval is how often weeks older than Keep are deleted;
	// default 1 hour. Negative: only Sweep does it (tests).
	SweepInterval time.Duration
	// StoreTimeout bounds each background write; default 10 seconds.
	StoreTimeout time.Duration
	// IPv4Prefix and IPv6Prefix are the client networks of the distinct
	// triplets; default 24 and 64, as greylisting.
	IPv4Prefix, IPv6Prefix int
	// Logger receives store failures (once per outage); default
	// slog.Default().
	Logger *slog.Logger
}

// Defaults of CounterOptions.
const (
	// FoldInterval is how often recorded events are folded from the
	// queue into the buffer.
	FoldInterval = 100 * time.Millisecond
	// queueSize bounds the queue between two folds: 10,000 decisions a
	// second fit with room to spare; beyond that Record folds itself.
	queueSize = 4096

	DefaultFlushInterval = 5 * time.Second
	DefaultMaxPending    = 100_000
	DefaultKeep          = 400 * day
)

// Counter is the Recorder that counts into the store (greylist.Counts).
// Record only appends the event to a fixed-size queue under a mutex: no map
// work, no allocation, no I/O on the RCPT path. A goroutine folds the queue
// into the buffer (the maps of attempts, triplets and domains) every
// FoldInterval, off the path of the session, and writes the buffer every
// FlushInterval as one batch (one bbolt transaction, one Redis pipeline).
// While the store cannot be written the counts stay in the buffer and go
// with the next flush that succeeds. A queue that is full (the folder is
// behind) is not waited for either: the event is then folded by Record
// itself.
//
// The buffer is bounded by MaxPending entries (triplets, refused domains,
// senders of refused domains). A full buffer never blocks Record: the
// attempt is still counted (attempt counters are one per day, cause and
// listener, a handful), but a new triplet or domain is dropped, and
// Dropped says how many were; distinct counts and top domains then
// undercount.
type Counter struct {
	store  greylist.Counts
	now    func() time.Time
	log    *slog.Logger
	max    int
	keep   time.Duration
	v4, v6 int
	tmo    time.Duration

	qmu   sync.Mutex
	queue []Event // recorded, not yet folded; never grows past queueSize

	foldMu sync.Mutex // one fold at a time; guards spare
	spare  []Event    // the other half of the double buffer

	mu      sync.Mutex
	p       pending
	dropped atomic.Uint64

	flushMu sync.Mutex // one flush at a time
	failing bool       // under flushMu: the last flush failed (log once)

	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

var _ Recorder = (*Counter)(nil)

type countKey struct {
	day             int32
	cause, listener string
}

type tripletKey struct {
	countKey
	network           netip.Prefix
	sender, recipient string
}

type domainKey struct {
	monday        int32
	cause, domain string
}

type senderKey struct {
	domainKey
	sender string
}

// pending is the buffer: what happened since the last successful flush.
type pending struct {
	attempts map[countKey]int64
	triplets map[tripletKey]struct{}
	domains  map[domainKey]int64
	senders  map[senderKey]struct{}
}

// pendingHint sizes a new buffer's triplet map, so that a busy gateway does
// not grow it from nothing after every flush (growing a map rehashes it).
const pendingHint = 4096

func newPending() pending {
	return pending{
		attempts: map[countKey]int64{},
		triplets: make(map[tripletKey]struct{}, pendingHint),
		domains:  map[domainKey]int64{},
		senders:  map[senderKey]struct{}{},
	}
}

// size is what MaxPending bounds.
func (p *pending) size() int { return len(p.triplets) + len(p.domains) + len(p.senders) }

func (p *pending) empty() bool { return len(p.attempts) == 0 && p.size() == 0 }

// NewCounter starts a counter on store. Close it to write what is left.
func NewCounter(store greylist.Counts, o CounterOptions) *Counter {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Hour
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 10 * time.Second
	}
	if o.IPv4Prefix <= 0 {
		o.IPv4Prefix = 24
	}
	if o.IPv6Prefix <= 0 {
		o.IPv6Prefix = 64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Counter{
		store: store, now: o.Now, log: o.Logger, max: o.MaxPending, keep: o.Keep,
		v4: o.IPv4Prefix, v6: o.IPv6Prefix, tmo: o.StoreTimeout,
		p: newPending(), stop: make(chan struct{}),
		queue: make([]Event, 0, queueSize), spare: make([]Event, 0, queueSize),
	}
	c.every(FoldInterval, func(context.Context) { c.fold() })
	if o.FlushInterval > 0 {
		c.every(o.FlushInterval, func(ctx context.Context) { c.Flush(ctx) })
	}
	if o.SweepInterval > 0 {
		c.every(o.SweepInterval, func(ctx context.Context) {
			if _, err := c.Sweep(ctx); err != nil {
				c.log.Warn("report: deleting old counts failed", "err", err)
			}
		})
	}
	return c
}

func (c *Counter) every(d time.Duration, f func(context.Context)) {
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.tmo)
			f(ctx)
			cancel()
		}
	}()
}

func (c *Counter) network(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := c.v6
	if a.Is4() {
		bits = c.v4
	}
	p, _ := a.Prefix(bits) // the zero Prefix for no address
	return p
}

// Record implements Recorder: it never blocks on the store, and on the
// RCPT path costs one append to the queue.
func (c *Counter) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = c.now()
	}
	c.qmu.Lock()
	if len(c.queue) < cap(c.queue) {
		c.queue = append(c.queue, e)
		c.qmu.Unlock()
		return
	}
	c.qmu.Unlock()
	c.mu.Lock()
	c.add(&e)
	c.mu.Unlock()
}

// fold moves the queued events into the buffer.
func (c *Counter) fold() {
	c.foldMu.Lock()
	defer c.foldMu.Unlock()
	c.qmu.Lock()
	q := c.queue
	c.queue = c.spare
	c.qmu.Unlock()
	if len(q) > 0 {
		c.mu.Lock()
		for i := range q {
			c.add(&q[i])
		}
		c.mu.Unlock()
	}
	clear(q) // let go of the strings
	c.spare = q[:0]
}

// add counts one event into the buffer; c.mu is held.
func (c *Counter) add(e *Event) {
	ck := countKey{day: dayNumber(e.Time), cause: e.Cause, listener: e.Listener}
	tk := tripletKey{countKey: ck, network: c.network(e.Client), sender: e.Sender, recipient: e.Recipient}
	var dropped uint64
	p := &c.p
	p.attempts[ck]++
	full := p.size() >= c.max
	if _, ok := p.triplets[tk]; !ok {
		if full {
			dropped++
		} else {
			p.triplets[tk] = struct{}{}
		}
	}
	if e.Domain != "" {
		dk := domainKey{monday: mondayNumber(ck.day), cause: e.Cause, domain: e.Domain}
		if _, ok := p.domains[dk]; ok || !full {
			p.domains[dk]++
			sk := senderKey{domainKey: dk, sender: e.Sender}
			if _, ok := p.senders[sk]; !ok {
				if full {
					dropped++
				} else {
					p.senders[sk] = struct{}{}
				}
			}
		} else {
			dropped++
		}
	}
	if dropped > 0 {
		c.dropped.Add(dropped)
	}
}

// Dropped is how many triplets, refused domains and senders were left out
// because the buffer was full (a metric: distinct counts undercount by up
// to that much).
func (c *Counter) Dropped() uint64 {
	c.fold()
	return c.dropped.Load()
}

// Pending is the number of buffered entries not yet written (bounded by
// MaxPending; attempt counters are not counted).
func (c *Counter) Pending() int {
	c.fold()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p.size()
}

// Flush writes the buffer to the store now. On failure the counts go back
// into the buffer (as much of them as fits) for the next flush.
func (c *Counter) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.fold()
	c.mu.Lock()
	p := c.p
	if p.empty() {
		c.mu.Unlock()
		return nil
	}
	c.p = newPending()
	c.mu.Unlock()

	err := c.store.AddCounts(ctx, c.batch(&p))
	if err != nil {
		c.restore(&p)
		if !c.failing {
			c.log.Warn("report: cannot write counts to the store; kept in memory until it answers", "err", err, "max_pending", c.max)
		}
		c.failing = true
		return fmt.Errorf("report: writing counts: %w", err)
	}
	if c.failing {
		c.log.Info("report: counts written to the store again")
	}
	c.failing = false
	return nil
}

// restore puts p back in front of what came meanwhile. Attempt counters
// always fit; other entries beyond MaxPending are dropped.
func (c *Counter) restore(p *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var dropped uint64
	for k, n := range p.attempts {
		c.p.attempts[k] += n
	}
	for k, n := range p.domains {
		if _, ok := c.p.domains[k]; ok || c.p.size() < c.max {
			c.p.domains[k] += n
		} else {
			dropped++
		}
	}
	for k := range p.triplets {
		if _, ok := c.p.triplets[k]; !ok {
			if c.p.size() < c.max {
				c.p.triplets[k] = struct{}{}
			} else {
				dropped++
			}
		}
	}
	for k := range p.senders {
		if _, ok := c.p.senders[k]; !ok {
			if c.p.size() < c.max {
				c.p.senders[k] = struct{}{}
			} else {
				dropped++
			}
		}
	}
	c.dropped.Add(dropped)
}

// until is when the counts of the week starting on monday may go.
func (c *Counter) until(monday int32) time.Time {
	return dayTime(monday).Add(7 * day).Add(c.keep)
}

// batch turns the buffer into the store's batch, days in order (so that a
// triplet seen on two days of a batch is credited to the first).
func (c *Counter) batch(p *pending) greylist.CountBatch {
	deltas := map[countKey]*greylist.CountDelta{}
	delta := func(k countKey) *greylist.CountDelta {
		d := deltas[k]
		if d == nil {
			m := mondayNumber(k.day)
			d = &greylist.CountDelta{Week: WeekName(dayTime(m)), Day: DateString(dayTime(k.day)),
				Cause: k.cause, Listener: k.listener, Until: c.until(m)}
			deltas[k] = d
		}
		return d
	}
	for k, n := range p.attempts {
		delta(k).Attempts += n
	}
	for k := range p.triplets {
		d := delta(k.countKey)
		d.Triplets = append(d.Triplets, k.network.String()+"\x00"+k.sender+"\x00"+k.recipient)
	}
	var b greylist.CountBatch
	for _, d := range deltas {
		b.Counts = append(b.Counts, *d)
	}
	sort.Slice(b.Counts, func(i, j int) bool {
		x, y := b.Counts[i], b.Counts[j]
		if x.Day != y.Day {
			return x.Day < y.Day
		}
		if x.Cause != y.Cause {
			return x.Cause < y.Cause
		}
		return x.Listener < y.Listener
	})

	domains := map[domainKey]*greylist.DomainDelta{}
	for k, n := range p.domains {
		domains[k] = &greylist.DomainDelta{Week: WeekName(dayTime(k.monday)), Cause: k.cause, Domain: k.domain,
			Attempts: n, Until: c.until(k.monday)}
	}
	for k := range p.senders {
		d := domains[k.domainKey]
		if d == nil { // the domain's entry was dropped, not its sender
			d = &greylist.DomainDelta{Week: WeekName(dayTime(k.monday)), Cause: k.cause, Domain: k.domain, Until: c.until(k.monday)}
			domains[k.domainKey] = d
		}
		d.Senders = append(d.Senders, k.sender)
	}
	for _, d := range domains {
		b.Domains = append(b.Domains, *d)
	}
	return b
}

// Sweep deletes the weeks that ended more than Keep ago (the week holding
// now − Keep is kept whole).
func (c *Counter) Sweep(ctx context.Context) (int, error) {
	return c.store.SweepCounts(ctx, WeekName(c.now().Add(-c.keep)))
}

// Close stops the background writes and writes what is left (SIGTERM). An
// error means the remaining counts could not be written and are lost.
func (c *Counter) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { close(c.stop) })
	c.done.Wait()
	if err := c.Flush(ctx); err != nil {
		return fmt.Errorf("%w (the buffered counts are lost)", err)
	}
	return nil
}
