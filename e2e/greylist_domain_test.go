package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testredis"
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
	return glDomainGatewayOn(t, settings, "")
}

// glDomainGatewayOn is glDomainGateway with more top-level YAML (the store).
func glDomainGatewayOn(t *testing.T, settings, extra string) (*harness.Gateway, *harness.NextHop) {
	t.Helper()
	dns := testdns.Start(t)
	dns.AddZone("net.", 60)
	dns.Add(`bigsender.net. 300 IN TXT "v=spf1 ip4:127.0.0.0/16 -all"`)
	return campus(t, func(s *site) {
		s.extra = fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 1}\n", dns.Addr()) + extra
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

// TestGreylistStats: `sekisho greylist stats -config sekisho.yaml` (as
// docs/checks-greylist.md shows it), while the gateway runs — on the Redis
// store, and on the embedded store that the running gateway holds (then
// the gateway answers on its control socket; -direct cannot read it) —
// lists the week's longest delays — bigsender.net's from its first
// attempt to the pass of its retry from another address of its pool, and
// nospf.net's, each at least the 1 s delay — and the addresses their
// retries came from: bigsender.net two (an early retry held again and the
// one that passed), nospf.net one (its retry from another network was a
// new triplet, not a retry, to greylisting; the one from its first network
// passed). -format json says the same.
func TestGreylistStats(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		rs := testredis.Start(t)
		gw, _ := glDomainGatewayOn(t, "", glRedisStore(rs.Addr()))
		testGreylistStats(t, gw)
	})
	t.Run("embedded", func(t *testing.T) {
		gw, _ := glDomainGatewayOn(t, "", "")
		testGreylistStats(t, gw)
		cmd := exec.Command(harness.Binary(t), "greylist", "stats", "-config", "sekisho.yaml", "-direct")
		cmd.Dir = gw.Dir
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "held by a running sekisho serve") {
			t.Errorf("-direct beside the gateway holding the embedded store: %v\n%s", err, out)
		}
	})
}

func testGreylistStats(t *testing.T, gw *harness.Gateway) {
	sent := time.Now()
	first := glWantHeld(t, gw, "127.0.0.2", "a@bigsender.net", "alice@campus.test")
	glWantHeld(t, gw, "127.0.2.2", "b@bigsender.net", "alice@campus.test")
	nospf := glWantHeld(t, gw, "127.0.0.2", "x@nospf.net", "bob@campus.test")
	glWaitUntil(glAfterDelay(nospf, time.Second))
	glWantAccepted(t, gw, "127.0.1.7", "c@bigsender.net", "alice@campus.test", "the pool's retry after the delay")
	glWantHeld(t, gw, "127.0.1.7", "x@nospf.net", "bob@campus.test")
	glWantAccepted(t, gw, "127.0.0.2", "x@nospf.net", "bob@campus.test", "no SPF: the retry from the first network")
	passed := time.Now()

	stats := func(format string) string {
		t.Helper()
		cmd := exec.Command(harness.Binary(t), "greylist", "stats", "-config", "sekisho.yaml", "-format", format)
		cmd.Dir = gw.Dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sekisho greylist stats: %v\n%s", err, out)
		}
		return string(out)
	}
	var js struct {
		Week   string
		Delays []struct {
			Domain  string
			Seconds float64
		} `json:"longest_delays"`
		Pools []struct {
			Domain    string
			Addresses int64
		} `json:"retried_from_most_addresses"`
	}
	out := stats("json")
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Each delay lies between the first attempt's reply and the last pass.
	lo, hi := time.Second, passed.Sub(sent)
	delays := map[string]float64{}
	for _, d := range js.Delays {
		delays[d.Domain] = d.Seconds
	}
	for _, d := range []string{"bigsender.net", "nospf.net"} {
		if s, ok := delays[d]; !ok || s < lo.Seconds() || s > hi.Seconds() {
			t.Errorf("longest delay of %s: %v (%v), want within %v..%v (first attempt %v)\n%s", d, s, ok, lo, hi, first.Sub(sent), out)
		}
	}
	if len(js.Delays) != 2 {
		t.Errorf("longest delays %+v, want two domains", js.Delays)
	}
	if len(js.Pools) != 2 || js.Pools[0].Domain != "bigsender.net" || js.Pools[0].Addresses != 2 ||
		js.Pools[1].Domain != "nospf.net" || js.Pools[1].Addresses != 1 {
		t.Errorf("pools %+v, want bigsender.net 2, nospf.net 1\n%s", js.Pools, out)
	}
	text := stats("text")
	for _, want := range []string{"Greylisting in " + js.Week + " (UTC)", "bigsender.net", "2  bigsender.net", "1  nospf.net"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
}
