package e2e

import (
	"bytes"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

const outside = "127.0.0.2" // a client address outside trusted_networks

// campus starts a gateway relaying campus.test to one next hop.
func campus(t *testing.T, mod func(*site)) (*harness.Gateway, *harness.NextHop) {
	t.Helper()
	hop := harness.StartNextHop(t, false)
	s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)}}
	if mod != nil {
		mod(&s)
	}
	return harness.Start(t, s.yaml(t)), hop
}

const sampleMessage = "From: Bob <bob@example.org>\r\n" +
	"To: alice@campus.test\r\n" +
	"Subject: hello\r\n" +
	"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Line one.\r\n" +
	".A line that starts with a dot.\r\n" +
	"\r\n" +
	"Last line.\r\n"

// TestRelayByteForByte: net/smtp sends a message from outside; the next hop
// holds exactly those bytes with one Received header in front — on the wire,
// dot-stuffed as the client sent them, for the raw next hop.
func TestRelayByteForByte(t *testing.T) {
	forEachHop(t, func(t *testing.T, hop *wireHop) {
		gw := campusVia(t, hop.addr)
		c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
		// Dot-stuff as a client must.
		stuffed := strings.ReplaceAll(sampleMessage, "\r\n.", "\r\n..")
		c.SendRaw(stuffed + ".\r\n")
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("DATA: %v", r)
		}
		msgs := hop.received()
		if len(msgs) != 1 {
			t.Fatalf("next hop has %d messages, want 1", len(msgs))
		}
		if hop.raw != nil {
			m := hop.raw.Messages()[0]
			if m.From != "bob@example.org" || len(m.To) != 1 || m.To[0] != "alice@campus.test" {
				t.Errorf("envelope = %q -> %q", m.From, m.To)
			}
		}
		data := string(msgs[0])
		if !strings.HasPrefix(data, "Received: from client.example.org ([127.0.0.2])\r\n\tby mx.campus.test (sekisho) with ESMTP id ") {
			t.Errorf("message does not start with our Received header:\n%s", data)
		}
		want := hop.wire(sampleMessage)
		i := strings.Index(data, "From: Bob")
		if i < 0 || data[i:] != want {
			t.Errorf("relayed bytes differ from the client's:\n%q\nwant suffix\n%q", data, want)
		}
		if i >= 0 {
			if n := strings.Count(data[:i], "Received:"); n != 1 {
				t.Errorf("%d Received headers added, want 1", n)
			}
		}
	})
}

// TestRelayWithNetSMTPAndSwaks: the standard library's client and swaks both
// get their message through.
func TestRelayWithNetSMTPAndSwaks(t *testing.T) {
	gw, hop := campus(t, nil)
	if err := smtp.SendMail(gw.SMTP, nil, "bob@example.org", []string{"alice@campus.test"}, []byte(sampleMessage)); err != nil {
		t.Fatalf("net/smtp: %v", err)
	}
	swaks := testenv.Command(t, "swaks", "swaks")
	out, err := exec.Command(swaks, "--server", gw.SMTP, "--from", "carol@example.org", "--to", "dave@sub.campus.test",
		"--header", "Subject: via swaks", "--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("250 2.0.0 OK: accepted by next hop")) {
		t.Errorf("swaks transcript lacks the 250:\n%s", out)
	}
	msgs := hop.Messages()
	if len(msgs) != 2 || msgs[1].To[0] != "dave@sub.campus.test" || !bytes.Contains(msgs[1].Data, []byte("hello from swaks")) {
		t.Fatalf("next hop got %d messages: %+v", len(msgs), msgs)
	}
}

