package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sekisho/greylist"
	"sekisho/internal/mailaddr"
	"sekisho/relay"
	"sekisho/report"
)

// BenchmarkRCPTCounting measures what counting costs the RCPT path: the
// same refused recipients (each a decision that is counted) are sent to a
// gateway without a recorder and to one whose report.Counter flushes to a
// real bbolt store, in the same run, and the ratio is reported as
// "x-uncounted" (the budget: under 1.05).
func BenchmarkRCPTCounting(b *testing.B) {
	store, err := greylist.OpenBolt(filepath.Join(b.TempDir(), "state.db"), greylist.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	counter := report.NewCounter(store, report.CounterOptions{})
	defer counter.Close(context.Background())

	plain := benchGateway(b, nil)
	counted := benchGateway(b, counter)
	cp, cc := benchSession(b, plain), benchSession(b, counted)
	for i := 0; i < 200; i++ { // warm up both
		cp(i)
		cc(i)
	}
	b.ResetTimer()
	var without, with time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		cp(i)
		t1 := time.Now()
		cc(i)
		with += time.Since(t1)
		without += t1.Sub(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(without)/float64(b.N), "ns/rcpt-uncounted")
	b.ReportMetric(float64(with)/float64(b.N), "ns/rcpt-counted")
	b.ReportMetric(float64(with)/float64(without), "x-uncounted")
}

func benchGateway(b *testing.B, rec report.Recorder) string {
	return startTestGateway(b, rec, nil)
}

// startTestGateway serves a gateway with no checks, relaying everything to a
// Maildir, on a loopback listener (wrapped by wrap, if set); it returns the
// address.
func startTestGateway(tb testing.TB, rec report.Recorder, wrap func(net.Listener) net.Listener) string {
	tb.Helper()
	cfg := testGatewayConfig(tb)
	cfg.Recorder = rec
	return serveTestGateway(tb, cfg, wrap)
}

// testGatewayConfig is startTestGateway's configuration, for tests that
// add to it (serveTestGateway).
func testGatewayConfig(tb testing.TB) Config {
	return Config{
		Hostname:     "mx.campus.test",
		LocalDomains: mailaddr.NewDomainSet([]string{"campus.test"}),
		Router:       &relay.Router{Hostname: "mx.campus.test", Routes: relay.Routes{{Domains: mailaddr.NewDomainSet([]string{"*"}), NextHops: []relay.NextHop{{Kind: relay.HopMaildir, Path: tb.TempDir()}}}}},
		Limits:       Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 1 << 30, CommandTimeout: time.Minute, DataTimeout: time.Minute},
	}
}

// serveTestGateway serves a gateway of cfg on the smtp role, as
// startTestGateway does.
func serveTestGateway(tb testing.TB, cfg Config, wrap func(net.Listener) net.Listener) string {
	tb.Helper()
	srv, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	go srv.ServeSMTP(l)
	tb.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
	})
	return addr
}

// benchSession opens a session and returns a function that sends one RCPT
// for an outside domain (relay denied: one counted decision) and reads the
// reply.
func benchSession(b *testing.B, addr string) func(i int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	read := func() string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) >= 4 && line[3] == ' ' {
				return line
			}
		}
	}
	read()
	fmt.Fprintf(c, "EHLO bench.example\r\nMAIL FROM:<bench@campus.test>\r\n")
	read()
	read()
	return func(i int) {
		fmt.Fprintf(c, "RCPT TO:<r%d@elsewhere.example>\r\n", i)
		if l := read(); !strings.HasPrefix(l, "554 ") {
			b.Fatalf("RCPT: %q", l)
		}
	}
}

// BenchmarkRCPTCountingBusy is BenchmarkRCPTCounting with every core busy:
// 8 sessions send RCPTs at once to one gateway, then to the other, in
// alternating rounds, so that the background fold of the counter competes
// with the sessions for the CPU. "x-uncounted" is the ratio of the time the
// counted gateway took for the same number of recipients.
func BenchmarkRCPTCountingBusy(b *testing.B) {
	const sessions = 8
	store, err := greylist.OpenBolt(filepath.Join(b.TempDir(), "state.db"), greylist.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	counter := report.NewCounter(store, report.CounterOptions{})
	defer counter.Close(context.Background())

	plain, counted := benchGateway(b, nil), benchGateway(b, counter)
	var cps, ccs [sessions]func(int)
	for s := range sessions {
		cps[s], ccs[s] = benchSession(b, plain), benchSession(b, counted)
	}
	round := func(fs *[sessions]func(int), from, n int) time.Duration {
		var wg sync.WaitGroup
		t0 := time.Now()
		for s := range sessions {
			wg.Go(func() {
				for i := from; i < from+n; i++ {
					fs[s](i*sessions + s)
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	round(&cps, 0, 50) // warm up both
	round(&ccs, 0, 50)
	const perRound = 250
	b.ResetTimer()
	var without, with time.Duration
	for i := 0; i < b.N; i += perRound * sessions {
		without += round(&cps, 50+i, perRound)
		with += round(&ccs, 50+i, perRound)
	}
	b.StopTimer()
	b.ReportMetric(float64(with)/float64(without), "x-uncounted")
}
