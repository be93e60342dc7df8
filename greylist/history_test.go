package greylist

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/internal/testredis"
)

// historyStores runs f on a fresh BoltStore and a fresh RedisStore.
func historyStores(t *testing.T, f func(t *testing.T, h History)) {
	t.Run("bolt", func(t *testing.T) {
		s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
	t.Run("redis", func(t *testing.T) {
		srv := testredis.Start(t)
		f(t, newRedisStore(t, srv.Addr()))
	})
}

// historyEntry is a record as package history writes them: a JSON object
// whose first field is the time in nanoseconds (the Redis layout reads it).
func historyEntry(at time.Time, n int) HistoryEntry {
	return HistoryEntry{Time: at, Data: []byte(fmt.Sprintf(`{"t":%d,"n":%d,"pad":%q}`, at.UnixNano(), n, strings.Repeat("x", 80)))}
}

func readAll(t *testing.T, h History, since, until time.Time) []int {
	t.Helper()
	var ns []int
	err := h.ReadHistory(context.Background(), since, until, func(e HistoryEntry) bool {
		var n int
		if _, err := fmt.Sscanf(string(e.Data[strings.Index(string(e.Data), `"n":`):]), `"n":%d`, &n); err != nil {
			t.Fatalf("entry %q: %v", e.Data, err)
		}
		ns = append(ns, n)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestHistoryCapOldestFirst: appended in batches past history.max_bytes,
// the log keeps the newest records without a gap, read newest first, and
// about as many as the cap holds; each batch leaves it under the cap.
func TestHistoryCapOldestFirst(t *testing.T) {
	historyStores(t, func(t *testing.T, h History) {
		ctx := context.Background()
		now := time.Now()
		const maxBytes = 3000 // about 25 records of ~120 bytes
		lim := HistoryLimits{Keep: time.Hour, MaxBytes: maxBytes}
		for b := 0; b < 10; b++ {
			var batch []HistoryEntry
			for i := 0; i < 10; i++ {
				n := b*10 + i
				batch = append(batch, historyEntry(now.Add(time.Duration(n-100)*time.Second), n))
			}
			if err := h.AppendHistory(ctx, batch, lim); err != nil {
				t.Fatal(err)
			}
		}
		got := readAll(t, h, now.Add(-time.Hour), now)
		if len(got) < 15 || len(got) > 30 {
			t.Fatalf("%d records kept under a cap of %d bytes, want about 25: %v", len(got), maxBytes, got)
		}
		for i, n := range got {
			if n != 99-i {
				t.Fatalf("record %d is %d, want %d (the newest, newest first, no gap): %v", i, n, 99-i, got)
			}
		}
		// since and until bound what is read.
		if got := readAll(t, h, now.Add(-5*time.Second-time.Millisecond), now.Add(-3*time.Second)); fmt.Sprint(got) != "[97 96 95]" {
			t.Errorf("records from -5s to -3s: %v, want [97 96 95]", got)
		}
	})
}

// TestHistoryKeep: records older than history.keep are gone after the next
// append; younger ones stay.
func TestHistoryKeep(t *testing.T) {
	historyStores(t, func(t *testing.T, h History) {
		ctx := context.Background()
		now := time.Now()
		lim := HistoryLimits{Keep: 24 * time.Hour}
		if err := h.AppendHistory(ctx, []HistoryEntry{historyEntry(now.Add(-72*time.Hour), 1), historyEntry(now.Add(-time.Hour), 2)}, lim); err != nil {
			t.Fatal(err)
		}
		if err := h.AppendHistory(ctx, []HistoryEntry{historyEntry(now, 3)}, lim); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, h, now.Add(-100*time.Hour), now); fmt.Sprint(got) != "[3 2]" {
			t.Errorf("after an append with keep 24h: %v, want [3 2]", got)
		}
	})
}
