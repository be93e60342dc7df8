package e2e

// Abandoned next-hop transactions end politely (issue 16): the client
// leaves, a recipient or the message is refused, RSET, EHLO again, the
// session ends. Before, the next hop's connection was closed after RCPT
// without a word, and Postfix logged "lost connection after RCPT" for
// each. Now the next hop hears QUIT (connections not kept) or RSET (kept
// for the next message). The raw next hop records every command of every
// connection.

import (
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
)

// abandonGateway relays campus.test (trusted client 127.0.0.1) to a raw
// next hop that refuses RCPT for nobody@campus.test, with the header check
// on and the next_hop settings given.
func abandonGateway(t *testing.T, nextHop string) (*harness.Gateway, *harness.RawNextHop) {
	t.Helper()
	hop := harness.StartRawNextHop(t, func(h *harness.RawNextHop) {
		h.Reply = func(line string) string {
			if strings.HasPrefix(line, "RCPT TO:<nobody@") {
				return "550 5.1.1 no such user"
			}
			return ""
		}
	})
	s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		checks: "header: {}", extra: "next_hop: " + nextHop + "\n"}
	return harness.Start(t, s.yaml(t)), hop
}

// TestAbandonedNextHopTransactionQuits: with connections not kept, every
// way a transaction is abandoned ends its next-hop connection with QUIT
// right after the last command it had, and the next hop never saw DATA.
func TestAbandonedNextHopTransactionQuits(t *testing.T) {
	gw, hop := abandonGateway(t, "{connection_cache_time: 0s}")
	begin := func(t *testing.T, rcpt, want string) *harness.Client {
		c := harness.Dial(t, gw.SMTP)
		c.Expect("EHLO server.campus.test", "250")
		c.Expect("MAIL FROM:<server@campus.test>", "250")
		c.Expect("RCPT TO:<"+rcpt+">", want)
		return c
	}
	paths := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"the client hangs up after RCPT", func(t *testing.T) {
			begin(t, "alice@campus.test", "250").Close()
		}},
		{"the session ends with QUIT", func(t *testing.T) {
			begin(t, "alice@campus.test", "250").Expect("QUIT", "221")
		}},
		{"RSET", func(t *testing.T) {
			c := begin(t, "alice@campus.test", "250")
			c.Expect("RSET", "250")
			c.Close()
		}},
		{"EHLO again", func(t *testing.T) {
			c := begin(t, "alice@campus.test", "250")
			c.Expect("EHLO server.campus.test", "250")
			c.Close()
		}},
		{"the only recipient refused by the next hop", func(t *testing.T) {
			c := begin(t, "nobody@campus.test", "550 5.1.1")
			c.Expect("DATA", "503")
			c.Close()
		}},
		{"the message refused by the header check", func(t *testing.T) {
			c := begin(t, "alice@campus.test", "250")
			c.Expect("DATA", "354")
			c.SendRaw("From: Bob <bob@example.org>\r\nSubject: no Date\r\n\r\nbody\r\n.\r\n")
			if r := c.Read(); r.Code != 550 {
				t.Fatalf("a message without Date: %v", r)
			}
			c.Close()
		}},
		{"the client hangs up in the header", func(t *testing.T) {
			c := begin(t, "alice@campus.test", "250")
			c.Expect("DATA", "354")
			c.SendRaw("From: Bob <bob@example.org>\r\nSubj")
			c.Close()
		}},
	}
	for i, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			p.run(t)
			if !hop.WaitEnded(i+1, 10*time.Second) {
				t.Fatalf("the next-hop connection was not ended; transcripts %q", hop.Transcripts())
			}
			got := hop.Transcripts()[i]
			if !strings.Contains(got, "RCPT TO:") || !strings.HasSuffix(got, ">\r\nQUIT\r\n") || strings.Contains(got, "DATA") {
				t.Errorf("next-hop transcript %q: want QUIT right after the RCPT, and no DATA", got)
			}
		})
	}
	if n := len(hop.Messages()); n != 0 {
		t.Errorf("the next hop has %d messages, want none", n)
	}
}

// TestAbandonedNextHopTransactionResets: with connections kept (the
// default), an abandoned transaction gets RSET and its connection carries
// the next message, which alone is delivered.
func TestAbandonedNextHopTransactionResets(t *testing.T) {
	gw, hop := abandonGateway(t, "{connection_cache_time: 1m}")
	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO server.campus.test", "250")
	c.Expect("MAIL FROM:<server@campus.test>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RSET", "250")
	c.Close()
	// The connection goes back to the cache once the next hop's 250 to
	// RSET is read, which the DEBUG line says; a transaction begun before
	// would dial a new one.
	gw.WaitLog("abandoned next hop transaction: RSET", 10*time.Second)
	if !strings.Contains(gw.Log(), "connection_kept=true") {
		t.Fatalf("the reset connection was not kept:\n%s", gw.Log())
	}
	d := harness.Dial(t, gw.SMTP)
	d.Expect("EHLO server.campus.test", "250")
	d.Expect("MAIL FROM:<server@campus.test>", "250")
	d.Expect("RCPT TO:<carol@campus.test>", "250")
	d.Expect("DATA", "354")
	d.SendRaw(hdr("after the reset") + "body\r\n.\r\n")
	if r := d.Read(); r.Code != 250 {
		t.Fatalf("data: %v", r)
	}
	d.Expect("QUIT", "221")
	msgs := hop.Messages()
	if len(msgs) != 1 || strings.Join(msgs[0].To, " ") != "carol@campus.test" {
		t.Fatalf("next hop messages %+v, want one, to carol only", msgs)
	}
	got := hop.Transcripts()[0]
	if !strings.Contains(got, "RCPT TO:<alice@campus.test>\r\nRSET\r\n") {
		t.Errorf("first next-hop connection %q: want RSET right after the abandoned RCPT", got)
	}
	if hop.Sessions() != 1 {
		t.Errorf("%d next-hop connections, want 1: the reset one carries the next message", hop.Sessions())
	}
}
