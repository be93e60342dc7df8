package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"sekisho/internal/harness"
)

// The probes of the hardening issue: each drives the built binary with a raw
// client and asserts both what the client was told (basic and enhanced code)
// and what the next hop received, byte for byte where it matters (the raw
// next hop records every command line and DATA byte as it crossed the wire).

// probeGateway starts a gateway relaying campus.test to the raw next hop,
// with an error limit high enough for the probes that send many refused
// commands on one session. mod may change the site further.
func probeGateway(t *testing.T, hop *harness.RawNextHop, mod func(*site)) *harness.Gateway {
	t.Helper()
	s := site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		limits: "max_errors: 100",
	}
	if mod != nil {
		mod(&s)
	}
	return harness.Start(t, s.yaml(t))
}

// probeSession starts a raw next hop and a probeGateway in front of it, and
// opens a session from the outside client, EHLO said.
func probeSession(t *testing.T) (*harness.RawNextHop, *harness.Client) {
	t.Helper()
	hop := harness.StartRawNextHop(t)
	gw := probeGateway(t, hop, nil)
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	return hop, c
}

// expectReply fails the test unless r starts with want ("250 2.1.0").
func expectReply(t *testing.T, c *harness.Client, what string, r harness.Reply, want string) {
	t.Helper()
	if !strings.HasPrefix(r.String(), want) {
		t.Fatalf("%s: got %q, want %q\n%s", what, r.String(), want, c.Transcript())
	}
}

// eventually polls cond until it holds; for states that no signal reports
// (what a next hop noticed about a connection the gateway dropped).
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hopLines returns the raw next hop's command lines that begin with prefix.
func hopLines(h *harness.RawNextHop, prefix string) []string {
	var out []string
	for _, l := range h.Lines() {
		if strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(prefix)) {
			out = append(out, l)
		}
	}
	return out
}

// receivedField returns our Received field (with its continuation lines) at
// the top of a relayed message, or "".
func receivedField(wire []byte) string {
	s := string(wire)
	i := strings.Index(s, "Received: ")
	if i < 0 {
		return ""
	}
	end := i
	for {
		j := strings.Index(s[end:], "\r\n")
		if j < 0 {
			return s[i:]
		}
		end += j + 2
		if end >= len(s) || (s[end] != ' ' && s[end] != '\t') {
			return s[i:end]
		}
	}
}

// envelopes describes a raw next hop's messages by their envelopes.
func envelopes(msgs []harness.RawMessage) string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("<%s> -> %q (%d bytes)", m.From, m.To, len(m.Wire)))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// sendMessage runs MAIL, RCPT, DATA and the message on c and expects 250
// 2.0.0 at the end.
func sendMessage(t *testing.T, c *harness.Client, from, to, msg string) {
	t.Helper()
	c.Expect("MAIL FROM:<"+from+">", "250 2.1.0")
	c.Expect("RCPT TO:<"+to+">", "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(msg + ".\r\n")
	expectReply(t, c, "end of DATA", c.Read(), "250 2.0.0")
}

// TestProbeHeloInjection: HELO/EHLO arguments that are neither a domain nor
// an address literal get 501 5.5.2 and the session goes on; the valid EHLO
// that follows is the one in the Received field the next hop gets, written
// `from <helo> ([127.0.0.2])`, and nothing injected reaches the message.
func TestProbeHeloInjection(t *testing.T) {
	hop := harness.StartRawNextHop(t)
	gw := probeGateway(t, hop, nil)
	c := harness.DialFrom(t, outside, gw.SMTP)
	for _, bad := range []string{
		"EHLO a\rX-Injected:\tyes(", // a bare CR: a header field if written as it is
		"EHLO a\tb",                 // TAB
		"EHLO a\x01b",               // control character
		"EHLO a\x7fb",               // DEL
		"EHLO h\xc3\xa9llo.example", // 8-bit
		"HELO h\xc3\xa9llo.example",
		"EHLO a(b)",     // a comment in the Received field
		"EHLO a)",       // closing the field's own comment
		"EHLO a b",      // spaces
		"HELO a b",      //
		"EHLO [1.2.3.4", // unclosed address literal
		"EHLO [1.2.3.4]x",
		"EHLO a;b",
		"EHLO",
	} {
		c.SendRaw(bad + "\r\n")
		if r := c.Read(); !strings.HasPrefix(r.String(), "501 5.5.2") {
			t.Errorf("%q: got %q, want 501 5.5.2", bad, r.String())
		}
		if r := c.Cmd("MAIL FROM:<bob@example.org>"); !strings.HasPrefix(r.String(), "503 5.5.1") {
			// The refused EHLO opened no session.
			t.Errorf("MAIL after %q: got %q, want 503 5.5.1", bad, r.String())
		}
	}
	c.Expect("EHLO client.example.org", "250")
	msg := hdr("helo probe") + "body\r\n"
	sendMessage(t, c, "bob@example.org", "alice@campus.test", msg)
	c.Expect("QUIT", "221 2.0.0")

	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop holds %d messages, want 1", len(msgs))
	}
	rcv := receivedField(msgs[0].Wire)
	if !strings.HasPrefix(rcv, "Received: from client.example.org ([127.0.0.2])\r\n") {
		t.Errorf("Received field %q, want it to begin `from client.example.org ([127.0.0.2])`", rcv)
	}
	wire := string(msgs[0].Wire)
	if strings.Contains(wire, "X-Injected") || strings.Contains(wire, "a(b)") || strings.Contains(wire, "[1.2.3.4") {
		t.Errorf("something of a refused HELO reached the message:\n%q", wire)
	}
	if !strings.HasSuffix(wire, "\r\n"+msg) {
		t.Errorf("relayed message %q does not end with the client's", wire)
	}
	for _, l := range hop.Lines() {
		if strings.Contains(l, "X-Injected") {
			t.Errorf("the next hop got the command line %q", l)
		}
	}
	for _, l := range strings.Split(gw.Log(), "\n") {
		if strings.HasPrefix(l, "X-Injected") {
			t.Errorf("the log has an injected line %q", l)
		}
	}
}

