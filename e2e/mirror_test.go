package e2e

import (
	"bytes"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// Mirror routes (routes[].mode: all; docs/outbound.md, "Mirror routes"):
// campus.test goes to two mailbox servers that each keep a copy. The client
// hears 250 only when both said 250 to the same bytes; a refusal by either
// is the client's refusal, by the rule of relay/mirror.go.

// mirrorRoute is a route line sending campus.test to every one of hops.
func mirrorRoute(hops ...string) string {
	return fmt.Sprintf("{domains: [campus.test, .campus.test], mode: all, next_hops: [%s]}", quoteList(hops))
}

// mirrorGateway starts a gateway with campus.test mirrored to hops and
// other.test (local too) routed, in failover, to other.
func mirrorGateway(t *testing.T, other string, hops ...string) *harness.Gateway {
	t.Helper()
	s := site{
		local:  []string{"campus.test", ".campus.test", "other.test"},
		routes: []string{mirrorRoute(hops...), routeTo([]string{"other.test"}, other)},
	}
	return harness.Start(t, s.yaml(t))
}

// refuse is a next hop's reply with an enhanced code.
func refuse(code int, enhanced gosmtp.EnhancedCode, text string) error {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: text}
}

// send sends one message from the outside client to rcpt and returns the
// reply to the data (or to the first command refused).
func sendOne(t *testing.T, gw *harness.Gateway, rcpt, msg string) harness.Reply {
	t.Helper()
	c := harness.DialFrom(t, outside, gw.SMTP)
	defer c.Close()
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	if r := c.Cmd("RCPT TO:<" + rcpt + ">"); r.Code != 250 {
		return r
	}
	c.Expect("DATA", "354")
	c.SendRaw(msg + ".\r\n")
	return c.Read()
}

// TestMirrorBothAccept: both next hops accept; the client gets 250 and the
// two have byte for byte the same message (raw next hops: the bytes as they
// crossed the wire), with one Received field of ours.
func TestMirrorBothAccept(t *testing.T) {
	h1, h2 := harness.StartRawNextHop(t), harness.StartRawNextHop(t)
	gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+h2.Addr)
	if err := smtp.SendMail(gw.SMTP, nil, "bob@example.org", []string{"alice@campus.test"}, []byte(sampleMessage)); err != nil {
		t.Fatalf("client: %v", err)
	}
	m1, m2 := h1.Messages(), h2.Messages()
	if len(m1) != 1 || len(m2) != 1 {
		t.Fatalf("next hops hold %d and %d messages, want 1 each", len(m1), len(m2))
	}
	if !bytes.Equal(m1[0].Wire, m2[0].Wire) {
		t.Errorf("the mirrors got different bytes:\n%q\n%q", m1[0].Wire, m2[0].Wire)
	}
	got := string(m1[0].Unstuffed())
	if !strings.HasSuffix(got, sampleMessage) || strings.Count(got, "by mx.campus.test (sekisho)") != 1 {
		t.Errorf("message is not ours with one Received field:\n%s", got)
	}
	t.Logf("both next hops got the same %d bytes", len(m1[0].Wire))
}

// TestMirrorRcptRefused550: one next hop refuses a recipient with 550: the
// client gets 550, and no next hop ever delivers to that recipient — not
// even the one that accepted it (it is reset): the next recipient, accepted
// by both, is the only one either delivers to.
func TestMirrorRcptRefused550(t *testing.T) {
	h1, h2 := harness.StartNextHop(t, false), harness.StartNextHop(t, false)
	h2.OnRcpt = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return refuse(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}
	gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+h2.Addr)
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<nobody@campus.test>", "550 5.1.1")
	c.Expect("DATA", "503 5.5.1") // no recipient: neither got any data
	if n1, n2 := len(h1.Messages()), len(h2.Messages()); n1+n2 != 0 {
		t.Fatalf("after a refused recipient the next hops hold %d and %d messages", n1, n2)
	}
	// The same transaction goes on (RFC 5321 §4.1.1.4: a 503 to DATA
	// leaves it open).
	c.Expect("RCPT TO:<nobody@campus.test>", "550 5.1.1")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(sampleMessage + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("data: %v\n%s", r, c.Transcript())
	}
	for i, h := range []*harness.NextHop{h1, h2} {
		m := h.Messages()
		if len(m) != 1 || len(m[0].To) != 1 || m[0].To[0] != "alice@campus.test" {
			t.Errorf("next hop %d delivered %d messages (%+v), want one to alice@campus.test only", i+1, len(m), m)
		}
	}
}