// TestRelayMatrixRefused: every open-relay form is refused to an outside
// client, judged on the final address; the trusted client may relay.
func TestRelayMatrixRefused(t *testing.T) {
	ext := harness.StartNextHop(t, false)
	gw, hop := campus(t, func(s *site) {
		s.routes = append(s.routes, routeTo([]string{"*"}, "smtp://"+ext.Addr))
	})
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO spammer.example", "250")
	c.Expect("MAIL FROM:<spam@example.net>", "250")
	for _, rcpt := range []string{
		"<victim@example.com>",
		"<u%example.com@campus.test>",
		`<"u@example.com"@campus.test>`,
		"<@campus.test:u@example.com>",
		"<example.com!u@campus.test>",
		"<u@[192.0.2.1]>",
		"<u@example.com@campus.test>",
		"<victim@campus.test.example.com>",
	} {
		r := c.Cmd("RCPT TO:" + rcpt)
		if r.Code/100 != 5 {
			t.Errorf("RCPT TO:%s = %v, want 5xx", rcpt, r)
		}
		// An unquoted "@" in a local part is not even an address (RFC 5321
		// §4.1.2): 501, refused before relay control looks at it.
		if rcpt == "<u@example.com@campus.test>" {
			if !strings.HasPrefix(r.String(), "501 5.1.3") {
				t.Errorf("RCPT TO:%s = %v, want 501 5.1.3", rcpt, r)
			}
			continue
		}
		if rcpt != "<u@[192.0.2.1]>" && !strings.HasPrefix(r.String(), "554 5.7.1") {
			t.Errorf("RCPT TO:%s = %v, want 554 5.7.1", rcpt, r)
		}
	}
	c.Expect("RCPT TO:<alice@campus.test>", "250") // the session goes on
	c.Expect("QUIT", "221")

	// From the trusted network, outbound relay works.
	tc := harness.Dial(t, gw.SMTP)
	tc.Expect("EHLO mail.campus.test", "250")
	tc.Expect("MAIL FROM:<alice@campus.test>", "250")
	tc.Expect("RCPT TO:<friend@example.com>", "250")
	tc.Expect("DATA", "354")
	tc.SendRaw(sampleMessage + ".\r\n")
	if r := tc.Read(); r.Code != 250 {
		t.Fatalf("trusted relay: %v", r)
	}
	if len(ext.Messages()) != 1 || len(hop.Messages()) != 0 {
		t.Errorf("external hop has %d, campus hop %d messages; want 1 and 0", len(ext.Messages()), len(hop.Messages()))
	}
}

// TestNextHopDown: no next hop answers → 451 4.4.1 at RCPT, nothing accepted.
func TestNextHopDown(t *testing.T) {
	dead := testenv.FreePort(t) // nothing listens here
	gw := harness.Start(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+dead)}}.yaml(t))
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.4.1")
	c.Expect("DATA", "503 5.5.1") // no recipient was accepted (RFC 5321 §3.3)
}

// TestNextHopFailover: the first next hop is down, the second takes the mail.
func TestNextHopFailover(t *testing.T) {
	second := harness.StartNextHop(t, false)
	dead := testenv.FreePort(t)
	gw := harness.Start(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+dead, "smtp://"+second.Addr)}}.yaml(t))
	if err := smtp.SendMail(gw.SMTP, nil, "bob@example.org", []string{"alice@campus.test"}, []byte(sampleMessage)); err != nil {
		t.Fatal(err)
	}
	if len(second.Messages()) != 1 {
		t.Fatalf("second next hop has %d messages", len(second.Messages()))
	}
}

// TestNextHopRefusals: the next hop's 550 at RCPT reaches the client as 550;
// its 451 at DATA as 451; and after each the session goes on.
func TestNextHopRefusals(t *testing.T) {
	gw, hop := campus(t, nil)
	hop.OnRcpt = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	hop.OnData = func(m harness.Message) error {
		if bytes.Contains(m.Data, []byte("Subject: defer me")) {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<nobody@campus.test>", "550 5.1.1")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("defer me") + "body\r\n.\r\n")
	if r := c.Read(); !strings.HasPrefix(r.String(), "451 4.3.0") {
		t.Fatalf("DATA deferred by next hop: got %v, want 451 4.3.0", r)
	}
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("fine") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("second message: %v", r)
	}
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop holds %d messages, want 1", n)
	}
}

// TestOtherRouteDeferred: a recipient routed elsewhere than the transaction's
// first gets 452 4.5.3 and goes in a transaction of its own.
func TestOtherRouteDeferred(t *testing.T) {
	other := harness.StartNextHop(t, false)
	gw, hop := campus(t, func(s *site) {
		s.local = []string{"campus.test", ".campus.test", "lab.test"}
		s.routes = append([]string{routeTo([]string{"lab.test"}, "smtp://"+other.Addr)}, s.routes...)
	})
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<carol@campus.test>", "250")
	c.Expect("RCPT TO:<eve@lab.test>", "452 4.5.3")
	c.Expect("DATA", "354")
	c.SendRaw(sampleMessage + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatal(r)
	}
	if len(hop.Messages()) != 1 || len(hop.Messages()[0].To) != 2 || len(other.Messages()) != 0 {
		t.Errorf("campus hop %+v, lab hop %d messages", hop.Messages(), len(other.Messages()))
	}
}

