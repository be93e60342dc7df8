package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
)

// The call-ahead (DESIGN.md §3, "Then the relay itself"): at the first RCPT
// of a route sekisho contacts the route's next hops in order; one that does
// not work is skipped, and when none works the client hears 451 4.4.1 so
// that its MTA tries our next MX. These tests drive the built binary against
// next hops that misbehave at each step.

// holdingSite is the campus gateway with campus.test routed to the given
// next hops and the next_hop: settings given.
func holdingSite(t *testing.T, nextHop string, hops ...string) *harness.Gateway {
	t.Helper()
	s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, hops...)}}
	s.extra = "next_hop: " + nextHop + "\n"
	return harness.Start(t, s.yaml(t))
}

// TestCallAheadBudget: both next hops accept TCP and never say a word. The
// call-ahead has one budget for the whole route (next_hop.call_ahead_timeout,
// 3 s here): the client hears 451 4.4.1 once it is spent — after at least
// half of it (the gateway did wait for the next hops) and before budget + 5 s
// — and not after the next hop connect timeout (30 s by default) or any
// command timeout.
func TestCallAheadBudget(t *testing.T) {
	const budget = 3 * time.Second
	hop1 := harness.StartHoldHop(t, "", false)
	hop2 := harness.StartHoldHop(t, "", false)
	gw := holdingSite(t, fmt.Sprintf("{call_ahead_timeout: %s}", budget), "smtp://"+hop1.Addr, "smtp://"+hop2.Addr)

	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	start := time.Now()
	r := c.Cmd("RCPT TO:<alice@campus.test>")
	took := time.Since(start)
	if !strings.HasPrefix(r.String(), "451 4.4.1") {
		t.Fatalf("RCPT with silent next hops: got %q, want 451 4.4.1\n%s", r, c.Transcript())
	}
	t.Logf("451 4.4.1 after %v (budget %v): %q; hop1 accepted %d, hop2 accepted %d",
		took.Round(time.Millisecond), budget, r, len(hop1.Accepted()), len(hop2.Accepted()))
	if took < budget/2 {
		t.Errorf("451 after %v: the gateway did not wait for the next hops (budget %v)", took, budget)
	}
	if took > budget+5*time.Second {
		t.Errorf("451 after %v: the call-ahead budget of %v was not kept", took, budget)
	}
	if len(hop1.Accepted()) != 1 {
		t.Errorf("first next hop accepted %d connections, want 1", len(hop1.Accepted()))
	}
	// The gateway gave up on the silent next hop: its connection is closed.
	if !hop1.WaitClosed(1, 5*time.Second) {
		t.Errorf("the gateway kept its connection to the silent next hop open after answering 451")
	}
	c.Expect("DATA", "503 5.5.1") // no recipient was accepted
	c.Expect("QUIT", "221")
}

// TestClientHangupCancelsCallAhead: with next hops that never answer and
// a 60 s budget (and a 60 s connect timeout, so that nothing else ends the
// wait), the client sends RCPT and hangs up while the gateway waits for the
// first next hop's greeting. The gateway abandons the call-ahead at once:
// the silent next hop sees its connection closed within a few seconds, and
// the second next hop is never tried on behalf of a client who left.
func TestClientHangupCancelsCallAhead(t *testing.T) {
	hop1 := harness.StartHoldHop(t, "", false)
	hop2 := harness.StartHoldHop(t, "", false)
	gw := holdingSite(t, "{call_ahead_timeout: 60s, connect_timeout: 60s}", "smtp://"+hop1.Addr, "smtp://"+hop2.Addr)

	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Send("RCPT TO:<alice@campus.test>")
	if !hop1.WaitAccepted(1, 15*time.Second) {
		t.Fatalf("the call-ahead never reached the first next hop\n%s", c.Transcript())
	}
	c.Close()
	hungUp := time.Now()
	if !hop1.WaitClosed(1, 10*time.Second) {
		t.Fatalf("the gateway kept the call-ahead to the silent next hop open for 10 s after the client hung up (budget 60 s)")
	}
	took := hop1.Closed()[0].Sub(hungUp)
	t.Logf("call-ahead abandoned %v after the client hung up", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("call-ahead abandoned %v after the hang-up, want within a few seconds", took)
	}
	if n := len(hop2.Accepted()); n != 0 {
		t.Errorf("the second next hop got %d connections after the client had hung up, want 0", n)
	}
}

