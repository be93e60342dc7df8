package history

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"sekisho/greylist"
)

// keepingStore keeps a copy of every entry it is given, in order.
type keepingStore struct {
	greylist.History
	mu   sync.Mutex
	data [][]byte
}

func (s *keepingStore) AppendHistory(_ context.Context, recs []greylist.HistoryEntry, _ greylist.HistoryLimits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range recs {
		s.data = append(s.data, append([]byte(nil), e.Data...))
	}
	return nil
}

// TestRecorderKeepsEveryRecordAcrossChunks: records appended by two
// sessions at once while batches are written, over many chunks of the
// buffer and with the chunks of written batches filled again, are each
// written once, whole, each session's in the order it recorded them.
func TestRecorderKeepsEveryRecordAcrossChunks(t *testing.T) {
	store := &keepingStore{}
	r := NewRecorder(store, Options{FlushInterval: -1})
	const half = 5*chunkLen + 3
	const per = 2 * half
	// Two rounds: the second fills the chunks the first one's batches
	// left, each time with batches written while the sessions record.
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		for _, s := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := round * half; i < (round+1)*half; i++ {
					r.Record(Record{Session: s, From: strconv.Itoa(i), Code: 250, Rcpt: "x@campus.test"})
				}
			}()
		}
		flushing := make(chan struct{})
		go func() {
			defer close(flushing)
			for i := 0; i < 10; i++ {
				r.Flush(context.Background())
			}
		}()
		wg.Wait()
		<-flushing
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Lost() != 0 || r.Written() != 2*per || len(store.data) != 2*per {
		t.Fatalf("written %d (store %d), lost %d, want %d, 0", r.Written(), len(store.data), r.Lost(), 2*per)
	}
	next := map[string]int{}
	for _, b := range store.data {
		rec, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if rec.From != strconv.Itoa(next[rec.Session]) || len(rec.To) != 1 || rec.To[0] != "x@campus.test" {
			t.Fatalf("session %s: record %s, want from %d", rec.Session, b, next[rec.Session])
		}
		next[rec.Session]++
	}
	if next["a"] != per || next["b"] != per {
		t.Errorf("records per session: %v", next)
	}
}
