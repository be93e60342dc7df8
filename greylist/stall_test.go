package greylist

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sekisho/internal/frozendisk"
	"sekisho/internal/testenv"
)

// A stalled disk: bbolt takes no context, and a write or fsync that does not
// return holds bbolt's writer lock, so every later Check waits for it. The
// store must answer at its caller's deadline all the same (filters.Greylist
// gives the deadline: store_timeout), keep a bounded number of calls behind,
// and leave a consistent file once the disk is back.
//
// Two ways to stall it:
//   - TestBoltStallFrozenDisk freezes a real filesystem (fsfreeze on a
//     loop-mounted ext4): bbolt's pwrite really does not return. It needs
//     root and loop devices and is skipped without them (frozendisk).
//   - TestBoltStallWriterLock holds bbolt's writer lock with a write
//     transaction of the test's own: where a Check waits behind a commit
//     stuck on the disk, with no change to the code under test. It runs
//     everywhere.

// stallTimeout is the callers' deadline in these tests; stallSlack is how
// much later than it an answer may come on a busy machine under -race.
const (
	stallTimeout = 300 * time.Millisecond
	stallSlack   = 2 * time.Second
)

// checkTimesOut makes a Check with a stallTimeout deadline and fails unless
// it returns the deadline's error, with no decision, in time.
func checkTimesOut(t *testing.T, s *BoltStore, tr Triplet) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, stallTimeout)
	defer cancel()
	start := time.Now()
	d, err := s.Check(c, tr, testPolicy)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || d != (Decision{}) {
		t.Fatalf("Check on a stalled store: %+v, %v; want no decision and the deadline's error", d, err)
	}
	if took > stallTimeout+stallSlack {
		t.Fatalf("Check on a stalled store returned after %v, deadline %v", took, stallTimeout)
	}
}

// wantFailFast fails unless f (a call on a store with MaxStalled calls left
// behind) returns ErrStalled at once, although its deadline is far away.
func wantFailFast(t *testing.T, what string, f func(context.Context) (Decision, error)) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	d, err := f(c)
	if !errors.Is(err, ErrStalled) || d != (Decision{}) || !strings.HasSuffix(err.Error(), "calls still waiting for the disk") {
		t.Fatalf("%s with MaxStalled calls stuck: %+v, %v; want ErrStalled, saying why", what, d, err)
	}
	if took := time.Since(start); took > stallSlack {
		t.Fatalf("%s with MaxStalled calls stuck took %v, want at once", what, took)
	}
}

// waitCalls waits for every bbolt call left behind to return.
func waitCalls(t *testing.T, s *BoltStore) {
	t.Helper()
	done := make(chan struct{})
	go func() { s.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("calls left behind did not return within 10 s of the disk coming back")
	}
	if n := s.stalled.Load(); n != 0 {
		t.Fatalf("%d calls still counted as stalled after all returned", n)
	}
}

// wantConsistent runs bbolt's own consistency check on the file.
func wantConsistent(t *testing.T, s *BoltStore) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the checker stops when all is read
			if first == nil {
				first = err
			}
		}
		return first
	})
	if err != nil {
		t.Fatalf("bbolt file inconsistent after the stall: %v", err)
	}
}

func stallTriplet(i int) Triplet {
	return triplet("192.0.2.10", fmt.Sprintf("s%d@example.org", i), "alice@campus.example")
}

