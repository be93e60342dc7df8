package harness

import (
	"bufio"
	"io"
	"net"
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

// TestRawNextHopMisbehaves: Silence holds the connection answering nothing,
// HangUp closes it without a reply, Linger keeps it after a 421 (and after a
// refusing banner), and every byte received is in the connection's
// transcript, which the Wait methods let a test read at the right time.
func TestRawNextHopMisbehaves(t *testing.T) {
	h := StartRawNextHop(t, func(h *RawNextHop) {
		h.Linger = true
		h.Reply = func(line string) string {
			switch {
			case strings.HasPrefix(line, "VRFY silent"):
				return Silence
			case strings.HasPrefix(line, "VRFY hang"):
				return HangUp
			case strings.HasPrefix(line, "VRFY 421"):
				return "421 4.3.2 going away"
			}
			return ""
		}
	})
	for i, cmd := range []string{"VRFY silent", "VRFY hang", "VRFY 421"} {
		c := Dial(t, h.Addr)
		c.Send(cmd)
		if !h.WaitLine(cmd, 5*time.Second) {
			t.Fatalf("%s: WaitLine never saw it", cmd)
		}
		switch r := c.ReadTimeout(300 * time.Millisecond); {
		case cmd == "VRFY hang" && r.Code != 0:
			t.Errorf("%s: got %v, want the connection closed", cmd, r)
		case cmd == "VRFY 421" && r.Code != 421:
			t.Errorf("%s: got %v, want 421", cmd, r)
		case cmd == "VRFY silent" && !strings.Contains(r.Text, "timeout"):
			t.Errorf("%s: got %v, want no reply", cmd, r)
		}
		if cmd != "VRFY hang" {
			c.SendRaw("still here\r\n")
			if !h.WaitLine("still here", 5*time.Second) {
				t.Fatalf("%s: what came after was not recorded", cmd)
			}
			c.Close()
		}
		if !h.WaitEnded(i+1, 5*time.Second) {
			t.Fatalf("%s: the connection never ended", cmd)
		}
	}
	want := []string{"VRFY silent\r\nstill here\r\n", "VRFY hang\r\n", "VRFY 421\r\nstill here\r\n"}
	if got := h.Transcripts(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("transcripts %q, want %q", got, want)
	}
}

// TestRawNextHopLMTP: over a unix socket, LHLO is the greeting command and
// the end of the data gets one reply per recipient.
func TestRawNextHopLMTP(t *testing.T) {
	h := StartRawNextHop(t, func(h *RawNextHop) {
		h.Network, h.LMTP, h.Extensions = "unix", true, []string{} // a one-line LHLO reply
		h.DataReply = func([]byte) string { return "452 4.2.2 full" }
	})
	conn, err := net.Dial("unix", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	var got []string
	read := func(n int) {
		for range n {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			got = append(got, l[:3])
		}
	}
	read(1)
	io.WriteString(conn, "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n")
	read(5)
	io.WriteString(conn, "hi\r\n.\r\n")
	read(2)
	if want := "220 250 250 250 250 354 452 452"; strings.Join(got, " ") != want {
		t.Errorf("replies %s, want %s", strings.Join(got, " "), want)
	}
	if !h.WaitData(1, 5*time.Second) || len(h.Messages()) != 0 {
		t.Errorf("data ends not counted, or a refused message recorded: %+v", h.Messages())
	}
}