// TestProbeHeloIPv6: a client on ::1 is written [IPv6:::1] in the Received
// field, and an IPv6 address literal is a valid EHLO argument.
func TestProbeHeloIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	hop := harness.StartRawNextHop(t)
	gw := probeGateway(t, hop, func(s *site) { s.smtp = addr })

	c := harness.DialFrom(t, "::1", gw.SMTP)
	c.Expect("EHLO v6client.example.org", "250")
	sendMessage(t, c, "bob@example.org", "alice@campus.test", hdr("v6 one")+"body\r\n")
	c.Expect("EHLO [IPv6:::1]", "250")
	sendMessage(t, c, "bob@example.org", "alice@campus.test", hdr("v6 two")+"body\r\n")
	c.SendRaw("EHLO [IPv6:::1\r\n")
	expectReply(t, c, "EHLO [IPv6:::1", c.Read(), "501 5.5.2")
	c.Expect("QUIT", "221 2.0.0")

	msgs := hop.Messages()
	if len(msgs) != 2 {
		t.Fatalf("next hop holds %d messages, want 2", len(msgs))
	}
	for i, want := range []string{
		"Received: from v6client.example.org ([IPv6:::1])\r\n",
		"Received: from [IPv6:::1] ([IPv6:::1])\r\n",
	} {
		if rcv := receivedField(msgs[i].Wire); !strings.HasPrefix(rcv, want) {
			t.Errorf("message %d: Received field %q, want it to begin %q", i+1, rcv, want)
		}
	}
}

// TestProbePostmasterWithoutDomain: RCPT TO:<postmaster> and <Postmaster>
// (RFC 5321 §4.5.1: no domain) are accepted and go to the next hop as
// postmaster@ the first local domain.
func TestProbePostmasterWithoutDomain(t *testing.T) {
	hop, c := probeSession(t)
	for i, rcpt := range []string{"postmaster", "Postmaster", "POSTMASTER"} {
		sendMessage(t, c, "bob@example.org", rcpt, hdr("to "+rcpt)+"body\r\n")
		msgs := hop.Messages()
		if len(msgs) != i+1 {
			t.Fatalf("next hop holds %d messages, want %d", len(msgs), i+1)
		}
		if m := msgs[i]; len(m.To) != 1 || m.To[0] != "postmaster@campus.test" {
			t.Errorf("<%s> reached the next hop as %q, want postmaster@campus.test", rcpt, m.To)
		}
	}
	lines := hopLines(hop, "RCPT")
	if len(lines) != 3 {
		t.Fatalf("next hop RCPT lines %q, want 3", lines)
	}
	for _, l := range lines {
		if l != "RCPT TO:<postmaster@campus.test>\r\n" {
			t.Errorf("next hop got %q, want RCPT TO:<postmaster@campus.test>", l)
		}
	}
}