// TestSmugglingRefused sends a clean message, then each sequence of SEC
// Consult's SMTP smuggling list followed by a smuggled MAIL/RCPT/DATA. Each
// attempt gets 550 5.6.0; the next hop holds exactly the clean message, and
// the raw next hop, which ends DATA only at CRLF.CRLF and records every
// byte, got no smuggled command and no bare CR or LF.
func TestSmugglingRefused(t *testing.T) {
	forEachHop(t, func(t *testing.T, hop *wireHop) {
		gw := campusVia(t, hop.addr)
		c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
		clean := hdr("clean") + "clean body\r\n"
		c.SendRaw(clean + ".\r\n")
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("clean message: %v", r)
		}
		smuggled := "MAIL FROM:<admin@campus.test>\r\nRCPT TO:<alice@campus.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
		for _, seq := range []string{"\n.\n", "\n.\r", "\r.\n", "\r.\r", "\n.\r\n", "\r.\r\n", "\r\n\x00.\r\n"} {
			c.Expect("MAIL FROM:<bob@example.org>", "250")
			c.Expect("RCPT TO:<alice@campus.test>", "250")
			c.Expect("DATA", "354")
			c.SendRaw(hdr("carrier") + "body" + seq + smuggled + ".\r\n")
			if r := c.Read(); !strings.HasPrefix(r.String(), "550 5.6.0") {
				t.Errorf("sequence %q: got %v, want 550 5.6.0", seq, r)
			}
		}
		c.Expect("NOOP", "250") // the session is still in step
		if l := hop.commandsWith("admin@campus.test"); len(l) != 0 {
			t.Errorf("the next hop got smuggled commands: %q", l)
		}
		msgs := hop.received()
		if len(msgs) != 1 {
			t.Fatalf("next hop holds %d messages, want exactly the clean one", len(msgs))
		}
		if !strings.HasSuffix(string(msgs[0]), "\r\n"+hop.wire(clean)) || bytes.Contains(msgs[0], []byte("smuggled")) {
			t.Errorf("next hop message:\n%q\nwant it to end with\n%q", msgs[0], hop.wire(clean))
		}
	})
}

// TestMailLoop: more than 50 Received headers → 554 5.4.6.
func TestMailLoop(t *testing.T) {
	gw, hop := campus(t, nil)
	var msg strings.Builder
	for i := 0; i < 51; i++ {
		fmt.Fprintf(&msg, "Received: from hop%d.example by hop%d.example; Sun, 22 Nov 2026 10:00:00 +0000\r\n", i, i+1)
	}
	msg.WriteString(sampleMessage)
	c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
	c.SendRaw(msg.String() + ".\r\n")
	if r := c.Read(); !strings.HasPrefix(r.String(), "554 5.4.6") {
		t.Fatalf("got %v, want 554 5.4.6", r)
	}
	if len(hop.Messages()) != 0 {
		t.Error("looping message reached the next hop")
	}
}

