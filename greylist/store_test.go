package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
)

// The policy tests run the same steps against both stores. Time is
// controlled: the BoltStore gets a fake clock, the RedisStore an offset added
// to Redis' own clock inside the script (real Redis time still moves, by the
// milliseconds the test takes, which the assertions allow for).

// harness is a store under test and the way to move its clock.
type harness struct {
	Store
	advance func(time.Duration)
	// slack is how far the store's clock may move on its own during a
	// step: 0 for the fake clock, the test's own duration for Redis.
	slack time.Duration
}

func newBoltHarness(t testing.TB) harness {
	clock := testenv.NewClock()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return harness{Store: s, advance: clock.Advance}
}

func newRedisStore(t testing.TB, addr string) *RedisStore {
	s := NewRedisStore(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { s.Close() })
	return s
}

func newRedisHarness(t testing.TB) harness {
	srv := testredis.Start(t)
	s := newRedisStore(t, srv.Addr())
	return harness{Store: s, advance: func(d time.Duration) { s.offset += d }, slack: 5 * time.Second}
}

// forEachStore runs f as a subtest on a fresh BoltStore and a fresh RedisStore.
func forEachStore(t *testing.T, f func(t *testing.T, h harness)) {
	t.Run("bolt", func(t *testing.T) { f(t, newBoltHarness(t)) })
	t.Run("redis", func(t *testing.T) { f(t, newRedisHarness(t)) })
}

var (
	testPolicy = Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, Expire: 840 * time.Hour}
	ctx        = context.Background()
)

func triplet(ip, from, to string) Triplet {
	return NewTriplet(netip.MustParseAddr(ip), from, to, DefaultNetworkPrefix)
}

func mustCheck(t *testing.T, s Store, tr Triplet, p Policy) Decision {
	t.Helper()
	d, err := s.Check(ctx, tr, p)
	if err != nil {
		t.Fatalf("Check(%v): %v", tr, err)
	}
	return d
}

func mustPeek(t *testing.T, s Store, tr Triplet, p Policy) Decision {
	t.Helper()
	d, err := s.Peek(ctx, tr, p)
	if err != nil {
		t.Fatalf("Peek(%v): %v", tr, err)
	}
	return d
}

// wantDefer asserts a deferral whose wait is within (want-slack, want].
func wantDefer(t *testing.T, h harness, d Decision, new bool, want time.Duration) {
	t.Helper()
	if d.Pass || d.New != new || d.AutoWhitelisted {
		t.Fatalf("decision %+v, want defer with New=%v", d, new)
	}
	if d.Wait > want || d.Wait <= want-h.slack-time.Millisecond {
		t.Fatalf("wait %v, want %v (slack %v)", d.Wait, want, h.slack)
	}
}

func wantPass(t *testing.T, d Decision, awl bool) {
	t.Helper()
	if !d.Pass || d.New || d.AutoWhitelisted != awl || d.Wait != 0 {
		t.Fatalf("decision %+v, want pass (auto-whitelisted %v)", d, awl)
	}
}

func TestStorePolicy(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		tr := triplet("192.0.2.10", "Bob@Example.org", "alice@campus.example")

		// first attempt: new entry, defer for the whole delay
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), true, 5*time.Minute)

		// early retry: defer for what is left, no new entry
		h.advance(2 * time.Minute)
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), false, 3*time.Minute)

		// after the delay: pass
		h.advance(3*time.Minute + time.Second)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)

		// the same /24, another host, a new BATV tag: the same triplet, passes
		other := triplet("192.0.2.99", "prvs=1234abcdef=bob@example.org", "ALICE@campus.example")
		wantPass(t, mustCheck(t, h, other, testPolicy), false)

		// another /24 is another triplet
		far := triplet("198.51.100.10", "bob@example.org", "alice@campus.example")
		wantDefer(t, h, mustCheck(t, h, far, testPolicy), true, 5*time.Minute)

		// the null sender is a sender like any other
		bounce := triplet("192.0.2.10", "", "alice@campus.example")
		wantDefer(t, h, mustCheck(t, h, bounce, testPolicy), true, 5*time.Minute)
		h.advance(5*time.Minute + time.Second)
		wantPass(t, mustCheck(t, h, bounce, testPolicy), false)
	})
}

func TestStoreRetryWindow(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), true, 5*time.Minute)
		// not retried within the window: forgotten, the retry starts over
		h.advance(48*time.Hour + time.Second)
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), true, 5*time.Minute)
		// and that new round passes after the delay
		h.advance(5*time.Minute + time.Second)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)
	})
}

func TestStoreExpire(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		mustCheck(t, h, tr, testPolicy)
		h.advance(6 * time.Minute)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)

		// each pass extends the entry by Expire
		h.advance(800 * time.Hour)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)
		h.advance(800 * time.Hour)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)

		// Expire after the last pass: forgotten, greylisted again
		h.advance(840*time.Hour + time.Minute)
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), true, 5*time.Minute)
	})
}