// TestProbeQuotedLocalParts: quoted local parts are relayed re-quoted, so a
// quoted `>` and spaces never end the path or start a parameter at the next
// hop.
func TestProbeQuotedLocalParts(t *testing.T) {
	hop := harness.StartRawNextHop(t)
	gw := probeGateway(t, hop, nil) // the domain check is off: sender1.zz is not looked up
	c := harness.Dial(t, gw.SMTP)   // trusted
	c.Expect("EHLO mail.campus.test", "250")
	const from = `"boss@campus.zz> RET=HDRS ENVID=x"@sender1.zz`
	sendMessage(t, c, from, `"a b"@campus.test`, hdr("quoted")+"body\r\n")

	if n := len(hop.Messages()); n != 1 {
		t.Fatalf("next hop holds %d messages, want 1", n)
	}
	mails := hopLines(hop, "MAIL")
	if len(mails) != 1 {
		t.Fatalf("next hop MAIL lines %q, want 1", mails)
	}
	m := strings.TrimSuffix(mails[0], "\r\n")
	if !strings.HasPrefix(m, "MAIL FROM:<"+from+">") {
		t.Errorf("next hop got %q, want the path MAIL FROM:<%s>", mails[0], from)
	} else {
		for _, p := range strings.Fields(strings.TrimPrefix(m, "MAIL FROM:<"+from+">")) {
			if k, _, _ := strings.Cut(strings.ToUpper(p), "="); k != "BODY" && k != "SIZE" && k != "SMTPUTF8" {
				t.Errorf("next hop got the MAIL parameter %q in %q", p, mails[0])
			}
		}
	}
	if rc := hopLines(hop, "RCPT"); len(rc) != 1 || rc[0] != "RCPT TO:<\"a b\"@campus.test>\r\n" {
		t.Errorf("next hop RCPT lines %q, want [RCPT TO:<\"a b\"@campus.test>]", rc)
	}
	if rcv := receivedField(hop.Messages()[0].Wire); !strings.Contains(rcv, `for <"a b"@campus.test>`) {
		t.Errorf("Received field %q lacks for <\"a b\"@campus.test>", rcv)
	}
}

// TestProbeCommandTimeoutMidLine: a command cut off by the command timeout
// is never executed: the client gets 421 4.4.2 and the connection is
// closed; the next hop gets no RCPT and the log no rcpt decision. Both a
// partial line and a line that lacks only its CRLF.
func TestProbeCommandTimeoutMidLine(t *testing.T) {
	for _, partial := range []string{"RCPT TO:<bo", "RCPT TO:<bob@campus.test>"} {
		t.Run(partial, func(t *testing.T) {
			hop := harness.StartRawNextHop(t)
			gw := probeGateway(t, hop, func(s *site) { s.limits += "\ncommand_timeout: 2s" })
			c := harness.DialFrom(t, outside, gw.SMTP)
			c.Expect("EHLO client.example.org", "250")
			c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0")
			start := time.Now()
			c.SendRaw(partial) // and silence
			expectReply(t, c, "silence after "+partial, c.Read(), "421 4.4.2")
			if d := time.Since(start); d < 1500*time.Millisecond {
				t.Errorf("421 after %v, before the command timeout of 2s", d)
			}
			if !c.Closed(10 * time.Second) {
				t.Error("connection open after 421")
			}
			if l := hopLines(hop, "RCPT"); len(l) != 0 {
				t.Errorf("the next hop got %q", l)
			}
			if n := hop.Sessions(); n != 0 {
				t.Errorf("the next hop was contacted %d times; a partial RCPT must not call ahead", n)
			}
			for _, l := range strings.Split(gw.Log(), "\n") {
				if strings.Contains(l, "msg=rcpt ") {
					t.Errorf("the partial line was judged: %s", l)
				}
			}
		})
	}
}

