package e2e

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
)

// startWithLMTP starts a gateway for s with an lmtp listener as well (site
// writes the smtp one only) and returns it with the LMTP address, once the
// process has said that the lmtp listener listens.
func startWithLMTP(t *testing.T, s site) (*harness.Gateway, string) {
	t.Helper()
	addr := testenv.FreePort(t)
	y := strings.Replace(s.yaml(t), "listen:\n", fmt.Sprintf("listen:\n  lmtp: %q\n", addr), 1)
	gw := harness.Start(t, y)
	gw.WaitLog("msg=listening listener=lmtp addr="+addr, 10*time.Second)
	return gw, addr
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string { return testenv.FreePort(t) }

// campusMsg is a conforming message from alice@campus.test.
func campusMsg(subject, body string) string {
	return "From: Alice <alice@campus.test>\r\nTo: friends\r\n" + headerDate + "Subject: " + subject + "\r\n\r\n" + body
}

// lmtpData sends DATA and the message (dot-terminated here) and reads one
// reply per accepted recipient (RFC 2033 §4.2), failing on a short read.
func lmtpData(t *testing.T, c *harness.Client, msg string, rcpts int) []harness.Reply {
	t.Helper()
	c.Expect("DATA", "354")
	c.SendRaw(msg + ".\r\n")
	replies := make([]harness.Reply, rcpts)
	for i := range replies {
		replies[i] = c.Read()
		if replies[i].Code == 0 {
			t.Fatalf("reply %d of %d after the data: %v\n%s", i+1, rcpts, replies[i], c.Transcript())
		}
	}
	return replies
}

// expectReplies compares per-recipient replies with wanted prefixes
// ("250 2.0.0", "451 4.4.1"), in RCPT order.
func expectReplies(t *testing.T, got []harness.Reply, rcpts, want []string) {
	t.Helper()
	for i := range want {
		if !strings.HasPrefix(got[i].String(), want[i]) {
			t.Errorf("recipient %s: got %q, want %q", rcpts[i], got[i].String(), want[i])
		}
	}
}

// recipientsOf is the recipients of every message a next hop accepted.
func recipientsOf(h *harness.NextHop) []string {
	var out []string
	for _, m := range h.Messages() {
		out = append(out, m.To...)
	}
	return out
}

// TestLMTPPerRecipientReplies: a campus server hands one message for five
// recipients of five destinations to the LMTP listener and gets one reply
// per recipient, in RCPT order: 250 for the campus next hop and for the
// remote domain's MX (found through DNS), the next hop's own 4xx for the
// one refusing at RCPT and for the one refusing the data, 451 4.4.1 for
// the unreachable one. Each healthy next hop gets exactly one copy. The
// outbound checks apply (recipient domain existence with the typo
// suggestion, the header check); greylisting, DNSBL and SPF, all switched
// on and all of which would refuse this mail, do not (LMTP is trusted).
// HELO and EHLO are refused, and a client outside trusted_networks is
// refused at connect.
func TestLMTPPerRecipientReplies(t *testing.T) {
	campusHop := harness.StartNextHop(t, false)
	remoteMX := harness.StartNextHop(t, false)
	busy := harness.StartNextHop(t, false)
	busy.OnRcpt = func(string) error {
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
	}
	full := harness.StartNextHop(t, false)
	full.OnData = func(harness.Message) error {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "disk full"}
	}
	_, mxPort, _ := net.SplitHostPort(remoteMX.Addr)

	dns := testdns.Start(t)
	campusDNS(dns)
	dns.AddZone("net.", 60)
	dns.AddZone("com.", 60)
	dns.AddZone("bl.test.", 60)
	dns.Add(
		"campus.test. 300 IN TXT \"v=spf1 -all\"", // SPF would fail every sender of campus.test
		"remote.net. 300 IN MX 10 mx.remote.net.",
		"mx.remote.net. 300 IN A 127.0.0.1",
		"busy.net. 300 IN MX 10 mx.remote.net.",
		"gone.net. 300 IN MX 10 mx.remote.net.",
		"full.net. 300 IN MX 10 mx.remote.net.",
		"gmail.com. 300 IN MX 5 gmail-smtp-in.l.google.com.",
		"1.0.0.127.bl.test. 300 IN A 127.0.0.2", // the client is listed
	)
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+campusHop.Addr),
			routeTo([]string{"busy.net"}, "smtp://"+busy.Addr),
			routeTo([]string{"gone.net"}, "smtp://"+closedPort(t)),
			routeTo([]string{"full.net"}, "smtp://"+full.Addr),
			routeTo([]string{"*"}, "mx"),
		},
		checks: "domain: {nxdomain: tempfail}\n" +
			"dnsbl: {zones: [\"bl.test=127.0.0.2..127.0.0.11\"]}\n" +
			"greylist: {delay: 5m}\n" +
			"spf: {fail: reject}",
		extra: dnsExtra(dns) + fmt.Sprintf("next_hop: {mx_port: %s, connect_timeout: 5s}\n", mxPort),
	}
	gw, lmtp := startWithLMTP(t, s)

	c := harness.Dial(t, lmtp) // 127.0.0.1: trusted
	c.Expect("HELO mail.campus.test", "500 5.5.1")
	c.Expect("EHLO mail.campus.test", "500 5.5.1")
	c.Expect("LHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	rcpts := []string{"alice@campus.test", "friend@remote.net", "bob@busy.net", "carol@gone.net", "dan@full.net"}
	c.Expect("RCPT TO:<"+rcpts[0]+">", "250")
	c.Expect("RCPT TO:<"+rcpts[1]+">", "250")
	// The outbound domain check: refused at RCPT, and no reply after the data.
	c.Expect("RCPT TO:<someone@nx.net>", "450 4.1.2")
	r := c.Expect("RCPT TO:<someone@gmial.com>", "550 5.1.2")
	if !strings.Contains(r.Text, "did you mean gmail.com?") {
		t.Errorf("typo of gmail.com: %v, want the suggestion", r)
	}
	for _, to := range rcpts[2:] {
		c.Expect("RCPT TO:<"+to+">", "250")
	}
	start := time.Now()
	got := lmtpData(t, c, campusMsg("five destinations", "hello\r\n"), len(rcpts))
	t.Logf("DATA answered for %d recipients in %v", len(rcpts), time.Since(start))
	expectReplies(t, got, rcpts, []string{"250 2.0.0", "250 2.0.0", "450 4.2.1", "451 4.4.1", "452 4.3.1"})

	if to := recipientsOf(campusHop); strings.Join(to, ",") != "alice@campus.test" {
		t.Errorf("campus next hop got %v, want one copy for alice@campus.test", to)
	}
	if to := recipientsOf(remoteMX); strings.Join(to, ",") != "friend@remote.net" {
		t.Errorf("remote MX got %v, want one copy for friend@remote.net", to)
	}
	if n := len(busy.Messages()) + len(full.Messages()); n != 0 {
		t.Errorf("the refusing next hops recorded %d messages", n)
	}
	gw.WaitLog("to=carol@gone.net", 5*time.Second)

	// The header check: a message without Date is refused for every
	// recipient, and nothing goes out.
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<friend@remote.net>", "250")
	got = lmtpData(t, c, "From: Alice <alice@campus.test>\r\nSubject: no date\r\n\r\nbody\r\n", 2)
	for i, r := range got {
		if !strings.HasPrefix(r.String(), "550 5.6.0") || !strings.Contains(r.Text, "date-count") {
			t.Errorf("no Date, recipient %d: %v, want 550 5.6.0 naming date-count", i+1, r)
		}
	}
	if n := len(campusHop.Messages()) + len(remoteMX.Messages()); n != 2 {
		t.Errorf("next hops hold %d messages after the refused one, want still 2", n)
	}
	c.Expect("QUIT", "221")

	// Outside trusted_networks: refused at connect, connection closed.
	out := harness.DialNoBanner(t, outside, lmtp)
	if r := out.Read(); !strings.HasPrefix(r.String(), "554 5.7.1") {
		t.Errorf("outside client: %v, want 554 5.7.1 at connect", r)
	}
	if !out.Closed(10 * time.Second) {
		t.Error("outside client: connection not closed after 554")
	}
}