// TestLimits: per-IP connections, recipients, size at MAIL and in DATA,
// line length, idle timeout and the DATA deadline.
func TestLimits(t *testing.T) {
	gw, hop := campus(t, func(s *site) {
		s.limits = `
max_connections_per_ip: 2
max_recipients: 3
max_message_bytes: 2000
max_line_length: 1000
command_timeout: 2s
data_timeout: 3s`
	})

	t.Run("connections per IP", func(t *testing.T) {
		a := harness.DialFrom(t, outside, gw.SMTP)
		b := harness.DialFrom(t, outside, gw.SMTP)
		excess := harness.DialNoBanner(t, outside, gw.SMTP)
		if r := excess.Read(); !strings.HasPrefix(r.String(), "421 4.7.0") {
			t.Errorf("third connection from one IP: %v, want 421 4.7.0", r)
		}
		if !excess.Closed(5 * time.Second) {
			t.Error("excess connection not closed after 421")
		}
		other := harness.DialFrom(t, "127.0.0.3", gw.SMTP) // another IP is unaffected
		other.Expect("EHLO other.example", "250")
		a.Expect("EHLO a.example", "250") // existing sessions are unaffected
		a.Close()
		b.Close()
	})

	t.Run("recipients", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.4", gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		for i := 0; i < 3; i++ {
			c.Expect(fmt.Sprintf("RCPT TO:<u%d@campus.test>", i), "250")
		}
		c.Expect("RCPT TO:<u9@campus.test>", "452 4.5.3")
	})

	t.Run("size", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.5", gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<bob@example.org> SIZE=5000", "552 5.3.4")
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("DATA", "354")
		big := hdr("big") + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 40)
		c.SendRaw(big + ".\r\n")
		if r := c.Read(); !strings.HasPrefix(r.String(), "552 5.3.4") {
			t.Errorf("oversized DATA: %v, want 552 5.3.4", r)
		}
		c.Expect("NOOP", "250")
	})

	t.Run("line length", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.6", gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(hdr("long") + strings.Repeat("y", 1200) + "\r\n.\r\n")
		if r := c.Read(); r.Code/100 != 5 {
			t.Errorf("over-long line: %v, want 5xx", r)
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.7", gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		if r := c.ReadTimeout(10 * time.Second); r.Code != 421 {
			t.Errorf("idle session: %v, want 421", r)
		}
	})

	t.Run("data deadline", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.8", gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		c.Expect("RCPT TO:<slow@campus.test>", "250")
		c.Expect("DATA", "354")
		// Trickle a line every half second: each read alone would be fine,
		// the whole DATA is not. Writes after the server hung up fail, and
		// that is expected; the reply it sent first is what counts.
		for i := 0; i < 10; i++ {
			c.Conn().Write([]byte("X-Slow: yes\r\n"))
			time.Sleep(time.Second / 2) // the client's own pace, not synchronisation
		}
		if r := c.ReadTimeout(10 * time.Second); !strings.HasPrefix(r.String(), "421") {
			t.Errorf("slow DATA: %v, want 421", r)
		}
	})

	for _, m := range hop.Messages() {
		t.Errorf("next hop received a message in the limits test: %q", m.Data)
	}
}

// TestKillDuringData: kill -9 of sekisho while a message is in flight. The
// client gets no 250 and the next hop discards the partial message.
func TestKillDuringData(t *testing.T) {
	gw, hop := campus(t, nil)
	hop.DataStarted = make(chan struct{}, 1)
	c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
	c.SendRaw(hdr("doomed") + strings.Repeat("body line\r\n", 2000))
	waitDataStarted(t, hop)
	gw.Kill()
	r := c.ReadTimeout(5 * time.Second)
	if r.Code == 250 {
		t.Fatalf("client got 250 from a killed gateway")
	}
	// The next hop notices the broken connection and discards the message.
	waitAborted(t, hop, 1)
	if len(hop.Messages()) != 0 {
		t.Errorf("next hop holds %d messages, want 0", len(hop.Messages()))
	}
}

// TestSIGTERMLetsDataFinish: SIGTERM during a slow DATA; that message
// completes with 250 and reaches the next hop, an idle session is told 421,
// new connections are refused, and the process exits.
func TestSIGTERMLetsDataFinish(t *testing.T) {
	gw, hop, idle, c := sigtermInFlight(t)
	gw.WaitLog("shutting down", 10*time.Second)
	if r := idle.Read(); !strings.HasPrefix(r.String(), "421") {
		t.Errorf("idle session at shutdown: %v, want 421", r)
	}
	c.SendRaw("second half\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("message in flight at SIGTERM: %v, want 250", r)
	}
	if err := gw.Wait(15 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Data, []byte("second half")) {
		t.Fatalf("next hop has %d messages", len(msgs))
	}
}