// TestProbeStalledBDAT: BDAT announces more than the client sends, then
// silence: 421 4.4.2 and close at the data timeout, never 554 5.0.0; the
// next hop gets no message, and a DATA it had begun is abandoned without
// the final dot.
func TestProbeStalledBDAT(t *testing.T) {
	cases := []struct {
		name    string
		size    int
		sent    string
		hopData bool // the header is complete: the next hop's DATA begins
	}{
		{"in the header", 100, "Subject: x", false},
		{"in the body", 400, hdr("stalled") + "first bytes of the body\r\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hop := harness.StartRawNextHop(t)
			gw := probeGateway(t, hop, func(s *site) { s.limits += "\ndata_timeout: 4s" })
			c := harness.DialFrom(t, outside, gw.SMTP)
			c.Expect("EHLO client.example.org", "250")
			c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0")
			c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
			c.SendRaw(fmt.Sprintf("BDAT %d\r\n%s", tc.size, tc.sent)) // and silence
			if tc.hopData {
				eventually(t, 10*time.Second, "the next hop's DATA begins", func() bool { return len(hopLines(hop, "DATA")) > 0 })
			}
			r := c.Read()
			if strings.HasPrefix(r.String(), "554 5.0.0") {
				t.Fatalf("stalled BDAT: got %q: a stall is never permanent", r.String())
			}
			expectReply(t, c, "stalled BDAT", r, "421 4.4.2")
			if !c.Closed(10 * time.Second) {
				t.Error("connection open after 421")
			}
			if tc.hopData {
				eventually(t, 10*time.Second, "the next hop's DATA is abandoned", func() bool { return hop.Aborted() == 1 })
			}
			if n := len(hop.Messages()); n != 0 {
				t.Errorf("the next hop holds %d messages, want 0", n)
			}
		})
	}
}

// TestProbeTrailingDotDomain: <bob@campus.test.> is bob@campus.test.
func TestProbeTrailingDotDomain(t *testing.T) {
	hop, c := probeSession(t)
	sendMessage(t, c, "alice@example.org.", "bob@campus.test.", hdr("trailing dot")+"body\r\n")
	if l := hopLines(hop, "RCPT"); len(l) != 1 || l[0] != "RCPT TO:<bob@campus.test>\r\n" {
		t.Errorf("next hop RCPT lines %q, want [RCPT TO:<bob@campus.test>]", l)
	}
	if m := hop.Messages(); len(m) != 1 || m[0].From != "alice@example.org" {
		t.Errorf("next hop messages %s, want one from alice@example.org", envelopes(m))
	}
}

// TestProbeBareCRAfterDotRefused: "\r\n.\rX" in DATA is a bare CR, not the
// end of data nor content to pass on: 550 5.6.0, nothing reaches the next
// hop, and the session goes on.
func TestProbeBareCRAfterDotRefused(t *testing.T) {
	hop, c := probeSession(t)
	for _, body := range []string{
		"line\r\n.\rX\r\nmore\r\n",
		".\rX\r\n",                     // the first line of the body
		"line\r\n.\rMAIL FROM:<x>\r\n", // a command after the CR
	} {
		c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0")
		c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
		c.Expect("DATA", "354")
		c.SendRaw(hdr("bare cr") + body + ".\r\n")
		if r := c.Read(); !strings.HasPrefix(r.String(), "550 5.6.0") {
			t.Errorf("body %q: got %q, want 550 5.6.0", body, r.String())
		}
		c.Expect("NOOP", "250 2.0.0") // in step
	}
	sendMessage(t, c, "carol@example.org", "alice@campus.test", hdr("clean")+"clean\r\n")
	msgs := hop.Messages()
	if len(msgs) != 1 || msgs[0].From != "carol@example.org" || strings.Contains(string(msgs[0].Wire), "bare cr") {
		t.Errorf("next hop holds %s, want the clean one only", envelopes(msgs))
	}
	if l := hopLines(hop, "MAIL FROM:<x>"); len(l) != 0 {
		t.Errorf("the next hop got %q", l)
	}
}