// TestLMTPDeadDestinationHoldsNoOther: three destinations whose next hop
// accepts the connection and never answers, between two healthy ones. With
// a call-ahead budget of 2 s, the healthy recipients still get 250, the dead
// ones 451 4.4.1, and the whole answer to the data comes within one budget
// plus slack: the dead destinations were tried side by side (the holding
// next hop had all three connections open before the first was given up),
// not one after the other.
func TestLMTPDeadDestinationHoldsNoOther(t *testing.T) {
	const budget = 2 * time.Second
	campusHop := harness.StartNextHop(t, false)
	remoteMX := harness.StartNextHop(t, false)
	hold := harness.StartHoldHop(t, "", false)
	_, mxPort, _ := net.SplitHostPort(remoteMX.Addr)
	dns := testdns.Start(t)
	campusDNS(dns)
	dns.AddZone("net.", 60)
	dns.Add("remote.net. 300 IN MX 10 mx.remote.net.", "mx.remote.net. 300 IN A 127.0.0.1")
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+campusHop.Addr),
			routeTo([]string{"hold1.net"}, "smtp://"+hold.Addr),
			routeTo([]string{"hold2.net"}, "smtp://"+hold.Addr),
			routeTo([]string{"hold3.net"}, "smtp://"+hold.Addr),
			routeTo([]string{"*"}, "mx"),
		},
		extra: dnsExtra(dns) + fmt.Sprintf("next_hop: {mx_port: %s, call_ahead_timeout: %s}\n", mxPort, budget),
	}
	_, lmtp := startWithLMTP(t, s)

	c := harness.Dial(t, lmtp)
	c.Expect("LHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	rcpts := []string{"alice@campus.test", "x@hold1.net", "friend@remote.net", "y@hold2.net", "z@hold3.net"}
	for _, to := range rcpts {
		c.Expect("RCPT TO:<"+to+">", "250")
	}
	start := time.Now()
	got := lmtpData(t, c, campusMsg("one dead destination", "hello\r\n"), len(rcpts))
	took := time.Since(start)
	t.Logf("DATA answered in %v (budget %v per destination)", took, budget)
	expectReplies(t, got, rcpts, []string{"250 2.0.0", "451 4.4.1", "250 2.0.0", "451 4.4.1", "451 4.4.1"})
	if limit := budget + 8*time.Second; took > limit {
		t.Errorf("the answer to the data took %v, want ≤ %v (one budget, not one per dead destination)", took, limit)
	}
	if to := recipientsOf(campusHop); strings.Join(to, ",") != "alice@campus.test" {
		t.Errorf("campus next hop got %v", to)
	}
	if to := recipientsOf(remoteMX); strings.Join(to, ",") != "friend@remote.net" {
		t.Errorf("remote MX got %v", to)
	}
	if !hold.WaitClosed(3, 10*time.Second) {
		t.Fatalf("holding next hop: %d connections accepted, %d closed; want 3 and 3", len(hold.Accepted()), len(hold.Closed()))
	}
	accepted, closed := hold.Accepted(), hold.Closed()
	if len(accepted) != 3 {
		t.Fatalf("holding next hop accepted %d connections, want 3 (one per dead destination)", len(accepted))
	}
	for _, a := range accepted {
		if a.After(closed[0]) {
			t.Errorf("a dead destination was tried only after another was given up (accepted %v, first closed %v): not in parallel", a.Sub(start), closed[0].Sub(start))
		}
	}
}

