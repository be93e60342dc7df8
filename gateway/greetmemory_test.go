package gateway

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/greylist"
	"sekisho/internal/testenv"
)

// TestGreetMemoryTTLs: each verdict of the greet pause is kept for its own
// time to live, on the real embedded store with a clock the test moves: a
// client that waited out the pause gets the banner at once for pass_ttl (3 h
// here), one that talked first gets 554 5.5.1 at once for fail_ttl (1 h),
// and each is paused again after its time. Swapping the two TTLs fails on
// both sides.
func TestGreetMemoryTTLs(t *testing.T) {
	clock := testenv.NewClock()
	store, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	const passTTL, failTTL = 3 * time.Hour, time.Hour
	cfg := testGatewayConfig(t)
	// The pause is long enough that a client writing at once is always
	// caught in it, short enough to be waited out once.
	cfg.GreetPause = time.Second
	cfg.GreetMemory, cfg.GreetPassTTL, cfg.GreetFailTTL = store, passTTL, failTTL
	addr := serveTestGateway(t, cfg, nil)

	dial := func(src string) (net.Conn, *bufio.Reader) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c, bufio.NewReader(c)
	}
	line := func(r *bufio.Reader) string {
		t.Helper()
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a reply: %v (%q)", err, l)
		}
		return l
	}
	const passer, talker = "127.0.0.5", "127.0.0.6"

	// The passer waits out the pause; its pass is written in the
	// background: wait until the store has it.
	c, r := dial(passer)
	if l := line(r); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("patient client: %q", l)
	}
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if v, ok, _ := store.GetValue(context.Background(), "greet:"+passer); ok && string(v) == greetPassed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pass was never remembered")
		}
	}
	// The talker writes first: refused, remembered before the refusal.
	c, r = dial(talker)
	c.Write([]byte("EHLO impatient.example\r\n"))
	if l := line(r); !strings.HasPrefix(l, "554 5.5.1") {
		t.Fatalf("client talking first: %q", l)
	}
	c.Close()

	// passRemembered: a client that writes at once is let through only
	// when it is remembered as having passed (else it is caught talking
	// first, which is then remembered: the probe's last use).
	passRemembered := func() bool {
		t.Helper()
		c, r := dial(passer)
		defer c.Close()
		c.Write([]byte("EHLO patient.example\r\n"))
		first := line(r)
		if strings.HasPrefix(first, "554 5.5.1") {
			return false
		}
		for l := line(r); !strings.HasPrefix(l, "250 "); l = line(r) {
		}
		return strings.HasPrefix(first, "220 ")
	}
	// failRemembered: a silent client hears 554 at once only when it is
	// remembered as having talked first (else it gets the banner after the
	// pause, and has then passed).
	failRemembered := func() bool {
		t.Helper()
		c, r := dial(talker)
		defer c.Close()
		return strings.HasPrefix(line(r), "554 5.5.1")
	}

	clock.Advance(failTTL - time.Minute)
	if !failRemembered() {
		t.Errorf("a client that talked first is forgotten before fail_ttl (%v)", failTTL)
	}
	if !passRemembered() {
		t.Errorf("a client that waited is forgotten before fail_ttl (%v), its pass_ttl is %v", failTTL, passTTL)
	}
	clock.Advance(2 * time.Minute) // fail_ttl + 1m
	if failRemembered() {
		t.Errorf("a client that talked first is still refused after fail_ttl (%v)", failTTL)
	}
	clock.Advance(passTTL - failTTL - 2*time.Minute) // pass_ttl - 1m
	if !passRemembered() {
		t.Errorf("a client that waited is forgotten before pass_ttl (%v)", passTTL)
	}
	clock.Advance(2 * time.Minute) // pass_ttl + 1m
	if passRemembered() {
		t.Errorf("a client that waited still skips the pause after pass_ttl (%v)", passTTL)
	}
}