// TestProbeMailParameters: each parameter at most once (501 5.5.4), a
// malformed DSN value 501 5.5.4, an unknown parameter 555 5.5.4; the one
// RCPT carries only the accepted recipient, and no DSN parameter reaches a
// next hop that does not offer DSN.
func TestProbeMailParameters(t *testing.T) {
	hop, c := probeSession(t)
	for _, tc := range []struct{ params, want string }{
		{"SIZE=10 SIZE=20", "501 5.5.4"},
		{"SIZE=10 size=10", "501 5.5.4"},
		{"BODY=8BITMIME BODY=7BIT", "501 5.5.4"},
		{"BODY=7BIT body=7bit", "501 5.5.4"},
		{"SMTPUTF8 SMTPUTF8", "501 5.5.4"},
		{"SMTPUTF8 smtputf8", "501 5.5.4"},
		{"RET=MAYBE", "501 5.5.4"},
		{"RET=HDRS ret=FULL", "501 5.5.4"},
		{"ENVID=a=b", "501 5.5.4"},
		{"ENVID=a+2", "501 5.5.4"},
		{"ENVID=a+0D+0AMAIL", "501 5.5.4"}, // a CRLF hidden in xtext
		{"SIZE=10 AUTH=<>", "555 5.5.4"},
		{"XFOO", "555 5.5.4"},
	} {
		if r := c.Cmd("MAIL FROM:<bob@example.org> " + tc.params); !strings.HasPrefix(r.String(), tc.want) {
			t.Errorf("MAIL with %s: got %q, want %s", tc.params, r.String(), tc.want)
		}
	}
	c.Expect("MAIL FROM:<bob@example.org> SIZE=100 BODY=8BITMIME SMTPUTF8", "250 2.1.0")
	for _, tc := range []struct{ params, want string }{
		{"NOTIFY=NEVER,SUCCESS", "501 5.5.4"},
		{"NOTIFY=FAILURE NOTIFY=DELAY", "501 5.5.4"},
		{"ORCPT=rfc822", "501 5.5.4"},
		{"ORCPT=rfc822;a+0D+0Ab@x", "501 5.5.4"},
		{"XFOO", "555 5.5.4"},
	} {
		if r := c.Cmd("RCPT TO:<alice@campus.test> " + tc.params); !strings.HasPrefix(r.String(), tc.want) {
			t.Errorf("RCPT with %s: got %q, want %s", tc.params, r.String(), tc.want)
		}
	}
	// Well-formed DSN parameters are taken (RFC 3461), and not passed to
	// a next hop that does not offer DSN (this one does not).
	c.Expect("RCPT TO:<alice@campus.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;alice+2Bx@campus.test", "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("params") + "body\r\n.\r\n")
	expectReply(t, c, "end of DATA", c.Read(), "250 2.0.0")
	if m := hop.Messages(); len(m) != 1 {
		t.Errorf("next hop holds %d messages, want 1", len(m))
	}
	for _, l := range hop.Lines() {
		for _, bad := range []string{"NOTIFY", "ORCPT", "RET=", "ENVID", "XFOO", "AUTH="} {
			if strings.Contains(strings.ToUpper(l), bad) {
				t.Errorf("the next hop got %q", l)
			}
		}
	}
	if l := hopLines(hop, "RCPT"); len(l) != 1 || l[0] != "RCPT TO:<alice@campus.test>\r\n" {
		t.Errorf("next hop RCPT lines %q, want one plain RCPT", l)
	}
}

// TestProbeUTF8Echo: with SMTPUTF8 a non-ASCII sender is accepted and echoed
// intact (UTF-8) in the reply, and relayed; without it, 553 5.6.7.
func TestProbeUTF8Echo(t *testing.T) {
	hop, c := probeSession(t)
	c.Expect("MAIL FROM:<ålice@campus.test>", "553 5.6.7")
	c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0") // no transaction was opened
	c.Expect("RSET", "250 2.0.0")
	r := c.Expect("MAIL FROM:<ålice@campus.test> SMTPUTF8", "250 2.1.0")
	if !utf8.ValidString(r.Text) || !strings.Contains(r.Text, "ålice@campus.test") {
		t.Errorf("MAIL reply text %q, want ålice@campus.test intact", r.Text)
	}
	c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("utf8") + "body\r\n.\r\n")
	expectReply(t, c, "end of DATA", c.Read(), "250 2.0.0")

	mails := hopLines(hop, "MAIL")
	if len(mails) != 1 || !strings.HasPrefix(mails[0], "MAIL FROM:<ålice@campus.test>") || !strings.Contains(strings.ToUpper(mails[0]), " SMTPUTF8") {
		t.Errorf("next hop MAIL lines %q, want one from <ålice@campus.test> with SMTPUTF8", mails)
	}
	if m := hop.Messages(); len(m) != 1 || m[0].From != "ålice@campus.test" {
		t.Errorf("next hop messages %s, want one from ålice@campus.test", envelopes(m))
	}
}

// TestProbeEnhancedCodes: every positive reply carries its enhanced code,
// and the sequence errors are 503 5.5.1.
func TestProbeEnhancedCodes(t *testing.T) {
	hop, c := probeSession(t)
	c.Expect("RCPT TO:<alice@campus.test>", "503 5.5.1")
	c.Expect("DATA", "503 5.5.1")
	c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0")
	c.Expect("DATA", "503 5.5.1") // no accepted recipient
	c.Expect("RSET", "250 2.0.0")
	c.Expect("NOOP", "250 2.0.0")
	c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0")
	c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("codes") + "body\r\n.\r\n")
	expectReply(t, c, "end of DATA", c.Read(), "250 2.0.0")
	c.Expect("QUIT", "221 2.0.0")
	if !c.Closed(10 * time.Second) {
		t.Error("connection open after 221")
	}
	if m := hop.Messages(); len(m) != 1 || m[0].From != "bob@example.org" {
		t.Errorf("next hop messages %s, want one from bob@example.org", envelopes(m))
	}
}