// TestDefaultsDeliverToMaildir: `sekisho serve` with no configuration takes
// mail for localhost on 127.0.0.1:2525 into ./var/mail, fsynced before 250.
func TestDefaultsDeliverToMaildir(t *testing.T) {
	needDefaultsPort(t)
	dir := t.TempDir()
	harness.StartArgs(t, dir, "serve")
	// The sender is local: on the embedded defaults the domain check looks
	// senders up in the system's DNS, and example.org is a reserved name.
	if err := smtp.SendMail("127.0.0.1:2525", nil, "you@localhost", []string{"alice@localhost"}, []byte(sampleMessage)); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "var", "mail", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("./var/mail/new has %d files, want 1", len(files))
	}
	data, _ := os.ReadFile(files[0])
	// Our trace fields on top, in the order RFC 7208 §9.1 and RFC 8601 §5
	// ask: the check results above the Received field they belong to, the
	// one Authentication-Results field first (spf, dkim, dmarc).
	spf, ar, rcv := bytes.Index(data, []byte("Received-SPF: ")), bytes.Index(data, []byte("Authentication-Results: ")), bytes.Index(data, []byte("Received: from "))
	if !bytes.HasSuffix(data, []byte(sampleMessage)) || ar != 0 || spf < ar || rcv < spf || !bytes.Contains(data, []byte("; dkim=none; dmarc=")) {
		t.Errorf("maildir file (want Authentication-Results with spf, dkim and dmarc, Received-SPF, Received, then the message):\n%s", data)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "var", "mail", "tmp", "*")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
}

// TestCheckConfigNamesFileAndLine: a typo'd key is an error with file:line
// that names the section and the key meant; so is a value of the wrong
// kind, in the configuration's words.
func TestCheckConfigNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sekisho.yaml")
	os.WriteFile(path, []byte("hostname: mx.campus.test\nlisten:\n  smtp: \"127.0.0.1:2525\"\nlimits:\n  max_recipents: 10\n"), 0o600)
	out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("check-config accepted a typo:\n%s", out)
	}
	if want := path + `:5: unknown key "max_recipents" in limits (did you mean "max_recipients"?)`; !strings.Contains(string(out), want) {
		t.Errorf("check-config said %q, want it to contain %q", out, want)
	}
	os.WriteFile(path, []byte("hostname: mx.campus.test\nchecks:\n  greylist:\n    delay: 5\n"), 0o600)
	out, err = exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
	if want := path + ":4: checks.greylist.delay: want a duration like 5m, got 5"; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("check-config said %q, want it to contain %q", out, want)
	}
	// And a valid file passes, printing the effective settings.
	os.WriteFile(path, []byte("hostname: mx.campus.test\nlocal_domains: [campus.test]\nroutes: [{domains: [campus.test], next_hops: [\"smtp://10.0.1.5:25\"]}]\n"), 0o600)
	out, err = exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "max_connections: 2000") {
		t.Errorf("valid config: %v\n%s", err, out)
	}
}

// TestConcurrentSessions: many clients at once all get through (the race
// detector watches the shared state).
func TestConcurrentSessions(t *testing.T) {
	gw, hop := campus(t, func(s *site) { s.limits = "max_connections_per_ip: 50" })
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- smtp.SendMail(gw.SMTP, nil, "bob@example.org", []string{fmt.Sprintf("u%d@campus.test", i)}, []byte(sampleMessage))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(hop.Messages()); n != 20 {
		t.Errorf("next hop has %d messages, want 20", n)
	}
}

// waitAborted waits until the next hop has seen n abandoned DATA transfers.
// The next hop notices a dropped connection on its own time; its counter is
// the only signal, so this polls it.
func waitAborted(t *testing.T, hop *harness.NextHop, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for hop.Aborted() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if hop.Aborted() != n {
		t.Errorf("next hop saw %d abandoned transfers, want %d", hop.Aborted(), n)
	}
}

// TestClientHangupMidData: the client disappears in the middle of DATA; the
// next hop's transaction is abandoned and it holds nothing.
func TestClientHangupMidData(t *testing.T) {
	gw, hop := campus(t, nil)
	hop.DataStarted = make(chan struct{}, 1)
	c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
	c.SendRaw(hdr("cut") + strings.Repeat("body line\r\n", 1000))
	waitDataStarted(t, hop)
	c.Close()
	waitAborted(t, hop, 1)
	if len(hop.Messages()) != 0 {
		t.Error("next hop kept a message whose client hung up")
	}
	gw.WaitLog("client went away during DATA", 10*time.Second)
}

