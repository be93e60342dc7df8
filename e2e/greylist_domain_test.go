package e2e

import (
	"fmt"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// Greylisting by SPF-validated sender domain and by whole transaction
// (issue 19, docs/checks-greylist.md), through the binary with a real DNS
// server: the big sender's pool is 127.0.0.0/16 (two /24s, 127.0.0.x and
// 127.0.1.x, as a provider's pool spans networks), published in its SPF
// record; nospf.net publishes none.

// glDomainGateway runs the campus gateway with SPF on and greylisting
// (delay 1 s) with the given extra settings, on the embedded store.
func glDomainGateway(t *testing.T, settings string) (*harness.Gateway, *harness.NextHop) {
	t.Helper()
	dns := testdns.Start(t)
	dns.AddZone("net.", 60)
	dns.Add(`bigsender.net. 300 IN TXT "v=spf1 ip4:127.0.0.0/16 -all"`)
	return campus(t, func(s *site) {
		s.extra = fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 1}\n", dns.Addr())
		s.checks = "spf: {}\ngreylist: {delay: 1s, exempt: []" + settings + "}\ndomain: {off: true}\ndnsbl: {off: true}\naccount: {off: true}"
	})
}

// TestGreylistBySenderDomain: a sender with SPF pass is greylisted once,
// then its retry from another address of its SPF record — in another /24,
// with another envelope sender of the domain, as a provider's pool
// retries — passes, and so does the domain's next mail to that recipient
// from a third address. A sender without SPF pass is held per address:
// after the delay a retry from another network is a new triplet, held
// again; the retry from the first network passes. With by_sender_domain
// false, the SPF-passing sender's retry from the other network is held.
func TestGreylistBySenderDomain(t *testing.T) {
	gw, hop := glDomainGateway(t, "")

	first := glWantHeld(t, gw, "127.0.0.2", "bounce-1@bigsender.net", "alice@campus.test")
	nospfFirst := glWantHeld(t, gw, "127.0.0.2", "x@nospf.net", "alice@campus.test")

	glWaitUntil(glAfterDelay(nospfFirst, time.Second))
	c, r := glRcptAttempt(t, gw, "127.0.1.7", "bounce-2@bigsender.net", "alice@campus.test")
	if r.Code != 250 {
		t.Fatalf("SPF-pass retry from another address of the pool: %v (first attempt %v ago)\n%s", r, time.Since(first), c.Transcript())
	}
	glDeliver(t, c, "pool retry")
	if !glHasSubject(hop, "pool retry") {
		t.Fatal("the pool's retry did not reach the next hop")
	}
	glWantAccepted(t, gw, "127.0.5.9", "news@bigsender.net", "alice@campus.test", "the domain's next mail, a third address")
	gw.WaitLog("spf:bigsender.net → <alice@campus.test> passed greylisting", 5*time.Second)

	glWantHeld(t, gw, "127.0.1.7", "x@nospf.net", "alice@campus.test")
	glWantAccepted(t, gw, "127.0.0.2", "x@nospf.net", "alice@campus.test", "no SPF: the retry from the first network")

	off, _ := glDomainGateway(t, ", by_sender_domain: false")
	offFirst := glWantHeld(t, off, "127.0.0.2", "bounce-1@bigsender.net", "bob@campus.test")
	glWaitUntil(glAfterDelay(offFirst, time.Second))
	glWantHeld(t, off, "127.0.1.7", "bounce-1@bigsender.net", "bob@campus.test")
}

// TestGreylistWholeTransaction: the three recipients of one transaction
// are held together — carol, whose own triplet passed before, too — and
// the retry of the transaction passes whole: the next hop gets one message
// with all three. A transaction whose first recipient passes lets the new
// recipients after it pass.
func TestGreylistWholeTransaction(t *testing.T) {
	gw, hop := glDomainGateway(t, "")
	const src, from = "127.0.0.3", "x@nospf.net"
	carolFirst := glWantHeld(t, gw, src, from, "carol@campus.test")
	glWaitUntil(glAfterDelay(carolFirst, time.Second))
	glWantAccepted(t, gw, src, from, "carol@campus.test", "carol's retry")

	three := []string{"alice@campus.test", "bob@campus.test", "carol@campus.test"}
	c, r := glRcptAttempt(t, gw, src, from, three[0])
	held := time.Now()
	glWantGreylisted(t, c, r, 2*time.Second)
	for _, rcpt := range three[1:] {
		glWantGreylisted(t, c, c.Cmd("RCPT TO:<"+rcpt+">"), 2*time.Second)
	}
	c.Cmd("QUIT")

	glWaitUntil(glAfterDelay(held, time.Second))
	c, r = glRcptAttempt(t, gw, src, from, three[0])
	if r.Code != 250 {
		t.Fatalf("retry, %s: %v\n%s", three[0], r, c.Transcript())
	}
	for _, rcpt := range three[1:] {
		c.Expect("RCPT TO:<"+rcpt+">", "250")
	}
	glDeliver(t, c, "three at once")
	var got []string
	for _, m := range hop.Messages() {
		if messageHasSubject(m, "three at once") {
			got = append(got, m.To...)
		}
	}
	if len(got) != 3 {
		t.Fatalf("next hop got the recipients %v in the message, want all three in one", got)
	}

	// carol first: her triplet passed, and dave and erin, new, pass with her.
	c, r = glRcptAttempt(t, gw, src, from, "carol@campus.test")
	if r.Code != 250 {
		t.Fatalf("carol: %v", r)
	}
	c.Expect("RCPT TO:<dave@campus.test>", "250")
	c.Expect("RCPT TO:<erin@campus.test>", "250")
	c.Cmd("QUIT")
}

// glWantHeld makes a first attempt that must be greylisted (delay 1 s),
// ends the session, and returns a time before the attempt was answered.
func glWantHeld(t *testing.T, gw *harness.Gateway, src, from, rcpt string) time.Time {
	t.Helper()
	c, r := glRcptAttempt(t, gw, src, from, rcpt)
	answered := time.Now()
	glWantGreylisted(t, c, r, 2*time.Second)
	c.Cmd("QUIT")
	return answered
}