func TestStoreAutoWhitelist(t *testing.T) {
	p := testPolicy
	p.AutoWhitelist = 3
	forEachStore(t, func(t *testing.T, h harness) {
		// three passes from 192.0.2.0/24 (two triplets, one passing twice)
		a := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		b := triplet("192.0.2.11", "carol@example.org", "dave@campus.example")
		mustCheck(t, h, a, p)
		mustCheck(t, h, b, p)
		h.advance(6 * time.Minute)
		wantPass(t, mustCheck(t, h, a, p), false)
		wantPass(t, mustCheck(t, h, b, p), false)

		// two passes: a new triplet from the network is still greylisted
		c := triplet("192.0.2.12", "erin@example.org", "frank@campus.example")
		wantDefer(t, h, mustCheck(t, h, c, p), true, 5*time.Minute)

		wantPass(t, mustCheck(t, h, a, p), false) // the third pass

		// now the network is auto-whitelisted: a new triplet passes at once
		d := triplet("192.0.2.13", "grace@example.org", "heidi@campus.example")
		wantPass(t, mustCheck(t, h, d, p), true)
		wantPass(t, mustPeek(t, h, d, p), true)
		// ...but only that network
		e := triplet("192.0.3.13", "grace@example.org", "heidi@campus.example")
		wantDefer(t, h, mustCheck(t, h, e, p), true, 5*time.Minute)

		// with the auto-whitelist off, the count is not used
		off := p
		off.AutoWhitelist = 0
		f := triplet("192.0.2.14", "ivan@example.org", "judy@campus.example")
		wantDefer(t, h, mustCheck(t, h, f, off), true, 5*time.Minute)

		// the auto-whitelist expires Expire after the network's last pass
		h.advance(840*time.Hour + time.Minute)
		g := triplet("192.0.2.15", "mallory@example.org", "niaj@campus.example")
		wantDefer(t, h, mustCheck(t, h, g, p), true, 5*time.Minute)
	})
}

// TestStoreClockInTheFuture: an entry whose first attempt lies in the future
// (the clock went back by an hour) is reset to now; it passes one delay
// later, not an hour and a delay later.
func TestStoreClockInTheFuture(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		mustCheck(t, h, tr, testPolicy)
		h.advance(-time.Hour)
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), false, 5*time.Minute)
		h.advance(5*time.Minute + time.Second)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)

		// a pass time in the future does not block either
		h.advance(-10 * time.Hour)
		wantPass(t, mustCheck(t, h, tr, testPolicy), false)

		// a far jump back (a year) on a new round
		tr2 := triplet("192.0.2.10", "bob@example.org", "zoe@campus.example")
		mustCheck(t, h, tr2, testPolicy)
		h.advance(-365 * 24 * time.Hour)
		wantDefer(t, h, mustCheck(t, h, tr2, testPolicy), false, 5*time.Minute)
		h.advance(5*time.Minute + time.Second)
		wantPass(t, mustCheck(t, h, tr2, testPolicy), false)
	})
}

// TestStorePeekWritesNothing: Peek answers as Check would, and leaves no entry.
func TestStorePeekWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		wantDefer(t, h, mustPeek(t, h, tr, testPolicy), true, 5*time.Minute)
		wantDefer(t, h, mustPeek(t, h, tr, testPolicy), true, 5*time.Minute)
		// Check still sees a first contact: Peek created nothing
		wantDefer(t, h, mustCheck(t, h, tr, testPolicy), true, 5*time.Minute)
		h.advance(time.Minute)
		wantDefer(t, h, mustPeek(t, h, tr, testPolicy), false, 4*time.Minute)
		h.advance(5 * time.Minute)
		wantPass(t, mustPeek(t, h, tr, testPolicy), false)
		// the peek at a passing triplet did not record a pass: with an
		// auto-whitelist of 1, a pass would whitelist the network
		p := testPolicy
		p.AutoWhitelist = 1
		other := triplet("192.0.2.10", "x@example.org", "y@campus.example")
		wantPass(t, mustPeek(t, h, tr, p), false)
		wantDefer(t, h, mustPeek(t, h, other, p), true, 5*time.Minute)
		wantPass(t, mustCheck(t, h, tr, p), false)
		wantPass(t, mustPeek(t, h, other, p), true)
	})
}

// TestStoreConcurrentFirstContacts: 50 simultaneous first contacts of one
// triplet create one entry: exactly one decision says New. On Redis they are
// spread over two stores, as two gateways would be.
func TestStoreConcurrentFirstContacts(t *testing.T) {
	run := func(t *testing.T, stores ...Store) {
		tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		const n = 50
		var news, defers atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(s Store) {
				defer wg.Done()
				<-start
				d, err := s.Check(ctx, tr, testPolicy)
				if err != nil {
					errs <- err
					return
				}
				if d.New {
					news.Add(1)
				}
				if !d.Pass {
					defers.Add(1)
				}
			}(stores[i%len(stores)])
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if news.Load() != 1 || defers.Load() != n {
			t.Fatalf("%d concurrent first contacts: %d new entries (want 1), %d deferrals (want %d)", n, news.Load(), defers.Load(), n)
		}
	}
	t.Run("bolt", func(t *testing.T) { run(t, newBoltHarness(t).Store) })
	t.Run("redis", func(t *testing.T) {
		srv := testredis.Start(t)
		run(t, newRedisStore(t, srv.Addr()), newRedisStore(t, srv.Addr()))
	})
}

func TestStoreClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		d, err := h.Check(ctx, tr, testPolicy)
		if err == nil {
			t.Fatalf("Check on a closed store: %+v, no error", d)
		}
		if d != (Decision{}) {
			t.Fatalf("Check on a closed store returned a decision with its error: %+v", d)
		}
	})
}

func benchmarkCheck(b *testing.B, s Store) {
	p := DefaultPolicy()
	triplets := make([]Triplet, 1000)
	for i := range triplets {
		triplets[i] = triplet(fmt.Sprintf("192.0.%d.%d", i%250, i%200), fmt.Sprintf("s%d@example.org", i), fmt.Sprintf("r%d@campus.example", i%37))
	}
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.Check(ctx, triplets[i%len(triplets)], p); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.SetParallelism(16) // many SMTP sessions at once
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := next.Add(1)
				if _, err := s.Check(ctx, triplets[i%int64(len(triplets))], p); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkBoltCheck(b *testing.B) {
	benchmarkCheck(b, newBoltHarness(b).Store)
}

func BenchmarkRedisCheck(b *testing.B) {
	benchmarkCheck(b, newRedisHarness(b).Store)
}

// TestStoreAutoWhitelistRefresh: a network on the auto-whitelist has its
// expiry extended by a pass only once it is an hour stale (refreshSlack),
// so a busy whitelisted network is not written at every recipient: it is
// forgotten Expire after the pass that last extended it.
func TestStoreAutoWhitelistRefresh(t *testing.T) {
	p := testPolicy
	p.AutoWhitelist = 1
	forEachStore(t, func(t *testing.T, h harness) {
		a := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		mustCheck(t, h, a, p)
		h.advance(6 * time.Minute)
		wantPass(t, mustCheck(t, h, a, p), false) // whitelists 192.0.2.0/24 until now + Expire

		// 30 minutes later a pass does not extend it...
		h.advance(30 * time.Minute)
		wantPass(t, mustCheck(t, h, triplet("192.0.2.11", "x@example.org", "y@campus.example"), p), true)
		h.advance(p.Expire - 30*time.Minute + time.Minute)
		wantDefer(t, h, mustCheck(t, h, triplet("192.0.2.12", "x@example.org", "y@campus.example"), p), true, 5*time.Minute)
	})
	forEachStore(t, func(t *testing.T, h harness) {
		a := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
		mustCheck(t, h, a, p)
		h.advance(6 * time.Minute)
		wantPass(t, mustCheck(t, h, a, p), false)

		// ...two hours later it does
		h.advance(2 * time.Hour)
		wantPass(t, mustCheck(t, h, triplet("192.0.2.11", "x@example.org", "y@campus.example"), p), true)
		h.advance(p.Expire - 2*time.Hour + time.Minute)
		wantPass(t, mustCheck(t, h, triplet("192.0.2.12", "x@example.org", "y@campus.example"), p), true)
	})
}

// TestBoltCheckWithoutWriteReadsOnly: a Check that changes nothing (an
// auto-whitelisted network extended lately, a retry before the delay)
// commits no write transaction: no page written, no fdatasync.
func TestBoltCheckWithoutWriteReadsOnly(t *testing.T) {
	h := newBoltHarness(t)
	db := h.Store.(*BoltStore).db
	pagesWritten := func() int64 { st := db.Stats(); return st.TxStats.GetWrite() }
	p := testPolicy
	p.AutoWhitelist = 1
	a := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	mustCheck(t, h, a, p)
	h.advance(time.Minute)
	writes := pagesWritten()
	wantDefer(t, h, mustCheck(t, h, a, p), false, 4*time.Minute) // too early: nothing to write
	if n := pagesWritten() - writes; n != 0 {
		t.Errorf("a retry before the delay wrote %d pages", n)
	}
	h.advance(5 * time.Minute)
	wantPass(t, mustCheck(t, h, a, p), false) // the pass is written
	if pagesWritten() == writes {
		t.Error("the pass wrote nothing")
	}
	writes = pagesWritten()
	for i := range 10 {
		wantPass(t, mustCheck(t, h, triplet("192.0.2.20", fmt.Sprintf("s%d@example.org", i), "y@campus.example"), p), true)
	}
	if n := pagesWritten() - writes; n != 0 {
		t.Errorf("10 auto-whitelisted passes wrote %d pages", n)
	}
}
