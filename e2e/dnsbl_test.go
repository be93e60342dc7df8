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

// TestDNSBL: the gateway asks the lists of checks.dnsbl about each outside
// client (the test DNS server is its resolver) and gives its verdict at the
// first RCPT:
//
//	127.0.0.2  listed by bl.test (TXT)              554 5.7.1 naming the list and the TXT
//	127.0.0.3  quota.test answers 127.255.255.254   not a listing: 250, warning logged
//	127.0.0.4  slow.test never answers              not listed: 250 within the timeout
//	127.0.0.5  on no list                           250
//	127.0.0.1  trusted, also listed                 never looked up: 250
func TestDNSBL(t *testing.T) {
	s := testdns.Start(t)
	campusDNS(s)
	for _, z := range []string{"bl.test.", "quota.test.", "slow.test."} {
		s.AddZone(z, 60)
	}
	s.Add(
		"2.0.0.127.bl.test. 300 IN A 127.0.0.2",
		`2.0.0.127.bl.test. 300 IN TXT "Listed: see https://bl.test/lookup?ip=127.0.0.2"`,
		"1.0.0.127.bl.test. 300 IN A 127.0.0.2",
		"3.0.0.127.quota.test. 300 IN A 127.255.255.254",
		"4.0.0.127.slow.test. 300 IN A 127.0.0.2",
	)
	s.SetBehavior("4.0.0.127.slow.test.", testdns.AnyType, testdns.Silent)

	const timeout = 2 * time.Second
	gw, hop := campus(t, func(st *site) {
		st.extra = dnsExtra(s)
		st.checks = fmt.Sprintf("dnsbl: {zones: [\"bl.test=127.0.0.2..127.0.0.11\", quota.test, slow.test], timeout: %s}", timeout)
	})

	t.Run("listed", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.2", gw.SMTP)
		c.Expect("EHLO listed.example.net", "250")
		c.Expect("MAIL FROM:<spam@spammer.example.net>", "250")
		r := c.Expect("RCPT TO:<alice@campus.test>", "554 5.7.1")
		for _, want := range []string{"[127.0.0.2]", "bl.test", "Listed: see https://bl.test/lookup?ip=127.0.0.2"} {
			if !strings.Contains(r.Text, want) {
				t.Errorf("reply %q lacks %q", r, want)
			}
		}
		// Every recipient of the connection gets the same answer, without
		// asking again; postmaster stays reachable (RFC 5321 §4.5.1).
		c.Expect("RCPT TO:<carol@campus.test>", "554 5.7.1")
		c.Expect("RCPT TO:<postmaster@campus.test>", "250")
		if n := s.Queries("2.0.0.127.bl.test.", dns.TypeA, testdns.AnyTransport); n != 1 {
			t.Errorf("bl.test asked %d times about 127.0.0.2, want 1", n)
		}
		line := gw.WaitLog("to=carol@campus.test", 5*time.Second)
		for _, want := range []string{"from=spam@spammer.example.net", "outcome=rejected", "dnsbl: 127.0.0.2 score 1, threshold 1", "bl.test: listed: 127.0.0.2"} {
			if !strings.Contains(line, want) {
				t.Errorf("decision log line lacks %q:\n%s", want, line)
			}
		}
	})

	t.Run("refused by the list is not a listing", func(t *testing.T) {
		sendFrom(t, gw, "127.0.0.3", "quota")
		gw.WaitLog("DNSBL refuses our queries", 5*time.Second)
		line := gw.WaitLog("zone=quota.test", 5*time.Second)
		if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "127.255.255.254") {
			t.Errorf("refusal not logged as a warning with the answer:\n%s", line)
		}
	})

	t.Run("a list that times out does not block mail", func(t *testing.T) {
		start := time.Now()
		sendFrom(t, gw, "127.0.0.4", "slow")
		if took := time.Since(start); took > timeout+2*time.Second {
			t.Errorf("the session took %v with a silent list, want ≤ the %v timeout + 2s", took, timeout)
		}
		if n := s.Queries("4.0.0.127.slow.test.", dns.TypeA, testdns.AnyTransport); n == 0 {
			t.Error("slow.test was never asked")
		}
		gw.WaitLog("DNSBL lookup could not tell: client taken as not listed", 5*time.Second)
	})

	t.Run("unlisted", func(t *testing.T) {
		sendFrom(t, gw, "127.0.0.5", "clean")
	})

	t.Run("trusted client is never looked up", func(t *testing.T) {
		sendFrom(t, gw, "127.0.0.1", "trusted")
		if n := s.Queries("1.0.0.127.bl.test.", testdns.AnyType, testdns.AnyTransport); n != 0 {
			t.Errorf("bl.test asked %d times about the trusted client", n)
		}
	})

	var subjects []string
	for _, m := range hop.Messages() {
		for _, l := range strings.Split(string(m.Data), "\r\n") {
			if strings.HasPrefix(l, "Subject: ") {
				subjects = append(subjects, strings.TrimPrefix(l, "Subject: "))
			}
		}
	}
	if got := strings.Join(subjects, ","); got != "quota,slow,clean,trusted" {
		t.Errorf("next hop got %q, want quota,slow,clean,trusted", got)
	}
}

// sendFrom sends one message to alice@campus.test from src and expects it
// accepted.
func sendFrom(t *testing.T, gw *harness.Gateway, src, subject string) {
	t.Helper()
	c := harness.DialFrom(t, src, gw.SMTP)
	c.Expect("EHLO client.example.net", "250")
	c.Expect("MAIL FROM:<bob@example.net>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr(subject) + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA from %s: %v", src, r)
	}
	c.Expect("QUIT", "221")
}