// TestMirrorRcptDeferred: one next hop defers the recipient (450) or is
// down: the client gets a 4xx — the next hop's own 450, or 451 4.4.1 —
// never a 5xx, and nothing is delivered.
func TestMirrorRcptDeferred(t *testing.T) {
	t.Run("450", func(t *testing.T) {
		h1, h2 := harness.StartNextHop(t, false), harness.StartNextHop(t, false)
		h1.OnRcpt = func(string) error { return refuse(450, gosmtp.EnhancedCode{4, 2, 1}, "mailbox busy") }
		gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+h2.Addr)
		if r := sendOne(t, gw, "alice@campus.test", sampleMessage); !strings.HasPrefix(r.String(), "450 4.2.1") {
			t.Errorf("RCPT with one next hop deferring: %v, want 450 4.2.1", r)
		}
		if n1, n2 := len(h1.Messages()), len(h2.Messages()); n1+n2 != 0 {
			t.Errorf("next hops hold %d and %d messages, want none", n1, n2)
		}
	})
	t.Run("down", func(t *testing.T) {
		h1 := harness.StartNextHop(t, false)
		gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+testenv.FreePort(t))
		if r := sendOne(t, gw, "alice@campus.test", sampleMessage); !strings.HasPrefix(r.String(), "451 4.4.1") {
			t.Errorf("RCPT with one next hop down: %v, want 451 4.4.1", r)
		}
		if n := len(h1.Messages()); n != 0 {
			t.Errorf("the next hop that is up holds %d messages, want none", n)
		}
	})
}

// TestMirrorDataRefused: one next hop refuses the data after the other
// said 250 to it.
//
// A temporary refusal (451) reaches the client as 451 — the other next hop
// already has the message, but a 5xx would bounce a message the refusing
// next hop may take in a minute — and the client retries: then both have
// it, the first one twice. That duplicate is the documented price of a
// mirror without a queue (docs/outbound.md): the second copy has the same
// Message-ID.
//
// A permanent refusal (554) reaches the client as 554: a 4xx would make it
// retry for days, a copy more on the accepting next hop each time.
func TestMirrorDataRefused(t *testing.T) {
	t.Run("451 then retry", func(t *testing.T) {
		h1, h2 := harness.StartNextHop(t, false), harness.StartNextHop(t, false)
		var tries atomic.Int32
		h2.OnData = func(harness.Message) error {
			if tries.Add(1) == 1 {
				return refuse(451, gosmtp.EnhancedCode{4, 3, 0}, "try later")
			}
			return nil
		}
		gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+h2.Addr)
		if r := sendOne(t, gw, "alice@campus.test", sampleMessage); !strings.HasPrefix(r.String(), "451 4.3.0") {
			t.Fatalf("data refused 451 by one next hop: %v, want 451 4.3.0", r)
		}
		if n1, n2 := len(h1.Messages()), len(h2.Messages()); n1 != 1 || n2 != 0 {
			t.Fatalf("after the 451: %d and %d messages, want 1 (it said 250) and 0", n1, n2)
		}
		// The client's retry.
		if r := sendOne(t, gw, "alice@campus.test", sampleMessage); r.Code != 250 {
			t.Fatalf("retry: %v, want 250", r)
		}
		m1, m2 := h1.Messages(), h2.Messages()
		if len(m1) != 2 || len(m2) != 1 {
			t.Fatalf("after the retry: %d and %d messages, want 2 (the duplicate) and 1", len(m1), len(m2))
		}
		for _, m := range []harness.Message{m1[0], m1[1], m2[0]} {
			if !bytes.Contains(m.Data, []byte("Message-ID: <1@example.org>")) {
				t.Errorf("a copy lacks the Message-ID a mailbox server would dedupe by:\n%s", m.Data)
			}
		}
	})
	t.Run("554", func(t *testing.T) {
		h1, h2 := harness.StartNextHop(t, false), harness.StartNextHop(t, false)
		h1.OnData = func(harness.Message) error { return refuse(554, gosmtp.EnhancedCode{5, 7, 1}, "content refused") }
		gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+h2.Addr)
		if r := sendOne(t, gw, "alice@campus.test", sampleMessage); !strings.HasPrefix(r.String(), "554 5.7.1") {
			t.Fatalf("data refused 554 by one next hop: %v, want 554 5.7.1", r)
		}
		if n1, n2 := len(h1.Messages()), len(h2.Messages()); n1 != 0 || n2 != 1 {
			t.Errorf("%d and %d messages, want 0 and 1 (it said 250 before the other's 554)", n1, n2)
		}
	})
}

