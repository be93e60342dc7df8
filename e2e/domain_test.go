package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// campusDNS adds campus.test, the gateway's DNS canary, to the test DNS
// server: the canary must resolve for DNS to count as healthy.
func campusDNS(s *testdns.Server) {
	s.AddZone("campus.test.", 60)
	s.Add("campus.test. 300 IN MX 10 mx.campus.test.", "mx.campus.test. 300 IN A 127.0.0.1")
}

// dnsExtra is the dns: section pointing the gateway at the test server,
// with campus.test as the canary.
func dnsExtra(s *testdns.Server) string {
	return fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 2, canary: campus.test}\n", s.Addr())
}

// mailDNS serves the domains of the domain-existence tests under made-up
// zones (.test names are special-use, refused before any DNS lookup):
// mx.net has MX, aonly.net only an address, nullmx.net a null MX, nx.net
// and gmial.com do not exist, servfail.net SERVFAILs, silent.net never
// answers.
func mailDNS(t *testing.T) *testdns.Server {
	s := testdns.Start(t)
	campusDNS(s)
	s.AddZone("net.", 60)
	s.AddZone("com.", 60)
	s.Add(
		"mx.net. 300 IN MX 10 mx1.mx.net.",
		"mx1.mx.net. 300 IN A 192.0.2.25",
		"aonly.net. 300 IN A 192.0.2.26",
		"nullmx.net. 300 IN MX 0 .",
		"gmail.com. 300 IN MX 5 gmail-smtp-in.l.google.com.",
		"new.net. 300 IN MX 10 mx1.mx.net.",
		"handmade.net. 300 IN MX 10 mx1.mx.net.",
	)
	s.SetBehavior("servfail.net.", testdns.AnyType, testdns.Servfail)
	s.SetBehavior("silent.net.", testdns.AnyType, testdns.Silent)
	return s
}

// domainGateway runs the campus gateway with the domain check and an
// outbound route for the trusted client, on the given DNS server.
func domainGateway(t *testing.T, s *testdns.Server, domainYAML string) (*harness.Gateway, *harness.NextHop) {
	t.Helper()
	ext := harness.StartNextHop(t, false)
	gw, _ := campus(t, func(st *site) {
		st.extra = dnsExtra(s)
		st.checks = "domain: " + domainYAML
		st.routes = append(st.routes, routeTo([]string{"*"}, "smtp://"+ext.Addr))
	})
	return gw, ext
}

// TestDomainExistence: every outcome of the domain-existence check with
// its reply, for the sender of an outside client (MAIL) and the recipients
// of a trusted client relaying out (RCPT), under nxdomain: tempfail.
func TestDomainExistence(t *testing.T) {
	s := mailDNS(t)
	gw, ext := domainGateway(t, s, "{nxdomain: tempfail}")

	senders := []struct{ domain, want string }{
		{"mx.net", "250"},
		{"aonly.net", "250"},
		{"nullmx.net", "550 5.7.27"},
		{"nx.net", "450 4.1.8"},
		{"gmial.com", "550 5.1.8 sender domain gmial.com does not exist; did you mean gmail.com?"},
		{"servfail.net", "451 4.4.3"},
		{"silent.net", "451 4.4.3"},
		{"example.invalid", "550 5.1.8"},
		{"mailhost", "550 5.1.8"},
		{"a..net", "501 5.1.7"},
	}
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.mx.net", "250")
	for _, x := range senders {
		start := time.Now()
		c.Expect("MAIL FROM:<bob@"+x.domain+">", x.want)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("MAIL FROM %s took %v, want ≤ the DNS budget (2 × 500ms) + 2s", x.domain, took)
		}
		c.Expect("RSET", "250")
	}
	c.Expect("MAIL FROM:<>", "250") // the null sender always passes
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RSET", "250")

	recipients := []struct{ domain, want string }{
		{"mx.net", "250"},
		{"aonly.net", "250"},
		{"nullmx.net", "556 5.1.10"},
		{"nx.net", "450 4.1.2"},
		{"gmial.com", "550 5.1.2 recipient domain gmial.com does not exist; did you mean gmail.com?"},
		{"servfail.net", "451 4.4.3"},
		{"example.invalid", "550 5.1.2"},
		{"localhost", "550 5.1.2"},
	}
	in := harness.DialFrom(t, "127.0.0.1", gw.SMTP)
	in.Expect("EHLO server.campus.test", "250")
	// A campus server's own sender (a bare host name, swaks' default) is not
	// judged; its recipients are.
	in.Expect("MAIL FROM:<root@lab-server>", "250")
	for _, x := range recipients {
		in.Expect("RCPT TO:<friend@"+x.domain+">", x.want)
	}
	in.Expect("DATA", "354")
	in.SendRaw(hdr("outbound") + "body\r\n.\r\n")
	if r := in.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	if m := ext.Messages(); len(m) != 1 || strings.Join(m[0].To, ",") != "friend@mx.net,friend@aonly.net" {
		t.Errorf("outbound next hop got %+v", m)
	}

	// The log names the NXDOMAIN and where it came from, for the reports.
	line := gw.WaitLog("to=friend@nx.net", 5*time.Second)
	if !strings.Contains(line, "NXDOMAIN for nx.net (MX: NXDOMAIN from "+s.Addr()) || !strings.Contains(line, "nxdomain: tempfail") {
		t.Errorf("log line does not name the NXDOMAIN and its server:\n%s", line)
	}
}