// TestNextHopGreeting554: the first next hop works at the TCP level but not
// at SMTP: it greets 554 (RFC 5321 §3.1: "no SMTP service here"), or refuses
// EHLO and HELO with 5xx, or closes after its greeting. Each time the
// call-ahead skips it and the message is delivered by the second next hop
// with 250: a 5xx of a next hop before MAIL is not the recipient's 5xx.
func TestNextHopGreeting554(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T) (addr string, sessions func() int)
	}{
		{"greeting 554", func(t *testing.T) (string, func() int) {
			h := harness.StartRawNextHop(t, func(h *harness.RawNextHop) { h.Greeting = "554 5.3.2 maintenance" })
			return h.Addr, h.Sessions
		}},
		{"EHLO and HELO refused 5xx", func(t *testing.T) (string, func() int) {
			h := harness.StartRawNextHop(t, func(h *harness.RawNextHop) {
				h.Reply = func(line string) string {
					// Both: a client may fall back to HELO after a refused
					// EHLO, and a next hop that takes HELO would be working.
					if v := strings.ToUpper(line); strings.HasPrefix(v, "EHLO") || strings.HasPrefix(v, "HELO") {
						return "554 5.3.2 maintenance"
					}
					return ""
				}
			})
			return h.Addr, h.Sessions
		}},
		{"closes after greeting", func(t *testing.T) (string, func() int) {
			h := harness.StartHoldHop(t, "220 closing.test ESMTP", true)
			return h.Addr, func() int { return len(h.Accepted()) }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad, sessions := tc.start(t)
			good := harness.StartNextHop(t, false)
			gw := harness.Start(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+bad, "smtp://"+good.Addr)}}.yaml(t))
			c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT 250, DATA 354
			c.SendRaw(hdr("via the second next hop") + "body\r\n.\r\n")
			if r := c.Read(); !strings.HasPrefix(r.String(), "250 2.0.0") {
				t.Fatalf("DATA: got %q, want 250 2.0.0\n%s", r, c.Transcript())
			}
			if n := sessions(); n < 1 {
				t.Errorf("the first next hop was never tried (%d connections)", n)
			}
			msgs := good.Messages()
			if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "alice@campus.test" {
				t.Fatalf("second next hop holds %+v, want the one message to alice", msgs)
			}
		})
	}
}

// TestNextHopWithoutSMTPUTF8: the only next hop of the outbound route does
// not offer SMTPUTF8 (RFC 6531). A trusted client's non-ASCII sender cannot
// be carried by any next hop: a certain 5xx with 5.6.7 at RCPT (RFC 6531
// §3.5: 553 5.6.7, or 550), never a 4xx that would have the client retry
// for days. An ASCII transaction that merely declares SMTPUTF8 is relayed,
// and MAIL at the next hop goes without the parameter it does not offer.
func TestNextHopWithoutSMTPUTF8(t *testing.T) {
	raw := harness.StartRawNextHop(t, func(h *harness.RawNextHop) { h.Extensions = []string{"8BITMIME", "ENHANCEDSTATUSCODES"} })
	gw, _ := campus(t, func(s *site) {
		s.routes = append(s.routes, routeTo([]string{"*"}, "smtp://"+raw.Addr))
	})
	c := harness.Dial(t, gw.SMTP) // 127.0.0.1: trusted, may relay out
	c.Expect("EHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<ålice@campus.test> SMTPUTF8", "250")
	r := c.Cmd("RCPT TO:<friend@example.com>")
	if !strings.HasPrefix(r.String(), "553 5.6.7") && !strings.HasPrefix(r.String(), "550 5.6.7") {
		t.Errorf("non-ASCII sender towards a next hop without SMTPUTF8: got %q, want 553 5.6.7 or 550 5.6.7", r)
	}
	c.Expect("RSET", "250")

	c.Expect("MAIL FROM:<alice@campus.test> SMTPUTF8", "250")
	c.Expect("RCPT TO:<friend@example.com>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(sampleMessage + ".\r\n")
	if r := c.Read(); !strings.HasPrefix(r.String(), "250 2.0.0") {
		t.Fatalf("ASCII message with SMTPUTF8 declared: got %q, want 250 2.0.0\n%s", r, c.Transcript())
	}
	msgs := raw.Messages()
	if len(msgs) != 1 || msgs[0].From != "alice@campus.test" {
		t.Fatalf("next hop holds %+v, want one message from alice", msgs)
	}
	var mails []string
	for _, l := range raw.Lines() {
		if strings.HasPrefix(strings.ToUpper(l), "MAIL FROM:") {
			mails = append(mails, l)
		}
	}
	if len(mails) == 0 {
		t.Fatalf("the next hop saw no MAIL command: %q", raw.Lines())
	}
	for _, l := range mails {
		if strings.Contains(strings.ToUpper(l), "SMTPUTF8") {
			t.Errorf("MAIL to a next hop without SMTPUTF8 carried the parameter: %q", l)
		}
	}
	last := mails[len(mails)-1]
	if !strings.HasPrefix(last, "MAIL FROM:<alice@campus.test>") {
		t.Errorf("the relayed MAIL line is %q", last)
	}
}