// TestLMTPGoSMTPClient: go-smtp's own LMTP client (the kind of client a
// campus MTA is) gets its per-recipient statuses: one 250 and one 5xx of
// the next hop, the message delivered once.
func TestLMTPGoSMTPClient(t *testing.T) {
	campusHop := harness.StartNextHop(t, false)
	campusHop.OnRcpt = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	other := harness.StartNextHop(t, false)
	s := site{routes: []string{
		routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+campusHop.Addr),
		routeTo([]string{"*"}, "smtp://"+other.Addr),
	}}
	_, lmtp := startWithLMTP(t, s)

	conn, err := net.DialTimeout("tcp", lmtp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := smtp.NewClientLMTP(conn)
	defer cl.Close()
	// go-smtp's client waits 5 minutes for each reply (12 for the replies
	// after the data): a reply the gateway withholds would hold the test
	// that long. Bounded, it fails the test instead.
	cl.CommandTimeout, cl.SubmissionTimeout = 30*time.Second, 30*time.Second
	if err := cl.Hello("mail.campus.test"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mail("alice@campus.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"nobody@campus.test", "friend@example.net"} {
		if err := cl.Rcpt(to, nil); err != nil {
			t.Fatalf("RCPT %s: %v", to, err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, campusMsg("go-smtp client", "hello\r\n"))
	ok, err := w.CloseWithLMTPResponse()
	var failed smtp.LMTPDataError
	if err != nil && !errors.As(err, &failed) {
		t.Fatalf("data: %v", err)
	}
	if _, seen := ok["friend@example.net"]; !seen || failed["friend@example.net"] != nil {
		t.Errorf("friend@example.net: %v, want success", failed["friend@example.net"])
	}
	if st := failed["nobody@campus.test"]; st == nil || st.Code != 550 || st.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("nobody@campus.test: %v, want 550 5.1.1", st)
	}
	if to := recipientsOf(other); strings.Join(to, ",") != "friend@example.net" {
		t.Errorf("next hop got %v", to)
	}
	if n := len(campusHop.Messages()); n != 0 {
		t.Errorf("campus next hop recorded %d messages", n)
	}
	// The work is done: QUIT, answered 221, and the session ends here.
	if err := cl.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

// TestLMTPDuplicateRecipient: a recipient given twice in one LMTP
// transaction is delivered once, and both RCPTs get the delivery's answer
// after the data (RFC 2033 §4.2: one reply per accepted RCPT), also towards
// an LMTP next hop, which takes one recipient per transaction. The answer
// is the same whatever it is: a destination that refuses the recipient
// (5xx at RCPT), that refuses the message (5xx at the data), or that is down
// (451 4.4.1) gives the duplicate that answer, never 250.
func TestLMTPDuplicateRecipient(t *testing.T) {
	refuseBob := func(h *harness.NextHop) {
		h.OnRcpt = func(to string) error {
			if strings.HasPrefix(to, "bob@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	}
	refuseData := func(h *harness.NextHop) {
		h.OnData = func(harness.Message) error {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content refused"}
		}
	}
	for _, tc := range []struct {
		name      string
		lmtpHop   bool
		down      bool
		configure func(*harness.NextHop)
		want      [3]string // bob, carol, bob again
		delivered map[string]int
	}{
		{"smtp next hop", false, false, nil, [3]string{"250 2.0.0", "250 2.0.0", "250 2.0.0"}, map[string]int{"bob@campus.test": 1, "carol@campus.test": 1}},
		{"lmtp next hop", true, false, nil, [3]string{"250 2.0.0", "250 2.0.0", "250 2.0.0"}, map[string]int{"bob@campus.test": 1, "carol@campus.test": 1}},
		{"smtp next hop refusing bob", false, false, refuseBob, [3]string{"550 5.1.1", "250 2.0.0", "550 5.1.1"}, map[string]int{"carol@campus.test": 1}},
		{"lmtp next hop refusing bob", true, false, refuseBob, [3]string{"550 5.1.1", "250 2.0.0", "550 5.1.1"}, map[string]int{"carol@campus.test": 1}},
		{"smtp next hop refusing the data", false, false, refuseData, [3]string{"554 5.6.0", "554 5.6.0", "554 5.6.0"}, map[string]int{}},
		{"next hop down", false, true, nil, [3]string{"451 4.4.1", "451 4.4.1", "451 4.4.1"}, map[string]int{}},
	} {
		hop := harness.StartNextHop(t, tc.lmtpHop)
		if tc.configure != nil {
			tc.configure(hop)
		}
		scheme := "smtp://"
		if tc.lmtpHop {
			scheme = "lmtp://"
		}
		addr := hop.Addr
		if tc.down {
			addr = closedPort(t)
		}
		s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, scheme+addr)}}
		_, lmtp := startWithLMTP(t, s)
		c := harness.Dial(t, lmtp)
		c.Expect("LHLO mail.campus.test", "250")
		c.Expect("MAIL FROM:<alice@campus.test>", "250 2.1.0")
		c.Expect("RCPT TO:<bob@campus.test>", "250 2.1.5")
		c.Expect("RCPT TO:<carol@campus.test>", "250 2.1.5")
		c.Expect("RCPT TO:<bob@campus.test>", "250 2.1.5")
		got := lmtpData(t, c, campusMsg("twice", "hello\r\n"), 3)
		expectReplies(t, got, []string{tc.name + ": bob", tc.name + ": carol", tc.name + ": bob again"}, tc.want[:])
		if got[0] != got[2] {
			t.Errorf("%s: the duplicate got %q, the first occurrence %q", tc.name, got[2].String(), got[0].String())
		}
		c.Expect("QUIT", "221")
		n := map[string]int{}
		for _, m := range hop.Messages() {
			for _, to := range m.To {
				n[to]++
			}
		}
		if fmt.Sprint(n) != fmt.Sprint(tc.delivered) {
			t.Errorf("%s: deliveries per recipient %v, want %v", tc.name, n, tc.delivered)
		}
	}
}

// TestLMTPReceived: the Received field names the protocol the client spoke
// (RFC 3848): through the LMTP listener LMTP in clear, LMTPS after STARTTLS;
// through the smtp listener SMTP after HELO, ESMTP after EHLO, ESMTPS after
// STARTTLS. swaks speaks to each, and the field is read from what the next
// hop got.
func TestLMTPReceived(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir(), "mx.campus.test")
	hop := harness.StartNextHop(t, false)
	s := site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		extra:  fmt.Sprintf("tls: {cert: %q, key: %q}\n", cert, key),
	}
	gw, lmtp := startWithLMTP(t, s)
	swaks := testenv.Command(t, "swaks", "swaks")
	for i, tc := range []struct {
		addr string
		args []string
		with string
	}{
		{lmtp, []string{"--protocol", "LMTP"}, "with LMTP id "},
		{lmtp, []string{"--protocol", "LMTP", "--tls"}, "with LMTPS id "},
		// The smtp listener: HELO in clear is SMTP (RFC 5321 §4.4), EHLO
		// ESMTP, after STARTTLS ESMTPS (RFC 3848).
		{gw.SMTP, []string{"--protocol", "SMTP"}, "with SMTP id "},
		{gw.SMTP, []string{"--protocol", "ESMTP"}, "with ESMTP id "},
		{gw.SMTP, []string{"--protocol", "ESMTP", "--tls"}, "with ESMTPS id "},
	} {
		host, port, _ := net.SplitHostPort(tc.addr)
		to := fmt.Sprintf("rcpt%d@campus.test", i)
		args := append([]string{"--server", host, "--port", port, "--helo", "mail.campus.test",
			"--from", "alice@campus.test", "--to", to, "--header", "Subject: lmtp"}, tc.args...)
		if out, err := exec.Command(swaks, args...).CombinedOutput(); err != nil {
			t.Fatalf("swaks %v: %v\n%s", tc.args, err, out)
		}
		var data string
		for _, m := range hop.Messages() {
			if len(m.To) == 1 && m.To[0] == to {
				data = string(m.Data)
			}
		}
		rcv, _, _ := strings.Cut(data, "\r\n\tfor <")
		if !strings.HasPrefix(data, "Received: from mail.campus.test ([127.0.0.1])") || !strings.Contains(rcv, "(sekisho) "+tc.with) {
			t.Errorf("swaks %v: the next hop got\n%s\nwant a Received field %q", tc.args, data, tc.with)
		}
	}
}
