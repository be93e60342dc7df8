package e2e

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testredis"
)

// TestGreetPause: a client that talks before the banner is refused with
// 554 5.5.1 and disconnected; a patient one is served after the pause.
func TestGreetPause(t *testing.T) {
	gw, _ := campus(t, func(s *site) { s.greet = "1s" })

	early := harness.DialNoBanner(t, outside, gw.SMTP)
	early.Send("EHLO impatient.example")
	if r := early.Read(); !strings.HasPrefix(r.String(), "554 5.5.1") {
		t.Errorf("client talking first: %v, want 554 5.5.1", r)
	}
	if !early.Closed(5 * time.Second) {
		t.Error("pregreet client not disconnected")
	}
	gw.WaitLog("check=greet_pause outcome=rejected", 5*time.Second)

	// Another client: the impatient one's address is remembered as
	// having talked first (TestGreetPauseRemembered).
	start := time.Now()
	patient := harness.DialFrom(t, "127.0.0.3", gw.SMTP)
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("banner came after %v, before the 1s pause", waited)
	}
	patient.Expect("EHLO patient.example", "250")
	patient.Expect("MAIL FROM:<bob@example.org>", "250")
}

// TestGreetPauseHangUpIsNoPass: a client that hangs up during the pause,
// with a FIN or with an RST, has not waited it out: its next connections
// are paused again (the banner is still withheld half-way through the
// pause), where a client remembered as having passed gets it at once.
// Each probe hangs up in turn, so a hang-up taken for a pass would show at
// the latest at the second probe, well after the memory was written.
func TestGreetPauseHangUpIsNoPass(t *testing.T) {
	const pause = 2 * time.Second
	gw, _ := campus(t, func(s *site) { s.greet = "2s" })
	for _, tc := range []struct {
		name, src string
		hangUp    func(c *harness.Client)
	}{
		{"FIN", "127.0.0.7", func(c *harness.Client) { c.Close() }},
		{"RST", "127.0.0.8", func(c *harness.Client) {
			c.Conn().(*net.TCPConn).SetLinger(0) // close sends RST
			c.Close()
		}},
	} {
		tc.hangUp(harness.DialNoBanner(t, tc.src, gw.SMTP))
		for probe := 1; probe <= 2; probe++ {
			c := harness.DialNoBanner(t, tc.src, gw.SMTP)
			// The banner cannot come before the pause's end unless the
			// client is remembered as having passed.
			if r := c.ReadTimeout(pause / 2); r.Code != 0 {
				t.Errorf("%s: probe %d after a hang-up in the pause got %v before the pause ended, want nothing yet", tc.name, probe, r)
			}
			tc.hangUp(c)
		}
		// A client that does wait is served after the pause.
		patient := harness.DialNoBanner(t, tc.src, gw.SMTP)
		if r := patient.ReadTimeout(pause + 10*time.Second); r.Code != 220 {
			t.Errorf("%s: a patient client got %v, want the banner after the pause", tc.name, r)
		}
		patient.Close()
	}
	for _, src := range []string{"127.0.0.7", "127.0.0.8"} {
		gw.WaitLog("client="+src+" check=greet_pause outcome=left", 5*time.Second)
	}
}

// TestGreetPauseSkipped: trusted networks and exempt networks get the banner
// at once (the pause here is a minute, longer than the test waits).
func TestGreetPauseSkipped(t *testing.T) {
	gw, _ := campus(t, func(s *site) {
		s.greet = "1m"
		s.checks = "greet_pause: {delay: 1m, exempt: [127.0.0.9/32]}"
	})
	for _, src := range []string{"127.0.0.1", "127.0.0.9"} { // trusted, exempt
		c := harness.DialNoBanner(t, src, gw.SMTP)
		if r := c.ReadTimeout(10 * time.Second); r.Code != 220 {
			t.Errorf("client %s: banner %v, want 220 without the pause", src, r)
		}
	}
	held := harness.DialNoBanner(t, outside, gw.SMTP)
	if r := held.ReadTimeout(2 * time.Second); r.Code == 220 {
		t.Error("an outside client got the banner without the pause")
	}
}

