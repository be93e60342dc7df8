package greylist

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchSessions is how many SMTP sessions ask the store at once in
// BenchmarkCheck50.
const benchSessions = 50

// BenchmarkCheck50: 50 sessions at once each asking the store for a
// triplet never seen before (so every Check writes), on three stores in one
// run: bbolt with a transaction and an fsync per Check (DB.Update, as before
// writes were batched), bbolt with DB.Batch (concurrent Checks share one
// transaction and one fsync), and a real redis-server. b.N Checks go to each
// store; the metrics are the wall-clock time per Check of each (the inverse
// of the throughput) and their ratios, measured on the same machine in the
// same minute. ns/op is suppressed: it would be the sum of the three.
//
//	go test -run '^$' -bench Check50 -benchtime 2000x ./greylist
func BenchmarkCheck50(b *testing.B) {
	type store struct {
		name string
		open func(b *testing.B) Store
	}
	bolt := func(opts BoltOptions) func(b *testing.B) Store {
		return func(b *testing.B) Store {
			opts.SweepInterval = -1
			s, err := OpenBolt(filepath.Join(b.TempDir(), "state.db"), opts)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}
	}
	stores := []store{
		{"bolt-update", bolt(BoltOptions{soloWrites: true})},
		{"bolt-batch", bolt(BoltOptions{})},
		{"redis", func(b *testing.B) Store { return newRedisHarness(b).Store }},
	}
	// Opened before the clock runs: starting redis-server is not a Check.
	opened := make([]Store, len(stores))
	for i, st := range stores {
		opened[i] = st.open(b)
	}
	perCheck := make(map[string]float64)
	b.ResetTimer()
	for i, st := range stores {
		start := time.Now()
		checkConcurrently(b, opened[i], b.N, st.name)
		perCheck[st.name] = float64(time.Since(start).Nanoseconds()) / float64(b.N)
	}
	b.StopTimer()
	for name, ns := range perCheck {
		b.ReportMetric(ns, name+"-ns/check")
	}
	b.ReportMetric(perCheck["bolt-update"]/perCheck["bolt-batch"], "update/batch")
	b.ReportMetric(perCheck["bolt-batch"]/perCheck["redis"], "batch/redis")
	b.ReportMetric(perCheck["bolt-update"]/perCheck["redis"], "update/redis")
	b.ReportMetric(0, "ns/op")
}

// checkConcurrently makes n Checks of distinct new triplets from
// benchSessions goroutines at once.
func checkConcurrently(b *testing.B, s Store, n int, prefix string) {
	p := DefaultPolicy()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range benchSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				tr := triplet(fmt.Sprintf("198.51.%d.%d", i/256%256, i%256), fmt.Sprintf("%s-%d@example.org", prefix, i), "alice@campus.example")
				// A deadline, as filters.Greylist gives (store_timeout):
				// bbolt then runs in a goroutine of its own.
				c, cancel := context.WithTimeout(ctx, time.Minute)
				d, err := s.Check(c, tr, p)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				if !d.New {
					b.Errorf("triplet %d: %+v, want a new entry", i, d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkBoltCheckAutoWhitelisted: `make bench`'s steady state, 20
// sessions at once asking for recipients of a network on the
// auto-whitelist. Each Check used to extend the network's expiry, a write
// transaction and an fdatasync; now it is a read-only transaction until the
// expiry is an hour stale.
//
//	go test -run '^$' -bench CheckAutoWhitelisted ./greylist
func BenchmarkBoltCheckAutoWhitelisted(b *testing.B) {
	h := newBoltHarness(b)
	p := DefaultPolicy()
	p.AutoWhitelist = 1
	first := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	for range 2 { // first contact, then the pass that whitelists 192.0.2.0/24
		if _, err := h.Check(ctx, first, p); err != nil {
			b.Fatal(err)
		}
		h.advance(p.Delay + time.Second)
	}
	b.SetParallelism(10) // 20 sessions on 2 CPUs
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			d, err := h.Check(ctx, triplet("192.0.2.20", "bob@example.org", fmt.Sprintf("r%d@campus.example", i%50)), p)
			if err != nil || !d.AutoWhitelisted {
				b.Errorf("check: %+v, %v", d, err)
				return
			}
		}
	})
}