// TestBoltStallWriterLock: with bbolt's writer lock held (as by a commit
// stuck on the disk), Checks return at their deadline; after MaxStalled of
// them, further calls fail at once without asking bbolt; once the lock is
// released the calls left behind return, write nothing (their callers were
// told the store failed), and the store works again.
func TestBoltStallWriterLock(t *testing.T) {
	clock := testenv.NewClock()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{Now: clock.Now, SweepInterval: -1, MaxStalled: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	known := stallTriplet(1)
	mustCheck(t, s, known, testPolicy)

	tx, err := s.db.Begin(true) // the "stuck commit"
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			tx.Rollback()
		}
	}
	defer release()

	for i := 10; i < 13; i++ {
		checkTimesOut(t, s, stallTriplet(i))
		if n := s.stalled.Load(); n != int64(i-9) {
			t.Fatalf("%d calls counted as stalled, want %d", n, i-9)
		}
	}
	wantFailFast(t, "Check", func(c context.Context) (Decision, error) { return s.Check(c, stallTriplet(13), testPolicy) })
	wantFailFast(t, "Peek", func(c context.Context) (Decision, error) { return s.Peek(c, known, testPolicy) })

	release()
	waitCalls(t, s)
	wantConsistent(t, s)
	for i := 10; i < 13; i++ {
		// The callers had gone when their turn came: nothing written.
		if d := mustPeek(t, s, stallTriplet(i), testPolicy); !d.New {
			t.Fatalf("triplet %d written by a Check whose caller had gone: %+v", i, d)
		}
	}
	if d := mustCheck(t, s, known, testPolicy); d.New {
		t.Fatalf("the triplet checked before the stall was lost: %+v", d)
	}
	if d := mustCheck(t, s, stallTriplet(13), testPolicy); !d.New {
		t.Fatalf("after the stall: %+v, want a new entry", d)
	}
}

// TestBoltCheckWithAndWithoutDeadline: a context that cannot end runs bbolt
// in the caller's goroutine (nothing to return early for), one with a
// deadline in a goroutine of its own; both get bbolt's answer.
func TestBoltCheckWithAndWithoutDeadline(t *testing.T) {
	s := newBoltHarness(t).Store.(*BoltStore)
	if d := mustCheck(t, s, stallTriplet(1), testPolicy); !d.New {
		t.Fatalf("%+v", d)
	}
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if d, err := s.Check(c, stallTriplet(1), testPolicy); err != nil || d.New || d.Pass {
		t.Fatalf("second Check with a deadline: %+v, %v; want a known triplet deferred", d, err)
	}
	waitCalls(t, s)
}

// TestBoltStallFrozenDisk: the real thing. The bbolt file is on a
// filesystem that the test freezes, so bbolt's write of the commit blocks in
// the kernel. Checks answer at their deadline, at most MaxStalled are left
// behind, then calls fail at once; after the thaw the stuck commit completes,
// the calls queued behind it write nothing, the file is consistent, and the
// store works (and keeps what it writes across a reopen).
func TestBoltStallFrozenDisk(t *testing.T) {
	disk := frozendisk.Mount(t)
	path := filepath.Join(disk.Dir, "state.db")
	s, err := OpenBolt(path, BoltOptions{SweepInterval: -1, MaxStalled: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the thaw Freeze registers
	known := stallTriplet(1)
	if d := mustCheck(t, s, known, testPolicy); !d.New {
		t.Fatalf("before the freeze: %+v", d)
	}

	disk.Freeze()
	checkTimesOut(t, s, stallTriplet(10)) // its commit is stuck in pwrite
	checkTimesOut(t, s, stallTriplet(11)) // waits behind it for the writer lock
	if n := s.stalled.Load(); n != 2 {
		t.Fatalf("%d calls counted as stalled, want 2", n)
	}
	wantFailFast(t, "Check", func(c context.Context) (Decision, error) { return s.Check(c, stallTriplet(12), testPolicy) })

	disk.Thaw()
	waitCalls(t, s)
	wantConsistent(t, s)
	// Triplet 10 may or may not have been written (its transaction was
	// prepared before the deadline, unless the machine was very slow);
	// triplet 11 waited for the lock until after its caller had gone.
	if d := mustPeek(t, s, stallTriplet(11), testPolicy); !d.New {
		t.Fatalf("triplet 11 written by a Check whose caller had gone: %+v", d)
	}
	if d := mustCheck(t, s, known, testPolicy); d.New {
		t.Fatalf("the triplet checked before the freeze was lost: %+v", d)
	}
	if d := mustCheck(t, s, stallTriplet(12), testPolicy); !d.New {
		t.Fatalf("after the thaw: %+v, want a new entry", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(path, BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if d := mustPeek(t, s, stallTriplet(12), testPolicy); d.New {
		t.Fatalf("after a reopen: %+v, want the entry written after the thaw", d)
	}
}
