package report_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"sekisho/report"
)

// BenchmarkRecordNewTriplets is counting in a spam run: every event a
// triplet not seen before (the worst case). It times Record (what the RCPT
// path pays) and the fold of the queue into the buffer (what the
// background goroutine pays) together: the CPU counting takes per event.
func BenchmarkRecordNewTriplets(b *testing.B) {
	c := report.NewCounter(nopStore{}, report.CounterOptions{FlushInterval: -1, SweepInterval: -1, MaxPending: 1 << 30})
	events := make([]report.Event, b.N)
	now := time.Now()
	for i := range events {
		events[i] = report.Event{Time: now, Cause: report.RelayDenied, Listener: "smtp",
			Client: netip.AddrFrom4([4]byte{192, 0, 2, 7}), Sender: "bench@campus.test", Recipient: fmt.Sprintf("r%d@elsewhere.example", i)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range events {
		c.Record(events[i])
	}
	if n := c.Pending(); n != b.N { // folds what is left
		b.Fatalf("pending %d, want %d", n, b.N)
	}
}