// TestProbeBDATTransactions: a BDAT transfer ended by RSET, EHLO or a
// refused chunk never reaches into the next transaction: the next hop gets
// exactly the second message with the second envelope. MAIL, RCPT and DATA
// during a transfer are 503 5.5.1; QUIT between chunks relays nothing. Each
// variant runs several times on the race-built binary.
func TestProbeBDATTransactions(t *testing.T) {
	const rounds = 10
	first := hdr("first") + "first body\r\n"
	second := hdr("second") + "second body\r\n"
	// big is a chunk of 1500 bytes; two exceed max_message_bytes: 2500.
	big := hdr("big")
	for len(big) < 1500-80 {
		big += strings.Repeat("x", 76) + "\r\n"
	}
	big += strings.Repeat("y", 1500-len(big)-2) + "\r\n"

	// firstChunk opens a session from the outside client and begins a
	// transfer from first@example.org to alice with chunk (not LAST).
	firstChunk := func(t *testing.T, gw *harness.Gateway, chunk string) *harness.Client {
		t.Helper()
		c := harness.DialFrom(t, outside, gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<first@example.org>", "250 2.1.0")
		c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
		c.SendRaw(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
		expectReply(t, c, "first chunk", c.Read(), "250 2.0.0")
		return c
	}

	// end abandons the first transfer on c, which never delivers it.
	variants := []struct {
		name string
		end  func(t *testing.T, c *harness.Client)
	}{
		{"RSET", func(t *testing.T, c *harness.Client) {
			c.Expect("RSET", "250 2.0.0")
		}},
		{"EHLO", func(t *testing.T, c *harness.Client) {
			c.Expect("EHLO client.example.org", "250")
		}},
		{"552", func(t *testing.T, c *harness.Client) {
			c.SendRaw(fmt.Sprintf("BDAT %d\r\n%s", len(big), big))
			expectReply(t, c, "second chunk over the size limit", c.Read(), "552 5.3.4")
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			var hop *harness.RawNextHop
			// Runs after the gateway has stopped and the next hop has
			// finished every session (cleanups run last-in first-out): a
			// late delivery of an abandoned transfer is seen here.
			t.Cleanup(func() {
				msgs := hop.Messages()
				if len(msgs) != rounds {
					t.Errorf("after the gateway stopped the next hop holds %d messages, want %d", len(msgs), rounds)
				}
				for _, m := range msgs {
					if m.From != "second@example.org" || !strings.HasSuffix(string(m.Wire), "\r\n"+second) || strings.Contains(string(m.Wire), "first") {
						t.Errorf("next hop message from <%s>:\n%q\nwant from <second@example.org> ending with the second body", m.From, m.Wire)
					}
				}
			})
			hop = harness.StartRawNextHop(t)
			gw := probeGateway(t, hop, func(s *site) { s.limits += "\nmax_message_bytes: 2500" })
			for i := 0; i < rounds; i++ {
				chunk := first
				if v.name == "552" {
					chunk = big
				}
				c := firstChunk(t, gw, chunk)
				v.end(t, c)
				c.Expect("MAIL FROM:<second@example.org>", "250 2.1.0")
				c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
				c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(second), second))
				expectReply(t, c, "second message", c.Read(), "250 2.0.0")
				c.Expect("QUIT", "221 2.0.0")
				msgs := hop.Messages()
				if len(msgs) != i+1 {
					t.Fatalf("round %d: next hop holds %d messages, want %d", i+1, len(msgs), i+1)
				}
				if m := msgs[i]; m.From != "second@example.org" || !strings.HasSuffix(string(m.Wire), "\r\n"+second) {
					t.Fatalf("round %d: next hop got from <%s>:\n%q\nwant the second message", i+1, m.From, m.Wire)
				}
			}
		})
	}

	t.Run("commands during a transfer", func(t *testing.T) {
		hop := harness.StartRawNextHop(t)
		gw := probeGateway(t, hop, nil)
		for i := 0; i < rounds; i++ {
			c := firstChunk(t, gw, first)
			c.Expect("MAIL FROM:<second@example.org>", "503 5.5.1")
			c.Expect("RCPT TO:<bob@campus.test>", "503 5.5.1")
			c.Expect("DATA", "503 5.5.1")
			c.Expect("BDAT 0 LAST", "250 2.0.0")
			c.Expect("QUIT", "221 2.0.0")
			msgs := hop.Messages()
			if len(msgs) != i+1 {
				t.Fatalf("round %d: next hop holds %d messages, want %d", i+1, len(msgs), i+1)
			}
			if m := msgs[i]; m.From != "first@example.org" || len(m.To) != 1 || m.To[0] != "alice@campus.test" || !strings.HasSuffix(string(m.Wire), "\r\n"+first) {
				t.Fatalf("round %d: next hop got %s -> %q:\n%q\nwant the first message to alice only", i+1, m.From, m.To, m.Wire)
			}
		}
	})

	t.Run("QUIT between chunks", func(t *testing.T) {
		var hop *harness.RawNextHop
		t.Cleanup(func() {
			if n := len(hop.Messages()); n != 0 {
				t.Errorf("after the gateway stopped the next hop holds %d messages, want 0", n)
			}
		})
		hop = harness.StartRawNextHop(t)
		gw := probeGateway(t, hop, nil)
		for i := 0; i < rounds; i++ {
			c := firstChunk(t, gw, first)
			c.Expect("QUIT", "221 2.0.0")
			if !c.Closed(10 * time.Second) {
				t.Errorf("round %d: connection open after 221", i+1)
			}
		}
	})
}