// TestMirrorOtherRouteAsToday: a recipient of another route in the same SMTP
// transaction gets 452 4.5.3 as with any route, the mirrored one is
// delivered to both mirrors, and the other goes in its own transaction to
// its failover route's first working next hop.
func TestMirrorOtherRouteAsToday(t *testing.T) {
	h1, h2, other := harness.StartNextHop(t, false), harness.StartNextHop(t, false), harness.StartNextHop(t, false)
	gw := mirrorGateway(t, "smtp://"+other.Addr, "smtp://"+h1.Addr, "smtp://"+h2.Addr)
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<dave@other.test>", "452 4.5.3")
	c.Expect("DATA", "354")
	c.SendRaw(sampleMessage + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("data: %v", r)
	}
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<dave@other.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(sampleMessage + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("data to the other route: %v", r)
	}
	if n1, n2, n3 := len(h1.Messages()), len(h2.Messages()), len(other.Messages()); n1 != 1 || n2 != 1 || n3 != 1 {
		t.Errorf("mirrors %d and %d, other route %d messages; want 1 each", n1, n2, n3)
	}
}

// TestMirrorExplain: `sekisho explain` drives the same engine: the
// call-ahead goes to both mirrors for real (each sees the recipient), a
// refusal by one is what explain says the client would be told, and no
// message is sent.
func TestMirrorExplain(t *testing.T) {
	h1, h2 := harness.StartNextHop(t, false), harness.StartNextHop(t, false)
	var rcpts1, rcpts2 atomic.Int32
	h1.OnRcpt = func(string) error { rcpts1.Add(1); return nil }
	h2.OnRcpt = func(to string) error {
		rcpts2.Add(1)
		if strings.HasPrefix(to, "nobody@") {
			return refuse(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}
	gw := mirrorGateway(t, "smtp://"+testenv.FreePort(t), "smtp://"+h1.Addr, "smtp://"+h2.Addr)
	explain := func(rcpt string) string {
		t.Helper()
		out, _ := explainCLI(t, gw.Dir, "-config", filepath.Join(gw.Dir, "sekisho.yaml"),
			"-ip", outside, "-from", "bob@example.org", "-rcpt", rcpt)
		return out
	}
	mustContain(t, explain("alice@campus.test"), tell("RCPT TO:<alice@campus.test>", "250"))
	mustContain(t, explain("nobody@campus.test"), tell("RCPT TO:<nobody@campus.test>", "550 5.1.1"))
	if rcpts1.Load() != 2 || rcpts2.Load() != 2 {
		t.Errorf("the mirrors saw %d and %d RCPTs, want 2 each (explain calls ahead to both)", rcpts1.Load(), rcpts2.Load())
	}
	if n1, n2 := len(h1.Messages()), len(h2.Messages()); n1+n2 != 0 {
		t.Errorf("explain sent %d and %d messages", n1, n2)
	}
}

// TestMirrorCheckConfig: check-config refuses a mirror with an mx next hop,
// naming the file and the line of its mode.
func TestMirrorCheckConfig(t *testing.T) {
	s := site{routes: []string{"{domains: [campus.test, .campus.test], next_hops: [mx, \"smtp://127.0.0.1:25\"],\n    mode: all}"}}
	text := s.yaml(t)
	line := strings.Count(text[:strings.Index(text, "mode: all")], "\n") + 1
	path := filepath.Join(t.TempDir(), "sekisho.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
	want := fmt.Sprintf("sekisho.yaml:%d: route 1 has mode all and an mx next hop", line)
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("check-config: %v\n%s\nwant %q", err, out, want)
	}
}
