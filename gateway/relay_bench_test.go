package gateway

import (
	"context"
	"net"
	"net/smtp"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
	"sekisho/relay"
)

const benchMessage = "From: Bob <bob@example.org>\r\n" +
	"To: alice@campus.test\r\n" +
	"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n" +
	"Subject: bench\r\n" +
	"\r\n" +
	"A short message, as most are.\r\n"

// BenchmarkRelayOverhead measures what relaying through sekisho costs: the
// same messages are sent with net/smtp straight to a next hop (the baseline)
// and through an in-process gateway to it, in the same run, and the ratio
// is reported as "x-direct". The gateway's own checks are off: this is the
// price of the before-queue relay itself (a second SMTP session per message,
// the call-ahead, the streaming).
func BenchmarkRelayOverhead(b *testing.B) {
	hop := harness.StartNextHop(b, false)
	hopAddr := hop.Addr
	h, err := relay.ParseNextHop("smtp://" + hopAddr)
	if err != nil {
		b.Fatal(err)
	}
	campus := mailaddr.NewDomainSet([]string{"campus.test"})
	srv, err := New(Config{
		Hostname:     "mx.campus.test",
		LocalDomains: campus,
		Router: &relay.Router{Hostname: "mx.campus.test",
			Routes:   relay.Routes{{Domains: campus, NextHops: []relay.NextHop{h}}},
			Timeouts: relay.Timeouts{Connect: 5 * time.Second, Command: 30 * time.Second, Data: 30 * time.Second}},
		Limits: Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10, CommandTimeout: 30 * time.Second,
			DataTimeout: 30 * time.Second},
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.ServeSMTP(l)
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
	}()

	send := func(addr string) {
		if err := smtp.SendMail(addr, nil, "bob@example.org", []string{"alice@campus.test"}, []byte(benchMessage)); err != nil {
			b.Fatal(err)
		}
	}
	send(l.Addr().String()) // warm up both paths
	send(hopAddr)

	b.ResetTimer()
	var direct, via time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		send(hopAddr)
		t1 := time.Now()
		send(l.Addr().String())
		via += time.Since(t1)
		direct += t1.Sub(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(via)/float64(b.N), "ns/relayed-msg")
	b.ReportMetric(float64(direct)/float64(b.N), "ns/direct-msg")
	b.ReportMetric(float64(via)/float64(direct), "x-direct")
}
