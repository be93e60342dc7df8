package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// spfDNS serves the SPF scenarios. Every sender domain also has an MX, so
// that the domain-existence check passes when a test turns it on.
// spfsilent.net answers everything but TXT: its SPF lookup times out.
func spfDNS(t *testing.T) *testdns.Server {
	s := testdns.Start(t)
	s.AddZone("net.", 60)
	for _, d := range []string{"spffail", "spfsoft", "spfpass", "spfsilent"} {
		s.Add(fmt.Sprintf("%s.net. 300 IN MX 10 mx1.%s.net.", d, d), fmt.Sprintf("mx1.%s.net. 300 IN A 192.0.2.25", d))
	}
	s.Add(
		`spffail.net. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`spfsoft.net. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"`,
		`spfpass.net. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"`,
		`spfsilent.net. 300 IN TXT "v=spf1 -all"`,
	)
	s.SetBehavior("spfsilent.net.", dns.TypeTXT, testdns.Silent)
	return s
}

// spfGateway runs the campus gateway with the SPF check configured by
// spfYAML, on the given DNS server.
func spfGateway(t *testing.T, s *testdns.Server, spfYAML string) (*harness.Gateway, *harness.NextHop) {
	t.Helper()
	return campus(t, func(st *site) {
		st.extra = fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 1}\n", s.Addr())
		st.checks = "spf: " + spfYAML + "\ngreylist: {off: true}"
	})
}

// spfSend sends one message from src with the given sender and recipients;
// every RCPT must get want. It returns the next hop's copy when the message
// was accepted, nil otherwise.
func spfSend(t *testing.T, gw *harness.Gateway, hop *harness.NextHop, src, from, want string, rcpts ...string) *harness.Message {
	t.Helper()
	before := len(hop.Messages())
	c := harness.DialFrom(t, src, gw.SMTP)
	defer c.Close()
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<"+from+">", "250")
	for _, r := range rcpts {
		c.Expect("RCPT TO:<"+r+">", want)
	}
	if !strings.HasPrefix(want, "250") {
		c.Expect("QUIT", "221")
		return nil
	}
	c.Expect("DATA", "354")
	c.SendRaw(hdr("spf") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	c.Expect("QUIT", "221")
	msgs := hop.Messages()
	if len(msgs) != before+1 {
		t.Fatalf("next hop has %d messages, want %d", len(msgs), before+1)
	}
	return &msgs[len(msgs)-1]
}

// spfFieldsOf returns the unfolded values of a header field in the header
// section of a message.
func spfFieldsOf(m *harness.Message, name string) []string {
	head, _, _ := strings.Cut(string(m.Data), "\r\n\r\n")
	head = strings.ReplaceAll(head, "\r\n\t", " ")
	var out []string
	for _, line := range strings.Split(head, "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestSPFEndToEnd: an outside client (127.0.0.2) sends from domains with
// each SPF outcome; the default config rejects a fail with 550 5.7.23, and
// tags the rest, once per message, whatever the number of recipients.
func TestSPFEndToEnd(t *testing.T) {
	s := spfDNS(t)
	gw, hop := spfGateway(t, s, "{}")

	t.Run("fail", func(t *testing.T) {
		spfSend(t, gw, hop, outside, "bob@spffail.net", "550 5.7.23", "alice@campus.test")
		gw.WaitLog("spf=fail", 5*time.Second)
	})

	t.Run("softfail", func(t *testing.T) {
		m := spfSend(t, gw, hop, outside, "bob@spfsoft.net", "250", "alice@campus.test", "carol@campus.test")
		rs := spfFieldsOf(m, "Received-SPF")
		ar := spfFieldsOf(m, "Authentication-Results")
		if len(rs) != 1 || len(ar) != 1 {
			t.Fatalf("%d Received-SPF and %d Authentication-Results, want one each:\n%s", len(rs), len(ar), m.Data)
		}
		for _, want := range []string{"softfail (mx.campus.test: ", "client-ip=127.0.0.2;", `envelope-from="bob@spfsoft.net";`,
			"helo=client.example.org;", "receiver=mx.campus.test;", "identity=mailfrom;", "mechanism=~all;"} {
			if !strings.Contains(rs[0], want) {
				t.Errorf("Received-SPF %q lacks %q", rs[0], want)
			}
		}
		if !strings.HasPrefix(ar[0], "mx.campus.test; spf=softfail ") || !strings.HasSuffix(ar[0], " smtp.mailfrom=spfsoft.net") {
			t.Errorf("Authentication-Results %q", ar[0])
		}
		// Ours come right after our Received, before the client's header.
		data := string(m.Data)
		if i, j := strings.Index(data, "Received-SPF:"), strings.Index(data, "From: Bob"); i < 0 || j < i {
			t.Errorf("headers out of place:\n%s", data)
		}
	})

	t.Run("pass", func(t *testing.T) {
		m := spfSend(t, gw, hop, outside, "bob@spfpass.net", "250", "alice@campus.test")
		rs, ar := spfFieldsOf(m, "Received-SPF"), spfFieldsOf(m, "Authentication-Results")
		if len(rs) != 1 || !strings.HasPrefix(rs[0], "pass ") || !strings.Contains(rs[0], `mechanism="ip4:127.0.0.2";`) {
			t.Errorf("Received-SPF %q", rs)
		}
		if len(ar) != 1 || !strings.Contains(ar[0], "spf=pass") || !strings.Contains(ar[0], "smtp.mailfrom=spfpass.net") {
			t.Errorf("Authentication-Results %q", ar)
		}
	})

	t.Run("temperror", func(t *testing.T) {
		start := time.Now()
		m := spfSend(t, gw, hop, outside, "bob@spfsilent.net", "250", "alice@campus.test")
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("took %v with a 500ms DNS timeout", elapsed)
		}
		rs, ar := spfFieldsOf(m, "Received-SPF"), spfFieldsOf(m, "Authentication-Results")
		if len(rs) != 1 || !strings.HasPrefix(rs[0], "temperror ") || !strings.Contains(rs[0], "problem=") {
			t.Errorf("Received-SPF %q", rs)
		}
		if len(ar) != 1 || !strings.Contains(ar[0], "spf=temperror") {
			t.Errorf("Authentication-Results %q", ar)
		}
	})

	t.Run("trusted client not checked", func(t *testing.T) {
		m := spfSend(t, gw, hop, "127.0.0.1", "bob@spffail.net", "250", "alice@campus.test")
		if rs := spfFieldsOf(m, "Received-SPF"); len(rs) != 0 {
			t.Errorf("trusted client's message tagged: %q", rs)
		}
	})
}

// TestSPFFailTagTempErrorTempfail: the other two settings. fail: tag lets
// the mail through marked fail; temperror: tempfail defers with 451 4.4.3,
// never a 5xx.
func TestSPFFailTagTempErrorTempfail(t *testing.T) {
	s := spfDNS(t)
	gw, hop := spfGateway(t, s, "{fail: tag, temperror: tempfail}")
	m := spfSend(t, gw, hop, outside, "bob@spffail.net", "250", "alice@campus.test")
	if rs := spfFieldsOf(m, "Received-SPF"); len(rs) != 1 || !strings.HasPrefix(rs[0], "fail ") {
		t.Errorf("Received-SPF %q", rs)
	}
	if ar := spfFieldsOf(m, "Authentication-Results"); len(ar) != 1 || !strings.Contains(ar[0], "spf=fail") {
		t.Errorf("Authentication-Results %q", ar)
	}
	spfSend(t, gw, hop, outside, "bob@spfsilent.net", "451 4.4.3", "alice@campus.test", "carol@campus.test")
}