// TestShutdownGraceExpires: a DATA that stalls past shutdown_grace is cut off
// with 421; the client never got 250, and the next hop discarded the partial
// message.
func TestShutdownGraceExpires(t *testing.T) {
	hop := harness.StartNextHop(t, false)
	hop.DataStarted = make(chan struct{}, 1)
	s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)}}
	cfg := strings.Replace(s.yaml(t), "shutdown_grace: 20s", "shutdown_grace: 1s", 1)
	gw := harness.Start(t, cfg)
	c := dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
	c.SendRaw(hdr("stalled") + strings.Repeat("body line\r\n", 1000))
	waitDataStarted(t, hop)
	gw.Signal(syscall.SIGTERM)
	if r := c.ReadTimeout(15 * time.Second); !strings.HasPrefix(r.String(), "421") {
		t.Errorf("stalled DATA at the end of the grace period: %v, want 421", r)
	}
	if err := gw.Wait(15 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
	waitAborted(t, hop, 1)
	if len(hop.Messages()) != 0 {
		t.Error("next hop kept a message that was never acknowledged")
	}
}

// TestLMTPNextHop: a route to an LMTP server (RFC 2033) delivers; a second
// recipient in the same transaction gets 452 4.5.3 (LMTP answers DATA per
// recipient, the SMTP client takes one answer), and the next hop's refusal
// at DATA reaches the client in class.
func TestLMTPNextHop(t *testing.T) {
	lmtp := harness.StartNextHop(t, true)
	lmtp.OnData = func(m harness.Message) error {
		if m.To[0] == "full@campus.test" {
			return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	}
	gw := harness.Start(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "lmtp://"+lmtp.Addr)}}.yaml(t))
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<carol@campus.test>", "452 4.5.3")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("via lmtp") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<full@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("to a full mailbox") + "body\r\n.\r\n")
	if r := c.Read(); !strings.HasPrefix(r.String(), "452 4.2.2") {
		t.Errorf("full mailbox: %v, want the next hop's 452 4.2.2", r)
	}
	msgs := lmtp.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "alice@campus.test" {
		t.Fatalf("LMTP next hop holds %+v", msgs)
	}
}

// TestChunking: a message sent with BDAT (RFC 3030) is relayed like one
// sent with DATA — to the raw next hop, which offers no CHUNKING, as DATA
// with the leading dot stuffed — and a bare LF inside a chunk is refused the
// same way.
func TestChunking(t *testing.T) {
	forEachHop(t, func(t *testing.T, hop *wireHop) {
		gw := campusVia(t, hop.addr)
		c := harness.DialFrom(t, outside, gw.SMTP)
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		body := hdr("chunked") + ".a line with a leading dot\r\nhello\r\n"
		c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("BDAT: %v", r)
		}
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		bad := hdr("chunked bare") + "bare\nlf\r\n"
		c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(bad), bad))
		if r := c.Read(); !strings.HasPrefix(r.String(), "550 5.6.0") {
			t.Errorf("bare LF in a chunk: %v, want 550 5.6.0", r)
		}
		c.Expect("NOOP", "250")
		msgs := hop.received()
		if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0]), "\r\n"+hop.wire(body)) {
			t.Fatalf("next hop holds %d messages, want one ending with\n%q\ngot %q", len(msgs), hop.wire(body), msgs)
		}
	})
}

// TestTotalConnectionLimit: past max_connections every new client gets
// 421 4.7.0, whatever its address, and the sessions already open go on.
func TestTotalConnectionLimit(t *testing.T) {
	gw, _ := campus(t, func(s *site) { s.limits = "max_connections: 2" })
	a := harness.DialFrom(t, "127.0.0.3", gw.SMTP)
	b := harness.DialFrom(t, "127.0.0.4", gw.SMTP)
	excess := harness.DialNoBanner(t, "127.0.0.5", gw.SMTP)
	if r := excess.Read(); !strings.HasPrefix(r.String(), "421 4.7.0") {
		t.Errorf("third connection: %v, want 421 4.7.0", r)
	}
	a.Expect("EHLO a.example", "250")
	b.Expect("EHLO b.example", "250")
	a.Expect("QUIT", "221")
	// A freed place is taken again: the count went down when a left. The
	// server notices the close on its own time, so retry briefly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := harness.DialNoBanner(t, "127.0.0.5", gw.SMTP)
		r := c.Read()
		c.Close()
		if r.Code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place freed after a session ended: %v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
