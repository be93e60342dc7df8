package greylist

import (
	"context"
	"path/filepath"
	"sekisho/internal/testenv"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltPersistsAcrossReopen: the state is in the file, so a restarted
// gateway remembers the first attempt and the passes.
func TestBoltPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "state.db") // the directory is created
	clock := testenv.NewClock()
	open := func() *BoltStore {
		s, err := OpenBolt(path, BoltOptions{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	p := testPolicy
	p.AutoWhitelist = 2
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")

	s := open()
	if d := mustCheck(t, s, tr, p); !d.New {
		t.Fatalf("first contact: %+v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(6 * time.Minute)
	s = open()
	wantPass(t, mustCheck(t, s, tr, p), false) // the first attempt was remembered
	wantPass(t, mustCheck(t, s, tr, p), false) // second pass: network whitelisted
	s.Close()

	s = open()
	defer s.Close()
	other := triplet("192.0.2.77", "new@example.org", "carol@campus.example")
	wantPass(t, mustCheck(t, s, other, p), true) // the auto-whitelist count was kept
}

// TestBoltLockedFile: a second gateway on the same file fails to open it,
// with a message that says why, instead of waiting forever.
func TestBoltLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = OpenBolt(path, BoltOptions{LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second OpenBolt: %v, want a lock error", err)
	}
}

// TestBoltSweeper: the background sweeper deletes expired triplets and
// network counts, and keeps live ones.
func TestBoltSweeper(t *testing.T) {
	clock := testenv.NewClock()
	swept := make(chan int)
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{
		Now:           clock.Now,
		SweepInterval: time.Millisecond,
		sweptHook:     swept,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := testPolicy
	p.AutoWhitelist = 5

	// more than one sweep batch of pending first attempts: one Check, the
	// rest written in one transaction (a Check each would fsync each)
	mustCheck(t, s, triplet("192.0.2.10", "bob@example.org", "r0@campus.example"), p)
	err = s.db.Update(func(tx *bolt.Tx) error {
		first := clock.Now().UnixMilli()
		for i := 1; i < sweepBatch+10; i++ {
			tr := triplet("192.0.2.10", "bob@example.org", "r"+strconv.Itoa(i)+"@campus.example")
			e := &entry{First: first, Until: first + ms(p.RetryWindow)}
			if err := tx.Bucket(bucketTriplets).Put(tripletKey(tr), encodeEntry(e)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// one triplet passes, and so has a network count and a long expiry
	kept := triplet("198.51.100.1", "bob@example.org", "alice@campus.example")
	mustCheck(t, s, kept, p)
	clock.Advance(6 * time.Minute)
	wantPass(t, mustCheck(t, s, kept, p), false)

	if got := count(t, s); got != sweepBatch+10+1+1 {
		t.Fatalf("%d records before the retry window passed", got)
	}
	waitSweep(t, swept) // a sweep that started earlier may be in flight
	clock.Advance(48 * time.Hour)
	deleted := waitSweep(t, swept) + waitSweep(t, swept)
	if deleted != sweepBatch+10 {
		t.Fatalf("sweeps deleted %d records, want the %d expired first attempts", deleted, sweepBatch+10)
	}
	if got := count(t, s); got != 2 {
		t.Fatalf("%d records left, want the passed triplet and its network", got)
	}
	wantPass(t, mustCheck(t, s, kept, p), false)

	clock.Advance(841 * time.Hour)
	waitSweep(t, swept)
	for count(t, s) != 0 {
		waitSweep(t, swept)
	}
}

func waitSweep(t *testing.T, swept <-chan int) int {
	t.Helper()
	select {
	case n := <-swept:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no sweep within 10 s")
		return 0
	}
}

func count(t *testing.T, s *BoltStore) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTriplets, bucketNetworks} {
			n += tx.Bucket(b).Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBoltUnreadableRecord: a record the store cannot read is an error, not
// "no entry" (which would be a made-up answer), and the sweeper removes it so
// the triplet is not stuck.
func TestBoltUnreadableRecord(t *testing.T) {
	clock := testenv.NewClock()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTriplets).Put(tripletKey(tr), []byte("garbage"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Check(ctx, tr, testPolicy); err == nil {
		t.Fatalf("unreadable record gave a decision: %+v", d)
	}
	if d, err := s.Peek(ctx, tr, testPolicy); err == nil {
		t.Fatalf("unreadable record gave a peek decision: %+v", d)
	}
	if n, err := s.sweep(); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v; want the bad record deleted", n, err)
	}
	if d := mustCheck(t, s, tr, testPolicy); !d.New {
		t.Fatalf("after the sweep: %+v, want a new entry", d)
	}
}

func TestBoltCanceledContext(t *testing.T) {
	s := newBoltHarness(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Check(c, triplet("192.0.2.1", "a@b.example", "c@d.example"), testPolicy); err == nil {
		t.Fatal("Check with a canceled context succeeded")
	}
}
