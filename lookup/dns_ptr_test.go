package lookup

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/testdns"
)

// ptrTestServer serves reverse zones for 192.0.2.0/24 and 2001:db8::/32 and
// the forward zone friendly.test.
func ptrTestServer(t *testing.T) *testdns.Server {
	t.Helper()
	s := testdns.Start(t)
	s.AddZone("2.0.192.in-addr.arpa.", 60)
	s.AddZone("8.b.d.0.1.0.0.2.ip6.arpa.", 60)
	s.AddZone("friendly.test.", 60)
	return s
}

func ptrRR(ip, target string) string {
	return ReverseName(netip.MustParseAddr(ip)) + ". 300 IN PTR " + target
}

func wantName(t *testing.T, res ReverseNameResult, outcome ReverseNameOutcome, name, reasonHas string) {
	t.Helper()
	if res.Outcome != outcome || res.Name != name {
		t.Fatalf("got %v %q, want %v %q (reason %q)", res.Outcome, res.Name, outcome, name, res.Reason)
	}
	if !strings.Contains(res.Reason, reasonHas) {
		t.Fatalf("reason %q does not contain %q", res.Reason, reasonHas)
	}
}

func TestReverseName(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		{"192.0.2.1", "1.2.0.192.in-addr.arpa"},
		{"::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa"},
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
	} {
		got := ReverseName(netip.MustParseAddr(c.ip))
		if got != c.want {
			t.Errorf("ReverseName(%s) = %s, want %s", c.ip, got, c.want)
		}
		if want, _ := dns.ReverseAddr(netip.MustParseAddr(c.ip).Unmap().String()); got+"." != want {
			t.Errorf("%s: %s vs miekg %s", c.ip, got, want)
		}
	}
	if got := ReverseName(netip.Addr{}); got != "" {
		t.Errorf("zero Addr: %q", got)
	}
}

func TestVerifiedNameOutcomes(t *testing.T) {
	s := ptrTestServer(t)
	s.Add(
		// verified: the name's A records include the address
		ptrRR("192.0.2.10", "MX1.Friendly.Test."),
		"mx1.friendly.test. 300 IN A 192.0.2.99",
		"mx1.friendly.test. 300 IN A 192.0.2.10",
		// forged: the PTR claims a name that does not lead back
		ptrRR("192.0.2.11", "mx1.friendly.test."),
		// PTR to a name that does not exist
		ptrRR("192.0.2.12", "gone.friendly.test."),
		// two names: the first does not confirm, the second does
		ptrRR("192.0.2.13", "a.friendly.test."),
		ptrRR("192.0.2.13", "b.friendly.test."),
		"a.friendly.test. 300 IN A 192.0.2.99",
		"b.friendly.test. 300 IN A 192.0.2.13",
		// IPv6: AAAA confirms; an A record would not
		ptrRR("2001:db8::25", "v6.friendly.test."),
		"v6.friendly.test. 300 IN AAAA 2001:db8::25",
		ptrRR("2001:db8::26", "v4only.friendly.test."),
		"v4only.friendly.test. 300 IN A 192.0.2.10",
		// the reverse zone has the name, but no PTR (NODATA)
		ReverseName(netip.MustParseAddr("192.0.2.14"))+". 300 IN TXT \"no ptr\"",
	)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()
	ip := netip.MustParseAddr

	wantName(t, r.VerifiedName(ctx, ip("192.0.2.10")), ReverseNameVerified, "mx1.friendly.test", "contains 192.0.2.10")
	wantName(t, r.VerifiedName(ctx, ip("::ffff:192.0.2.10")), ReverseNameVerified, "mx1.friendly.test", "")
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.11")), ReverseNameNone, "", "no name leads back to 192.0.2.11")
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.12")), ReverseNameNone, "", "gone.friendly.test A: NXDOMAIN")
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.13")), ReverseNameVerified, "b.friendly.test", "a.friendly.test A: 1 A")
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.14")), ReverseNameNone, "", "PTR: NODATA")
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.15")), ReverseNameNone, "", "PTR: NXDOMAIN")
	wantName(t, r.VerifiedName(ctx, ip("2001:db8::25")), ReverseNameVerified, "v6.friendly.test", "v6.friendly.test AAAA: 1 AAAA")
	wantName(t, r.VerifiedName(ctx, ip("2001:db8::26")), ReverseNameNone, "", "AAAA: NODATA")
	wantName(t, r.VerifiedName(ctx, netip.Addr{}), ReverseNameNone, "", "no client address")
	// Outside every zone the server REFUSEs: could not tell, not "none".
	wantName(t, r.VerifiedName(ctx, ip("198.51.100.1")), ReverseNameCouldNotTell, "", "PTR: REFUSED")
}