// TestProbeDisconnectsAreNotWarnings: clients that leave — during the greet
// pause, after the banner, after EHLO, in a transaction, in DATA, with FIN or
// with RST — leave no WARN or ERROR line in the log.
func TestProbeDisconnectsAreNotWarnings(t *testing.T) {
	hop := harness.StartRawNextHop(t)
	gw := probeGateway(t, hop, func(s *site) {
		s.greet = "1s"
		s.limits += "\nmax_connections_per_ip: 1000\nmax_connections: 1000"
	})
	const clients = 200
	rst := func(c net.Conn) {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	var mu sync.Mutex
	greeted := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 40)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			src := fmt.Sprintf("127.0.0.%d", 2+i%8)
			d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			conn, err := d.Dial("tcp", gw.SMTP)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			leave := conn.Close
			if i%2 == 1 {
				leave = func() error { rst(conn); return nil }
			}
			kind := (i / 2) % 6
			if kind == 0 { // during the greet pause
				leave()
				return
			}
			if kind == 1 { // talks first, then leaves
				conn.Write([]byte("EHLO early.example\r\n"))
				leave()
				return
			}
			buf := make([]byte, 4096)
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			readReply := func() bool {
				n, err := conn.Read(buf)
				return err == nil && n > 0
			}
			if !readReply() {
				t.Errorf("client %d: no banner", i)
				conn.Close()
				return
			}
			mu.Lock()
			greeted++
			mu.Unlock()
			if kind == 2 { // after the banner
				leave()
				return
			}
			conn.Write([]byte("EHLO client.example.org\r\n"))
			if kind == 3 { // EHLO sent, its reply not read
				leave()
				return
			}
			readReply()
			conn.Write([]byte("MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@campus.test>\r\n"))
			if kind == 4 { // in the middle of a transaction
				leave()
				return
			}
			for got := ""; !strings.Contains(got, "2.1.5") && !strings.Contains(got, " 4.") && !strings.Contains(got, " 5."); {
				n, err := conn.Read(buf)
				if err != nil {
					break
				}
				got += string(buf[:n])
			}
			conn.Write([]byte("DATA\r\n" + hdr("cut off") + "half a bo"))
			leave() // in DATA
		}(i)
	}
	wg.Wait()
	// The gateway's exit is the signal that every session has ended and
	// logged what it had to say.
	gw.Stop()
	log := gw.Log()
	if n := strings.Count(log, "msg=connected"); n < greeted {
		t.Errorf("%d sessions logged, but %d clients got the banner: the test proves nothing", n, greeted)
	}
	if greeted < clients/2 {
		t.Errorf("only %d clients got the banner", greeted)
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("log line: %s", l)
		}
	}
	if n := len(hop.Messages()); n != 0 {
		t.Errorf("the next hop holds %d messages, want 0", n)
	}
}

