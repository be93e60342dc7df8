package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// The next hops of these tests are internal/harness's: a RawNextHop, which
// answers by script and records every byte it received, or a HoldHop, which
// accepts TCP and never says anything.

// startHop starts a RawNextHop as these tests want it unless configure says
// otherwise: it offers no EHLO keyword (a test names those it needs), and
// after a refusing banner or a 421 it lingers, recording what the relay
// still sends, so that a test sees the relay gave up.
func startHop(t *testing.T, configure ...func(*harness.RawNextHop)) *harness.RawNextHop {
	t.Helper()
	base := func(h *harness.RawNextHop) { h.Extensions, h.Linger = []string{}, true }
	return harness.StartRawNextHop(t, append([]func(*harness.RawNextHop){base}, configure...)...)
}

// greeting sets a next hop's banner.
func greeting(banner string) func(*harness.RawNextHop) {
	return func(h *harness.RawNextHop) { h.Greeting = banner }
}

// offering sets the EHLO keywords a next hop announces ("SIZE 1000").
func offering(keywords ...string) func(*harness.RawNextHop) {
	return func(h *harness.RawNextHop) { h.Extensions = keywords }
}

// replyAt makes a next hop answer reply to the command verb ("." is the
// data's final dot): a reply, harness.Silence or harness.HangUp.
func replyAt(verb, reply string) func(*harness.RawNextHop) {
	return func(h *harness.RawNextHop) {
		if verb == "." {
			h.DataReply = func([]byte) string { return reply }
			return
		}
		h.Reply = func(line string) string {
			if verbOf(line) == verb {
				return reply
			}
			return ""
		}
	}
}

func verbOf(line string) string {
	line = strings.TrimRight(line, "\r\n")
	if i := strings.IndexAny(line, " :"); i >= 0 {
		line = line[:i]
	}
	return strings.ToUpper(line)
}

// smtpHop is the NextHop smtp://addr.
func smtpHop(t *testing.T, addr string) NextHop {
	t.Helper()
	return mustHop(t, "smtp://"+addr)
}

// waitAt blocks until the next hop received the command verb ("." is the
// data's final dot).
func waitAt(t *testing.T, h *harness.RawNextHop, verb string) {
	t.Helper()
	got := false
	if verb == "." {
		got = h.WaitData(1, 10*time.Second)
	} else {
		got = h.WaitLine(verb, 10*time.Second)
	}
	if !got {
		t.Fatalf("next hop %s never received %s; transcripts %q", h.Addr, verb, h.Transcripts())
	}
}

// transcript waits until the first connection to the next hop is over and
// returns every byte it received.
func transcript(t *testing.T, h *harness.RawNextHop) string {
	t.Helper()
	if !h.WaitEnded(1, 10*time.Second) {
		t.Fatalf("no connection to %s ended; transcripts %q", h.Addr, h.Transcripts())
	}
	return h.Transcripts()[0]
}

func mustHop(t *testing.T, s string) NextHop {
	t.Helper()
	h, err := ParseNextHop(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testTimeouts are short enough for tests, long enough for -race on busy
// cores.
var testTimeouts = Timeouts{Connect: 5 * time.Second, Command: 5 * time.Second, Data: 5 * time.Second, CallAhead: 20 * time.Second}

// newRouter is a router with one catch-all route through hops.
func newRouter(hops ...NextHop) *Router {
	return &Router{
		Routes:   Routes{{Domains: mailaddr.NewDomainSet([]string{"*"}), NextHops: hops}},
		Timeouts: testTimeouts,
		Hostname: "gw.campus.test",
	}
}

var (
	sender    = mailaddr.Address{Local: "alice", Domain: "sender.test"}
	recipient = mailaddr.Address{Local: "bob", Domain: "campus.test"}
)

// replyOf is the reply a client would get for err.
func replyOf(t *testing.T, err error) *policy.Reply {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	return policy.FromError(err)
}

func wantReply(t *testing.T, err error, code int, enhanced [3]int) {
	t.Helper()
	r := replyOf(t, err)
	if r.Code != code || r.Enhanced != enhanced {
		t.Fatalf("reply %v, want %d %d.%d.%d (error: %v)", r, code, enhanced[0], enhanced[1], enhanced[2], err)
	}
}

// beginRcpt opens a transaction through r and passes recipient on, failing
// the test if either fails.
func beginRcpt(t *testing.T, r *Router, env Envelope) Transaction {
	t.Helper()
	tx, err := begin(t, r, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(context.Background(), recipient, RcptDSN{}); err != nil {
		t.Fatal(err)
	}
	return tx
}

func begin(t *testing.T, r *Router, env Envelope) (Transaction, error) {
	t.Helper()
	tx, err := r.Begin(context.Background(), 0, "campus.test", env)
	if err == nil {
		t.Cleanup(tx.Abort)
	}
	return tx, err
}

const testMessage = "From: alice@sender.test\r\nTo: bob@campus.test\r\nSubject: hi\r\n\r\nHello.\r\n"