// TestVerifiedNameCouldNotTell: trouble on the PTR lookup, or on a forward
// lookup that might have confirmed, is could-not-tell — never "none".
func TestVerifiedNameCouldNotTell(t *testing.T) {
	s := ptrTestServer(t)
	s.Add(
		ptrRR("192.0.2.20", "flaky.friendly.test."),
		"flaky.friendly.test. 300 IN A 192.0.2.20",
		ptrRR("192.0.2.21", "flaky.friendly.test."),
		ptrRR("192.0.2.21", "good.friendly.test."),
		"good.friendly.test. 300 IN A 192.0.2.21",
		ptrRR("192.0.2.22", "flaky.friendly.test."),
		ptrRR("192.0.2.22", "other.friendly.test."),
		"other.friendly.test. 300 IN A 192.0.2.99",
	)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()
	ip := netip.MustParseAddr

	s.SetBehavior(ReverseName(ip("192.0.2.20"))+".", dns.TypePTR, testdns.Servfail)
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.20")), ReverseNameCouldNotTell, "", "PTR: SERVFAIL")

	s.SetBehavior(ReverseName(ip("192.0.2.20"))+".", dns.TypePTR, testdns.Normal)
	s.SetBehavior("flaky.friendly.test.", dns.TypeA, testdns.Servfail)
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.20")), ReverseNameCouldNotTell, "", "flaky.friendly.test A: SERVFAIL")
	// Another name confirms: the flaky one does not matter.
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.21")), ReverseNameVerified, "good.friendly.test", "")
	// The other name answered without the address, the flaky one might
	// have confirmed: could not tell.
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.22")), ReverseNameCouldNotTell, "", "other.friendly.test A: 1 A")

	// A silent server: could not tell, within the resolver's budget.
	s.SetSilent(true)
	start := time.Now()
	wantName(t, r.VerifiedName(ctx, ip("192.0.2.23")), ReverseNameCouldNotTell, "", "timeout")
	if elapsed := time.Since(start); elapsed > 2*dnsTestTimeout+dnsSlack {
		t.Fatalf("took %v, want at most Timeout*Attempts + slack", elapsed)
	}
}

// TestVerifiedNameCapsPTRNames: at most MaxVerifiedNamePTRs names are
// looked up forward; the forward lookups run in parallel.
func TestVerifiedNameCapsPTRNames(t *testing.T) {
	s := ptrTestServer(t)
	var rrs []string
	for i := range MaxVerifiedNamePTRs + 2 {
		rrs = append(rrs, ptrRR("192.0.2.30", fmt.Sprintf("h%d.friendly.test.", i)))
	}
	// Only the last name would confirm; it is beyond the cap.
	rrs = append(rrs, fmt.Sprintf("h%d.friendly.test. 300 IN A 192.0.2.30", MaxVerifiedNamePTRs+1))
	s.Add(rrs...)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	res := r.VerifiedName(context.Background(), netip.MustParseAddr("192.0.2.30"))
	wantName(t, res, ReverseNameNone, "", fmt.Sprintf("only the first %d of %d names checked", MaxVerifiedNamePTRs, MaxVerifiedNamePTRs+2))
	asked := 0
	for i := range MaxVerifiedNamePTRs + 2 {
		asked += s.Queries(fmt.Sprintf("h%d.friendly.test.", i), dns.TypeA, testdns.AnyTransport)
	}
	if asked != MaxVerifiedNamePTRs {
		t.Fatalf("%d forward lookups, want %d", asked, MaxVerifiedNamePTRs)
	}

	// Parallel: both forward answers are held; both queries arrive before
	// either is released, so neither lookup waited for the other.
	s2 := ptrTestServer(t)
	s2.Add(
		ptrRR("192.0.2.31", "slow.friendly.test."),
		ptrRR("192.0.2.31", "fast.friendly.test."),
		"slow.friendly.test. 300 IN A 192.0.2.99",
		"fast.friendly.test. 300 IN A 192.0.2.31",
	)
	slow := s2.Hold("slow.friendly.test.", dns.TypeA)
	fast := s2.Hold("fast.friendly.test.", dns.TypeA)
	r2, _ := dnsTestResolver(t, []string{s2.Addr()}, func(c *DNSConfig) { c.Timeout = 5 * time.Second })
	out := make(chan ReverseNameResult, 1)
	go func() { out <- r2.VerifiedName(context.Background(), netip.MustParseAddr("192.0.2.31")) }()
	for _, h := range []*testdns.Hold{slow, fast} {
		select {
		case <-h.Arrived():
		case <-time.After(5 * time.Second):
			t.Fatal("the forward lookups did not both start before an answer came")
		}
	}
	slow.Release()
	fast.Release()
	wantName(t, <-out, ReverseNameVerified, "fast.friendly.test", "")
}

func BenchmarkVerifiedNameCached(b *testing.B) {
	s := testdns.Start(b)
	s.AddZone("2.0.192.in-addr.arpa.", 60)
	s.AddZone("friendly.test.", 60)
	s.Add(ptrRR("192.0.2.10", "mx1.friendly.test."), "mx1.friendly.test. 300 IN A 192.0.2.10")
	r, _ := dnsTestResolver(b, []string{s.Addr()}, nil)
	ip := netip.MustParseAddr("192.0.2.10")
	if res := r.VerifiedName(context.Background(), ip); res.Outcome != ReverseNameVerified {
		b.Fatal(res.Reason)
	}
	b.ResetTimer()
	for b.Loop() {
		r.VerifiedName(context.Background(), ip)
	}
}
