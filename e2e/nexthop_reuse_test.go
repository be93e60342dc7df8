package e2e

import (
	"fmt"
	"net/smtp"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// Next-hop connection reuse (relay/conncache.go, next_hop.connection_cache_time)
// through the built binary.

// reuseMessage is message i of a run, with its own Message-ID.
func reuseMessage(i int) []byte {
	return []byte(fmt.Sprintf("From: bob@example.org\r\nTo: alice@campus.test\r\nSubject: reuse %d\r\n"+
		"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <reuse-%d@example.org>\r\n\r\nBody %d.\r\n", i, i, i))
}

// sendSequentially sends n messages with net/smtp, one connection each, one
// after the other, each acknowledged with 250 before the next.
func sendSequentially(t *testing.T, gw *harness.Gateway, n int) {
	t.Helper()
	for i := range n {
		if err := smtp.SendMail(gw.SMTP, nil, "bob@example.org", []string{"alice@campus.test"}, reuseMessage(i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// deliveredOnce checks that the next hop has each of the n messages exactly
// once.
func deliveredOnce(t *testing.T, hop *harness.NextHop, n int) {
	t.Helper()
	seen := map[int]int{}
	for _, m := range hop.Messages() {
		var i int
		if k := strings.Index(string(m.Data), "Message-ID: <reuse-"); k >= 0 {
			fmt.Sscanf(string(m.Data[k+len("Message-ID: <reuse-"):]), "%d", &i)
			seen[i]++
		}
	}
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("message %d arrived %d times, want once", i, seen[i])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct messages arrived, want %d", len(seen), n)
	}
}

// Fifty messages in sequence, from fifty client connections, take far
// fewer connections to the next hop (the default connection_cache_time,
// 2s), and every one arrives once. With connection_cache_time: 0s each
// message has its own.
func TestNextHopReuseSequential(t *testing.T) {
	const n = 50
	t.Run("default", func(t *testing.T) {
		httpAddr := testenv.FreePort(t)
		gw, hop := campus(t, func(s *site) { s.http = httpAddr })
		sendSequentially(t, gw, n)
		deliveredOnce(t, hop, n)
		if s := hop.Sessions(); s > n/5 {
			t.Errorf("next hop saw %d connections for %d messages, want at most %d", s, n, n/5)
		}
		// Every message either dialled a connection or reused one.
		want := map[string]float64{"outcome=reused": float64(n - hop.Sessions()), "outcome=dead": 0}
		if got := series(scrape(t, httpAddr), "sekisho_relay_connection_cache_total"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("sekisho_relay_connection_cache_total %v, want %v", got, want)
		}
		t.Logf("%d messages, %d next-hop connections", n, hop.Sessions())
		if !strings.Contains(gw.Log(), "next hop connection reused") {
			t.Error("no DEBUG line for a reused connection in the log")
		}
	})
	t.Run("off", func(t *testing.T) {
		gw, hop := campus(t, func(s *site) { s.extra = "next_hop: {connection_cache_time: 0s}\n" })
		sendSequentially(t, gw, 10)
		deliveredOnce(t, hop, 10)
		if s := hop.Sessions(); s != 10 {
			t.Errorf("next hop saw %d connections for 10 messages with the cache off, want 10", s)
		}
	})
}

// rawCampus starts a gateway relaying campus.test to a RawNextHop, which
// records every command of every connection, with the next_hop settings
// given.
func rawCampus(t *testing.T, nextHop string) (*harness.Gateway, *harness.RawNextHop) {
	t.Helper()
	hop := harness.StartRawNextHop(t)
	s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		extra: "next_hop: " + nextHop + "\n"}
	return harness.Start(t, s.yaml(t)), hop
}

// The idle connection gets QUIT when the configuration it belongs to is
// retired (SIGHUP), and at shutdown (SIGTERM), long before its idle time.
func TestNextHopReuseClosedOnReloadAndShutdown(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			gw, hop := rawCampus(t, "{connection_cache_time: 1m}")
			sendSequentially(t, gw, 2)
			if s := hop.Sessions(); s != 1 {
				t.Fatalf("next hop saw %d connections for 2 messages, want 1", s)
			}
			for _, l := range hop.Lines() {
				if strings.HasPrefix(l, "QUIT") {
					t.Fatal("QUIT before the signal: the connection was not kept")
				}
			}
			gw.Signal(sig)
			if !hop.WaitLine("QUIT", 20*time.Second) {
				t.Fatalf("no QUIT on the idle connection after %v; transcripts %q", sig, hop.Transcripts())
			}
			if len(hop.Messages()) != 2 {
				t.Errorf("next hop has %d messages, want 2", len(hop.Messages()))
			}
		})
	}
}