// TestGreetPauseInParallel: 1,000 clients pausing at once all get their
// banner after one pause, not one after another (accept is never held up).
func TestGreetPauseInParallel(t *testing.T) {
	const clients = 1000
	gw, _ := campus(t, func(s *site) {
		s.greet = "2s"
		s.limits = "max_connections: 1500\nmax_connections_per_ip: 1500"
	})
	var wg sync.WaitGroup
	start := time.Now()
	var mu sync.Mutex
	var slowest time.Duration
	failures := 0
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := harness.DialNoBanner(t, outside, gw.SMTP)
			r := c.ReadTimeout(60 * time.Second)
			waited := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if r.Code != 220 {
				failures++
			}
			if waited > slowest {
				slowest = waited
			}
			c.Close()
		}()
	}
	wg.Wait()
	if failures > 0 {
		t.Fatalf("%d of %d clients got no banner", failures, clients)
	}
	// Served one after another, the last would wait 2000 s. In parallel all
	// wait one pause plus scheduling; 10 pauses is a bound no serial
	// implementation can meet.
	if slowest > 20*time.Second {
		t.Errorf("the last of %d clients got its banner after %v: pauses are not parallel", clients, slowest)
	}
	t.Logf("%d clients, slowest banner after %v (pause 2s)", clients, slowest)
}

// TestGreetPauseRemembered: two gateways share one redis-server. A client
// that waited out the pause at one gets the banner at once from the other;
// one that talked first at one gets 554 5.5.1 at once from the other,
// without a word; with the store down, every client is paused again
// (fail-safe: delay, never reject).
func TestGreetPauseRemembered(t *testing.T) {
	rs := testredis.Start(t)
	const pause = 2 * time.Second
	start := func() *harness.Gateway {
		gw, _ := campus(t, func(s *site) {
			s.greet = "2s"
			s.extra += glRedisStore(rs.Addr())
		})
		return gw
	}
	gw1, gw2 := start(), start()

	t0 := time.Now()
	c := harness.DialFrom(t, "127.0.0.5", gw1.SMTP)
	if waited := time.Since(t0); waited < pause {
		t.Fatalf("first connection: banner after %v, before the pause", waited)
	}
	c.Expect("QUIT", "221")
	gw1.WaitLog("msg=connected", 5*time.Second)

	// The memory is written in the background: the other gateway may still
	// pause the first connection that races it, never a later one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		t0 = time.Now()
		c2 := harness.DialFrom(t, "127.0.0.5", gw2.SMTP)
		waited := time.Since(t0)
		c2.Expect("QUIT", "221")
		if waited < pause/2 {
			break // remembered at the other gateway
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other gateway still pauses a client that waited (%v)", waited)
		}
	}

	early := harness.DialNoBanner(t, "127.0.0.6", gw1.SMTP)
	early.Send("EHLO impatient.example")
	if r := early.Read(); !strings.HasPrefix(r.String(), "554 5.5.1") {
		t.Fatalf("client talking first: %v", r)
	}
	// The refusal is remembered before the connection is closed.
	if !early.Closed(5 * time.Second) {
		t.Fatal("pregreet client not disconnected")
	}
	for {
		t0 = time.Now()
		again := harness.DialNoBanner(t, "127.0.0.6", gw2.SMTP)
		r := again.ReadTimeout(pause + 3*time.Second)
		again.Close()
		if strings.HasPrefix(r.String(), "554 5.5.1") && time.Since(t0) < pause/2 {
			break // refused at once, without having said anything
		}
		t.Logf("pregreet client at the other gateway: %q after %v", r.String(), time.Since(t0))
		if time.Now().After(deadline) {
			t.Fatalf("the other gateway does not remember the pregreet client: %v after %v", r, time.Since(t0))
		}
	}
	gw2.WaitLog("(remembered)", 5*time.Second)

	// Store down: the remembered client is paused again, not refused.
	rs.Stop()
	t0 = time.Now()
	c3 := harness.DialFrom(t, "127.0.0.5", gw1.SMTP)
	if waited := time.Since(t0); waited < pause {
		t.Errorf("with the store down a client got the banner after %v, before the pause", waited)
	}
	c3.Expect("QUIT", "221")
}
