package harness

import (
	"strings"
	"testing"
	"time"
)

// TestRawNextHopRecordsWireBytes: what a client writes in DATA is recorded
// byte for byte — a bare LF, a bare CR, a "\n.\n" stay content, the
// transparency dot stays — and only CRLF "." CRLF ends the message.
func TestRawNextHopRecordsWireBytes(t *testing.T) {
	h := StartRawNextHop(t)
	c := Dial(t, h.Addr)
	c.Expect("EHLO client.test", "250")
	c.Expect("MAIL FROM:<a@x.test> BODY=8BITMIME", "250 2.1.0")
	c.Expect("DATA", "503 5.5.1")
	c.Expect("RCPT TO:<b@y.test>", "250 2.1.5")
	c.Expect("DATA", "354")
	wire := "Subject: t\r\n\r\nbare\nlf and bare\rcr\n.\nnot the end\r\n..stuffed\r\n\x00.\r\nlast\r\n"
	c.SendRaw(wire + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("end of DATA: %v", r)
	}
	c.SendRaw("NOOP\n") // a bare LF ending a command is recorded too
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("NOOP: %v", r)
	}
	c.Expect("QUIT", "221")
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if string(m.Wire) != wire {
		t.Errorf("wire bytes\n%q\nwant\n%q", m.Wire, wire)
	}
	if want := strings.Replace(wire, "\r\n..stuffed", "\r\n.stuffed", 1); string(m.Unstuffed()) != want {
		t.Errorf("unstuffed\n%q\nwant\n%q", m.Unstuffed(), want)
	}
	if m.From != "a@x.test" || len(m.To) != 1 || m.To[0] != "b@y.test" {
		t.Errorf("envelope %q → %q", m.From, m.To)
	}
	want := []string{"EHLO client.test\r\n", "MAIL FROM:<a@x.test> BODY=8BITMIME\r\n", "DATA\r\n", "RCPT TO:<b@y.test>\r\n", "DATA\r\n", "NOOP\n", "QUIT\r\n"}
	if got := h.Lines(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("command lines\n%q\nwant\n%q", got, want)
	}
}

// TestRawNextHopReplies: the Reply hook answers a command instead of the
// default, DataReply the end of DATA (a refused message is not recorded),
// and a 421 closes the connection.
func TestRawNextHopReplies(t *testing.T) {
	h := StartRawNextHop(t, func(h *RawNextHop) {
		h.Reply = func(line string) string {
			switch {
			case strings.HasPrefix(line, "MAIL FROM:<deferred@"):
				return "451 4.3.0 try later"
			case strings.HasPrefix(line, "VRFY"):
				return "421 4.3.2 going away"
			}
			return ""
		}
		h.DataReply = func(wire []byte) string {
			if strings.Contains(string(wire), "refuse me") {
				return "554 5.6.0 no"
			}
			return ""
		}
	})
	c := Dial(t, h.Addr)
	c.Expect("EHLO client.test", "250")
	c.Expect("MAIL FROM:<deferred@x.test>", "451 4.3.0")
	c.Expect("MAIL FROM:<a@x.test>", "250")
	c.Expect("RCPT TO:<b@y.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("refuse me\r\n.\r\n")
	if r := c.Read(); !strings.HasPrefix(r.String(), "554 5.6.0") {
		t.Fatalf("end of DATA: %v, want 554 5.6.0", r)
	}
	c.Expect("VRFY x", "421 4.3.2")
	if !c.Closed(5 * time.Second) {
		t.Error("connection open after 421")
	}
	if n := len(h.Messages()); n != 0 {
		t.Errorf("%d messages recorded, want 0", n)
	}
}