// TestProbeORCPTUTF8: ORCPT in its utf-8 form (RFC 6533 §3), whose \x{HEX}
// escapes decode to any code point, is refused with 501 5.5.4 when it
// decodes to a control character (a CR LF that would end the next hop's
// RCPT line and start a command of the attacker's, NUL, DEL, C1), to a
// backslash (which the re-encoding writes bare: an escape again at the next
// hop), or when it is malformed; nothing of it reaches the next hop, whose
// every command line is one line. A valid one reaches a next hop that offers
// DSN re-encoded: as UTF-8 when it offers SMTPUTF8, escaped when it does
// not.
func TestProbeORCPTUTF8(t *testing.T) {
	dsnExt := []string{"DSN", "8BITMIME", "ENHANCEDSTATUSCODES"}
	utf8Hop := harness.StartRawNextHop(t, func(h *harness.RawNextHop) { h.Extensions = append(dsnExt, "SMTPUTF8") })
	asciiHop := harness.StartRawNextHop(t, func(h *harness.RawNextHop) { h.Extensions = dsnExt })
	gw := probeGateway(t, asciiHop, func(s *site) {
		s.routes = []string{
			routeTo([]string{"uni.campus.test"}, "smtp://"+utf8Hop.Addr),
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+asciiHop.Addr),
		}
	})
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org> SMTPUTF8", "250 2.1.0")
	for _, bad := range []string{
		`a\x{0D}\x{0A}QUIT\x{0D}\x{0A}b@x.example`, // CR LF (not HEXPOINTs either)
		`a\x{0A}b@x.example`, `a\x{0d}b@x.example`, `a\x{00}b@x.example`, `a\x{09}b@x.example`,
		`a\x{7F}b@x.example`, `a\x{85}b@x.example`, // DEL, C1 NEL
		`a\x{5C}x{0D}b@x.example`, // a backslash: \x{0D} again downstream
		"a\u0085b@x.example",      // C1 as UTF-8
		`a\x{D800}b@x.example`, `a\x{110000}b@x.example`, `a\x{41}b@x.example`, `a\x{00E9}b@x.example`,
		`a\x{}b@x.example`, `a\x0Db@x.example`, `a\x{0D@x.example`, `a\b@x.example`,
		`a+0D+0Ab@x.example`, "a+b@x.example", `a=b@x.example`, `no-address`, `a\x{20}b@x.example`,
	} {
		if r := c.Cmd("RCPT TO:<a@uni.campus.test> ORCPT=utf-8;" + bad); !strings.HasPrefix(r.String(), "501 5.5.4") {
			t.Errorf("ORCPT=utf-8;%s: got %q, want 501 5.5.4", bad, r.String())
		}
	}
	c.Expect(`RCPT TO:<a@uni.campus.test> ORCPT=utf-8;j\x{F6}rg@b\x{FC}cher.example`, "250 2.1.5")
	c.Expect(`RCPT TO:<b@uni.campus.test> ORCPT=UTF-8;jörg\x{2B}tag@bücher.example`, "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("orcpt") + "body\r\n.\r\n")
	expectReply(t, c, "end of DATA", c.Read(), "250 2.0.0")
	c.Expect("MAIL FROM:<bob@example.org>", "250 2.1.0")
	c.Expect(`RCPT TO:<c@campus.test> ORCPT=utf-8;j\x{F6}rg@b\x{FC}cher.example`, "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("orcpt") + "body\r\n.\r\n")
	expectReply(t, c, "end of DATA", c.Read(), "250 2.0.0")

	for _, tc := range []struct {
		hop  *harness.RawNextHop
		want []string
	}{
		{utf8Hop, []string{
			"RCPT TO:<a@uni.campus.test> ORCPT=UTF-8;jörg@bücher.example\r\n",
			`RCPT TO:<b@uni.campus.test> ORCPT=UTF-8;jörg\x{2B}tag@bücher.example` + "\r\n",
		}},
		{asciiHop, []string{`RCPT TO:<c@campus.test> ORCPT=UTF-8;j\x{F6}rg@b\x{FC}cher.example` + "\r\n"}},
	} {
		if got := hopLines(tc.hop, "RCPT"); strings.Join(got, "") != strings.Join(tc.want, "") {
			t.Errorf("next hop RCPT lines %q, want %q", got, tc.want)
		}
		if n := len(hopLines(tc.hop, "MAIL")); n != 1 {
			t.Errorf("next hop got %d MAIL lines, want 1", n)
		}
		for _, l := range tc.hop.Lines() {
			if strings.ContainsAny(strings.TrimSuffix(l, "\r\n"), "\r\n\x00\x7f") || !strings.HasSuffix(l, "\r\n") {
				t.Errorf("next hop got the command line %q", l)
			}
		}
	}
}