// TestDomainNXDomainReject: under nxdomain: reject an NXDOMAIN is a 550 at
// once (while the canary answers).
func TestDomainNXDomainReject(t *testing.T) {
	s := mailDNS(t)
	gw, _ := domainGateway(t, s, "{nxdomain: reject}")
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.mx.net", "250")
	c.Expect("MAIL FROM:<bob@nx.net>", "550 5.1.8 sender domain nx.net does not exist")
	in := harness.DialFrom(t, "127.0.0.1", gw.SMTP)
	in.Expect("EHLO server.campus.test", "250")
	in.Expect("MAIL FROM:<alice@campus.test>", "250")
	in.Expect("RCPT TO:<friend@nx.net>", "550 5.1.2 recipient domain nx.net does not exist")
	in.Expect("RCPT TO:<friend@mx.net>", "250")
}

// TestDomainCanaryFails: while the DNS canary (campus.test) SERVFAILs, an
// NXDOMAIN proves nothing: 451 4.4.3, never a 5xx — typo or not, tempfail
// or reject. Answers that are certain in themselves still count.
func TestDomainCanaryFails(t *testing.T) {
	s := mailDNS(t)
	// The canary fails from the start: the gateway's health prober asks it
	// at once, and a healthy answer is trusted for 10 s (lookup/dns_canary.go).
	s.SetBehavior("campus.test.", testdns.AnyType, testdns.Servfail)
	gw, _ := domainGateway(t, s, "{nxdomain: reject}")
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.mx.net", "250")
	c.Expect("MAIL FROM:<bob@nx.net>", "451 4.4.3")
	c.Expect("MAIL FROM:<bob@gmial.com>", "451 4.4.3")
	c.Expect("MAIL FROM:<bob@nullmx.net>", "550 5.7.27")
	c.Expect("MAIL FROM:<bob@mx.net>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	in := harness.DialFrom(t, "127.0.0.1", gw.SMTP)
	in.Expect("EHLO server.campus.test", "250")
	in.Expect("MAIL FROM:<alice@campus.test>", "250")
	in.Expect("RCPT TO:<friend@nx.net>", "451 4.4.3")
	in.Expect("RCPT TO:<friend@gmial.com>", "451 4.4.3")
	line := gw.WaitLog("to=friend@gmial.com", 5*time.Second)
	if !strings.Contains(line, "DNS canary failed") || !strings.Contains(line, "SERVFAIL") {
		t.Errorf("log line does not say the canary failed:\n%s", line)
	}
}
