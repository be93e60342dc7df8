package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"sekisho/greylist"
	"sekisho/history"
)

// BenchmarkRCPTHistory measures what recording the decision history costs
// the RCPT path: the same refused recipients (each a decision that is
// recorded) are sent to a gateway without a history and to one whose
// history.Recorder writes to a real bbolt store every second, alternately
// in the same run; the ratio is "x-unrecorded" (the budget: under
// 1.05). docs/performance.md has the figures.
func BenchmarkRCPTHistory(b *testing.B) {
	store, err := greylist.OpenBolt(filepath.Join(b.TempDir(), "state.db"), greylist.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	rec := history.NewRecorder(store, history.Options{})
	defer rec.Close(context.Background())

	plain := startTestGateway(b, nil, nil)
	cfg := testGatewayConfig(b)
	cfg.History = rec
	recorded := serveTestGateway(b, cfg, nil)
	cp, cr := benchSession(b, plain), benchSession(b, recorded)
	for i := 0; i < 200; i++ { // warm up both
		cp(i)
		cr(i)
	}
	b.ResetTimer()
	var without, with time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		cp(i)
		t1 := time.Now()
		cr(i)
		with += time.Since(t1)
		without += t1.Sub(t0)
	}
	b.StopTimer()
	if err := rec.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if rec.Lost() != 0 || rec.Written() < uint64(b.N) {
		b.Fatalf("recorded %d, lost %d of %d decisions", rec.Written(), rec.Lost(), b.N+200)
	}
	b.ReportMetric(float64(without)/float64(b.N), "ns/rcpt-unrecorded")
	b.ReportMetric(float64(with)/float64(b.N), "ns/rcpt-recorded")
	b.ReportMetric(float64(with)/float64(without), "x-unrecorded")
}
