package e2e

import (
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
)

const headerDate = "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"

// TestHeaderRules: the header check with its default actions, through the
// binary: a missing From is refused with 550 5.6.0 naming the rule; a
// duplicate Subject is relayed with X-Sekisho-Header-Violation; 8-bit
// header bytes are refused without SMTPUTF8 and accepted with it.
func TestHeaderRules(t *testing.T) {
	gw, hop := campus(t, nil)
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.net", "250")

	send := func(mailFrom, header string) harness.Reply {
		t.Helper()
		c.Expect(mailFrom, "250")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(header + "\r\nbody\r\n.\r\n")
		return c.Read()
	}

	r := send("MAIL FROM:<bob@example.net>", headerDate+"Subject: no from\r\n")
	if !strings.HasPrefix(r.String(), "550 5.6.0") || !strings.Contains(r.Text, "header rule from-count broken") {
		t.Errorf("missing From: %v, want 550 5.6.0 naming from-count", r)
	}
	line := gw.WaitLog("reply=\"550 5.6.0", 5*time.Second)
	if !strings.Contains(line, "from-count") {
		t.Errorf("log line does not name the rule:\n%s", line)
	}

	r = send("MAIL FROM:<bob@example.net>", "From: Bob <bob@example.net>\r\n"+headerDate+"Subject: one\r\nSubject: two\r\n")
	if r.Code != 250 {
		t.Fatalf("duplicate Subject: %v, want 250 (tagged)", r)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop has %d messages, want 1", len(msgs))
	}
	data := string(msgs[0].Data)
	body := strings.Index(data, "From: Bob")
	if i := strings.Index(data, "X-Sekisho-Header-Violation: duplicate-field\r\n"); i < 0 || i > body {
		t.Errorf("relayed message lacks the violation field before the client's header:\n%s", data)
	}

	r = send("MAIL FROM:<bob@example.net>", "From: Bob <bob@example.net>\r\n"+headerDate+"Subject: caf\xc3\xa9\r\n")
	if !strings.HasPrefix(r.String(), "550 5.6.0") || !strings.Contains(r.Text, "8bit") {
		t.Errorf("8-bit header without SMTPUTF8: %v, want 550 5.6.0 naming 8bit", r)
	}

	r = send("MAIL FROM:<bob@example.net> SMTPUTF8", "From: Bob <bob@example.net>\r\n"+headerDate+"Subject: caf\xc3\xa9\r\n")
	if r.Code != 250 {
		t.Errorf("8-bit header with SMTPUTF8: %v, want 250", r)
	}
	msgs = hop.Messages()
	if len(msgs) != 2 || !strings.Contains(string(msgs[1].Data), "Subject: caf\xc3\xa9\r\n") {
		t.Errorf("the SMTPUTF8 message did not reach the next hop unchanged: %d messages", len(msgs))
	}
}
