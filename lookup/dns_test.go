package lookup

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
)

// The DNS tests run against testdns: a real server on real loopback UDP and
// TCP sockets. Faults (SERVFAIL, REFUSED, silence, truncation, a stopped
// server) are injected in that server.

// dnsTestTimeout is the per-try timeout of the test resolvers: short, so that
// the timeout tests are fast, long enough for a loaded CI machine under -race.
const dnsTestTimeout = 300 * time.Millisecond

// dnsSlack is what a lookup may take beyond its configured budget.
const dnsSlack = 300 * time.Millisecond

// dnsTestServer starts testdns with the campus.test zone (negative TTL 60 s).
func dnsTestServer(t *testing.T) *testdns.Server {
	t.Helper()
	s := testdns.Start(t)
	s.AddZone("campus.test.", 60)
	s.Add(
		"campus.test. 300 IN MX 20 mx2.campus.test.",
		"campus.test. 300 IN MX 10 mx1.campus.test.",
		"campus.test. 300 IN A 192.0.2.1",
		"mx1.campus.test. 300 IN A 192.0.2.25",
		"mx2.campus.test. 300 IN A 192.0.2.26",
		"www.campus.test. 120 IN CNAME mx1.campus.test.",
		"campus.test. 300 IN TXT \"v=spf1 \" \"-all\"",
	)
	return s
}

// dnsTestResolver returns a resolver for servers with the test timeout, two
// attempts and a fake clock; mod may change the config first.
func dnsTestResolver(t testing.TB, servers []string, mod func(*DNSConfig)) (*Resolver, *testenv.Clock) {
	t.Helper()
	cfg := DNSConfig{Resolvers: servers, Timeout: dnsTestTimeout, Attempts: 2}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := testenv.NewClock()
	r.now = clock.Now
	return r, clock
}

func dnsWant(t *testing.T, res DNSResult, want DNSOutcome, reasonHas string) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome %v, want %v (reason %q)", res.Outcome, want, res.Reason)
	}
	if !strings.Contains(res.Reason, reasonHas) {
		t.Fatalf("reason %q does not contain %q", res.Reason, reasonHas)
	}
}

func TestDNSLookupOutcomes(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()

	res := r.Lookup(ctx, "Campus.Test", dns.TypeMX)
	dnsWant(t, res, DNSFound, "2 MX from "+s.Addr())
	if len(res.Records) != 2 || res.Cached {
		t.Fatalf("records %v cached %v", res.Records, res.Cached)
	}

	dnsWant(t, r.Lookup(ctx, "nosuch.campus.test", dns.TypeMX), DNSNXDomain, "NXDOMAIN from "+s.Addr())
	dnsWant(t, r.Lookup(ctx, "mx1.campus.test", dns.TypeMX), DNSNoData, "NODATA from "+s.Addr())
	// Outside every zone the server says REFUSED: could not tell, never
	// "not found".
	dnsWant(t, r.Lookup(ctx, "elsewhere.example", dns.TypeMX), DNSCouldNotTell, "REFUSED from "+s.Addr())

	// Names that cannot be asked.
	dnsWant(t, r.Lookup(ctx, "a..b", dns.TypeA), DNSNXDomain, "not a valid domain name")
	dnsWant(t, r.Lookup(ctx, strings.Repeat("a", 64)+".test", dns.TypeA), DNSNXDomain, "not a valid domain name")
	dnsWant(t, r.Lookup(ctx, "bücher.test", dns.TypeA), DNSCouldNotTell, "IDNA")
	if n := s.TotalQueries(); n != 3+2 { // REFUSED is retried once
		t.Fatalf("server saw %d queries, want 5", n)
	}
}

func TestDNSServfailAndRefusedAreCouldNotTell(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()
	for _, c := range []struct {
		b    testdns.Behavior
		want string
	}{{testdns.Servfail, "SERVFAIL"}, {testdns.Refused, "REFUSED"}} {
		t.Run(c.want, func(t *testing.T) {
			s.ResetCounts()
			s.SetBehavior("campus.test.", testdns.AnyType, c.b)
			defer s.SetBehavior("campus.test.", testdns.AnyType, testdns.Normal)
			res := r.Lookup(ctx, "campus.test", dns.TypeMX)
			dnsWant(t, res, DNSCouldNotTell, c.want+" from "+s.Addr()+"; "+c.want+" from "+s.Addr())
			if res.NotFound() {
				t.Fatal("could-not-tell reported as not found")
			}
			if n := s.Queries("campus.test", dns.TypeMX, testdns.UDP); n != 2 {
				t.Fatalf("%d queries, want 2 (both attempts)", n)
			}
		})
	}
}

func TestDNSSilentResolverTimesOutWithinBudget(t *testing.T) {
	s := dnsTestServer(t)
	s.SetSilent(true)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	start := time.Now()
	res := r.Lookup(context.Background(), "campus.test", dns.TypeMX)
	elapsed := time.Since(start)
	dnsWant(t, res, DNSCouldNotTell, "timeout after 2 attempts")
	if !res.timedOut {
		t.Error("timeout not flagged")
	}
	if limit := 2*dnsTestTimeout + dnsSlack; elapsed > limit {
		t.Fatalf("took %v, want at most Timeout*Attempts + slack = %v", elapsed, limit)
	}
	if elapsed < 2*dnsTestTimeout-50*time.Millisecond {
		t.Fatalf("took %v: did not wait for both attempts", elapsed)
	}
	if n := s.Queries("campus.test", dns.TypeMX, testdns.UDP); n != 2 {
		t.Fatalf("%d queries, want 2", n)
	}
	// Could-not-tell is not cached: the next lookup asks again.
	r.Lookup(context.Background(), "campus.test", dns.TypeMX)
	if n := s.Queries("campus.test", dns.TypeMX, testdns.UDP); n != 4 {
		t.Fatalf("%d queries after a second lookup, want 4", n)
	}
}

func TestDNSContextDeadlineHonoured(t *testing.T) {
	s := dnsTestServer(t)
	s.SetSilent(true)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.Timeout = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := r.Lookup(ctx, "campus.test", dns.TypeMX)
	if elapsed := time.Since(start); elapsed > 150*time.Millisecond+dnsSlack {
		t.Fatalf("took %v with a 150ms context", elapsed)
	}
	dnsWant(t, res, DNSCouldNotTell, "deadline exceeded")

	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	dnsWant(t, r.Lookup(done, "mx1.campus.test", dns.TypeA), DNSCouldNotTell, "not asked")
}

func TestDNSConnectionRefused(t *testing.T) {
	addr := testenv.FreePort(t) // nothing listens there
	r, _ := dnsTestResolver(t, []string{addr}, nil)
	start := time.Now()
	res := r.Lookup(context.Background(), "campus.test", dns.TypeMX)
	dnsWant(t, res, DNSCouldNotTell, "network error")
	if elapsed := time.Since(start); elapsed > 2*dnsTestTimeout+dnsSlack {
		t.Fatalf("took %v", elapsed)
	}
}

func TestDNSStoppedAndRestartedServer(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.CacheSize = -1 })
	ctx := context.Background()
	s.Stop()
	dnsWant(t, r.Lookup(ctx, "campus.test", dns.TypeMX), DNSCouldNotTell, "from "+s.Addr())
	s.Restart()
	dnsWant(t, r.Lookup(ctx, "campus.test", dns.TypeMX), DNSFound, "")
}

func TestDNSTruncatedAnswerRetriedOverTCP(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()

	s.SetBehavior("mx1.campus.test.", dns.TypeA, testdns.Truncate)
	res := r.Lookup(ctx, "mx1.campus.test", dns.TypeA)
	dnsWant(t, res, DNSFound, "")
	if got := res.Records[0].(*dns.A).A.String(); got != "192.0.2.25" {
		t.Fatalf("A = %s", got)
	}
	if u, tc := s.Queries("mx1.campus.test", dns.TypeA, testdns.UDP), s.Queries("mx1.campus.test", dns.TypeA, testdns.TCP); u != 1 || tc != 1 {
		t.Fatalf("UDP %d, TCP %d queries; want 1 and 1", u, tc)
	}

	// An answer larger than the 1232-byte EDNS0 buffer is truncated by the
	// server itself and completed over TCP.
	for i := range 40 {
		s.Add("big.campus.test. 300 IN TXT \"" + strings.Repeat("x", 60) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "\"")
	}
	txts, res := r.LookupTXT(ctx, "big.campus.test")
	dnsWant(t, res, DNSFound, "40 TXT")
	if len(txts) != 40 || s.Queries("big.campus.test", dns.TypeTXT, testdns.TCP) != 1 {
		t.Fatalf("%d TXT, %d TCP queries", len(txts), s.Queries("big.campus.test", dns.TypeTXT, testdns.TCP))
	}
}

func TestDNSSecondResolverUsedWhenFirstSilent(t *testing.T) {
	silent := dnsTestServer(t)
	silent.SetSilent(true)
	good := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{silent.Addr(), good.Addr()}, nil)
	ctx := context.Background()

	start := time.Now()
	res := r.Lookup(ctx, "campus.test", dns.TypeMX)
	dnsWant(t, res, DNSFound, "from "+good.Addr())
	if elapsed := time.Since(start); elapsed > 2*dnsTestTimeout+dnsSlack {
		t.Fatalf("took %v", elapsed)
	}
	if a, b := silent.TotalQueries(), good.TotalQueries(); a != 1 || b != 1 {
		t.Fatalf("silent saw %d, good saw %d queries; want 1 and 1", a, b)
	}
	// Sticky failover: the next lookup goes to the good resolver first.
	dnsWant(t, r.Lookup(ctx, "mx1.campus.test", dns.TypeA), DNSFound, "from "+good.Addr())
	if a := silent.TotalQueries(); a != 1 {
		t.Fatalf("silent resolver asked again (%d queries)", a)
	}

	// Both silent: could not tell, after one try at each.
	good.SetSilent(true)
	res = r.Lookup(ctx, "mx2.campus.test", dns.TypeA)
	dnsWant(t, res, DNSCouldNotTell, "timeout after 2 attempts ("+good.Addr()+", "+silent.Addr()+")")
}

func TestDNSCacheHonoursTTL(t *testing.T) {
	s := dnsTestServer(t)
	r, clock := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()

	dnsWant(t, r.Lookup(ctx, "campus.test", dns.TypeMX), DNSFound, "")
	res := r.Lookup(ctx, "campus.test.", dns.TypeMX)
	dnsWant(t, res, DNSFound, "")
	if !res.Cached || len(res.Records) != 2 {
		t.Fatalf("second lookup: cached %v, %d records", res.Cached, len(res.Records))
	}
	if n := s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport); n != 1 {
		t.Fatalf("%d upstream queries, want 1", n)
	}
	clock.Advance(299 * time.Second)
	r.Lookup(ctx, "campus.test", dns.TypeMX)
	if n := s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport); n != 1 {
		t.Fatalf("asked again before the TTL of 300 s ran out")
	}
	clock.Advance(2 * time.Second)
	if res := r.Lookup(ctx, "campus.test", dns.TypeMX); res.Cached {
		t.Fatal("answer still cached after its TTL")
	}
	if n := s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport); n != 2 {
		t.Fatalf("%d upstream queries after expiry, want 2", n)
	}

	// A CNAME chain is cached for the smallest TTL on it (the CNAME's 120 s).
	dnsWant(t, r.Lookup(ctx, "www.campus.test", dns.TypeA), DNSFound, "")
	clock.Advance(121 * time.Second)
	if res := r.Lookup(ctx, "www.campus.test", dns.TypeA); res.Cached {
		t.Fatal("CNAME chain cached beyond the CNAME's TTL")
	}
}

func TestDNSNegativeCachingUsesSOA(t *testing.T) {
	s := testdns.Start(t)
	// SOA TTL 3600, MINIMUM 5: the negative TTL is 5 s (RFC 2308).
	s.Add("neg.test. 3600 IN SOA ns.neg.test. h.neg.test. 1 7200 3600 1209600 5",
		"host.neg.test. 300 IN A 192.0.2.7")
	r, clock := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		qtype uint16
		want  DNSOutcome
	}{{"nope.neg.test", dns.TypeA, DNSNXDomain}, {"host.neg.test", dns.TypeMX, DNSNoData}} {
		t.Run(c.want.String(), func(t *testing.T) {
			dnsWant(t, r.Lookup(ctx, c.name, c.qtype), c.want, "")
			clock.Advance(4 * time.Second)
			res := r.Lookup(ctx, c.name, c.qtype)
			dnsWant(t, res, c.want, "")
			if !res.Cached || s.Queries(c.name, c.qtype, testdns.AnyTransport) != 1 {
				t.Fatalf("not cached within the negative TTL")
			}
			clock.Advance(2 * time.Second)
			if res := r.Lookup(ctx, c.name, c.qtype); res.Cached {
				t.Fatal("cached beyond min(SOA TTL, MINIMUM) = 5 s")
			}
			if n := s.Queries(c.name, c.qtype, testdns.AnyTransport); n != 2 {
				t.Fatalf("%d queries, want 2", n)
			}
		})
	}

	// Without an SOA a negative answer is not cached (RFC 2308 §5).
	s2 := testdns.Start(t)
	s2.Add("bare.test. 300 IN A 192.0.2.8")
	r2, _ := dnsTestResolver(t, []string{s2.Addr()}, nil)
	dnsWant(t, r2.Lookup(ctx, "bare.test", dns.TypeMX), DNSNoData, "")
	dnsWant(t, r2.Lookup(ctx, "bare.test", dns.TypeMX), DNSNoData, "")
	if n := s2.Queries("bare.test", dns.TypeMX, testdns.AnyTransport); n != 2 {
		t.Fatalf("NODATA without SOA cached (%d queries)", n)
	}
}

func TestDNSCouldNotTellNotCached(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.Attempts = 1 })
	ctx := context.Background()
	s.SetBehavior("campus.test.", dns.TypeMX, testdns.Servfail)
	dnsWant(t, r.Lookup(ctx, "campus.test", dns.TypeMX), DNSCouldNotTell, "SERVFAIL")
	dnsWant(t, r.Lookup(ctx, "campus.test", dns.TypeMX), DNSCouldNotTell, "SERVFAIL")
	s.SetBehavior("campus.test.", dns.TypeMX, testdns.Normal)
	res := r.Lookup(ctx, "campus.test", dns.TypeMX)
	dnsWant(t, res, DNSFound, "")
	if res.Cached || s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport) != 3 {
		t.Fatalf("cached %v, %d queries; want a fresh answer from the 3rd query", res.Cached, s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport))
	}
	if r.cache.len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", r.cache.len())
	}
}

func TestDNSCacheEvictsLeastRecentlyUsed(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.CacheSize = 2 })
	ctx := context.Background()
	r.Lookup(ctx, "mx1.campus.test", dns.TypeA)
	r.Lookup(ctx, "mx2.campus.test", dns.TypeA)
	r.Lookup(ctx, "mx1.campus.test", dns.TypeA) // mx1 now most recent
	r.Lookup(ctx, "campus.test", dns.TypeA)     // evicts mx2
	if r.cache.len() != 2 {
		t.Fatalf("cache size %d, want 2", r.cache.len())
	}
	if !r.Lookup(ctx, "mx1.campus.test", dns.TypeA).Cached {
		t.Fatal("most recently used entry was evicted")
	}
	if r.Lookup(ctx, "mx2.campus.test", dns.TypeA).Cached {
		t.Fatal("least recently used entry was kept")
	}
}

// TestDNSSingleflight: 50 concurrent identical lookups, with the cache off so
// that only the sharing can save queries, make one upstream query. The
// server holds the answer until every lookup has joined the flight.
func TestDNSSingleflight(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) {
		c.CacheSize = -1
		c.Timeout = 5 * time.Second
	})
	const n = 50
	var joined sync.WaitGroup
	joined.Add(n)
	r.dnsTestHookJoined = func(string) { joined.Done() }
	hold := s.Hold("campus.test.", dns.TypeMX)

	results := make(chan DNSResult, n)
	for range n {
		go func() { results <- r.Lookup(context.Background(), "campus.test", dns.TypeMX) }()
	}
	<-hold.Arrived()
	joined.Wait()
	hold.Release()
	for range n {
		if res := <-results; res.Outcome != DNSFound || len(res.Records) != 2 {
			t.Fatalf("result %v %q", res.Outcome, res.Reason)
		}
	}
	if q := s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport); q != 1 {
		t.Fatalf("%d upstream queries for %d concurrent lookups, want 1", q, n)
	}
}

// A caller whose context ends leaves the shared query running for the
// others (and the cache).
func TestDNSSharedQuerySurvivesImpatientCaller(t *testing.T) {
	s := dnsTestServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.Timeout = 5 * time.Second })
	hold := s.Hold("campus.test.", dns.TypeMX)
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan DNSResult, 1)
	go func() { impatient <- r.Lookup(ctx, "campus.test", dns.TypeMX) }()
	<-hold.Arrived()
	cancel()
	dnsWant(t, <-impatient, DNSCouldNotTell, "gave up waiting")
	hold.Release()
	// The shared query completes and fills the cache; wait for it by
	// joining it (or hitting the cache it filled).
	res := r.Lookup(context.Background(), "campus.test", dns.TypeMX)
	dnsWant(t, res, DNSFound, "")
	if n := s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport); n != 1 {
		t.Fatalf("%d queries, want 1", n)
	}
}

func TestDNSCNAMEChains(t *testing.T) {
	s := dnsTestServer(t)
	s.Add(
		"mail.campus.test. 300 IN CNAME www.campus.test.", // two hops to mx1
		"alias.campus.test. 300 IN CNAME campus.test.",
		"away.campus.test. 300 IN CNAME host.elsewhere.example.", // target the server does not know
		"dangling.campus.test. 300 IN CNAME gone.campus.test.",
	)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()

	ips, res := r.LookupIPs(ctx, "mail.campus.test")
	dnsWant(t, res, DNSFound, "1 A")
	if len(ips) != 1 || ips[0] != netip.MustParseAddr("192.0.2.25") {
		t.Fatalf("IPs %v", ips)
	}
	res = r.Lookup(ctx, "alias.campus.test", dns.TypeMX)
	dnsWant(t, res, DNSFound, "2 MX")
	for _, rr := range res.Records {
		if _, ok := rr.(*dns.MX); !ok {
			t.Fatalf("record %v is not an MX", rr)
		}
	}
	txts, res := r.LookupTXT(ctx, "alias.campus.test")
	dnsWant(t, res, DNSFound, "")
	if len(txts) != 1 || txts[0] != "v=spf1 -all" {
		t.Fatalf("TXT %q", txts)
	}
	// The CNAME record itself, when asked for.
	dnsWant(t, r.Lookup(ctx, "alias.campus.test", dns.TypeCNAME), DNSFound, "1 CNAME")
	// NXDOMAIN of the target.
	dnsWant(t, r.Lookup(ctx, "dangling.campus.test", dns.TypeA), DNSNXDomain, "")
	// A chain left unfinished by the resolver is chased: here the target
	// is REFUSED, so the answer is could not tell — not NODATA.
	dnsWant(t, r.Lookup(ctx, "away.campus.test", dns.TypeA), DNSCouldNotTell, "REFUSED")
	if n := s.Queries("host.elsewhere.example", dns.TypeA, testdns.AnyTransport); n != 2 {
		t.Fatalf("unfinished chain's target asked %d times, want 2 (both attempts)", n)
	}
}

func TestDNSDomainExists(t *testing.T) {
	s := dnsTestServer(t)
	s.AddZone("other.test.", 60)
	s.Add(
		"nullmx.campus.test. 300 IN MX 0 .",
		"aonly.campus.test. 300 IN A 192.0.2.30",
		"v6only.campus.test. 300 IN AAAA 2001:db8::30",
		"nomail.campus.test. 300 IN TXT \"no addresses\"",
		"afail.campus.test. 300 IN TXT \"A servfails\"",
		"afail6.campus.test. 300 IN AAAA 2001:db8::31",
		"mxfail.campus.test. 300 IN A 192.0.2.32",
		"silentmx.campus.test. 300 IN A 192.0.2.33",
	)
	s.SetBehavior("afail.campus.test.", dns.TypeA, testdns.Servfail)
	s.SetBehavior("afail6.campus.test.", dns.TypeA, testdns.Servfail)
	s.SetBehavior("mxfail.campus.test.", dns.TypeMX, testdns.Servfail)
	s.SetBehavior("silentmx.campus.test.", dns.TypeMX, testdns.Silent)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)

	cases := []struct {
		domain     string
		want       DomainOutcome
		nxdomain   bool
		reasonHas  string
		addrLookup bool // whether A/AAAA must have been asked
	}{
		{"campus.test", DomainFound, false, "MX: 2 MX", false},
		{"nosuch.campus.test", DomainNotFound, true, "MX: NXDOMAIN", false},
		{"nullmx.campus.test", DomainNullMX, false, "null MX", false},
		{"aonly.campus.test", DomainFound, false, "A: 1 A", true},
		{"v6only.campus.test.", DomainFound, false, "AAAA: 1 AAAA", true},
		{"nomail.campus.test", DomainNotFound, false, "MX: NODATA", true},
		{"afail.campus.test", DomainCouldNotTell, false, "A: SERVFAIL", true},
		{"afail6.campus.test", DomainFound, false, "AAAA: 1 AAAA", true},
		{"mxfail.campus.test", DomainCouldNotTell, false, "MX: SERVFAIL", false},
		{"silentmx.campus.test", DomainCouldNotTell, false, "MX: timeout", false},
		{"elsewhere.example", DomainCouldNotTell, false, "REFUSED", false},
	}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			got := r.DomainExists(context.Background(), c.domain)
			if got.Outcome != c.want || got.NXDomain != c.nxdomain || !strings.Contains(got.Reason, c.reasonHas) {
				t.Fatalf("got %v (NXDomain %v, %q), want %v (NXDomain %v, reason with %q)",
					got.Outcome, got.NXDomain, got.Reason, c.want, c.nxdomain, c.reasonHas)
			}
			asked := s.Queries(c.domain, dns.TypeA, testdns.AnyTransport) > 0
			if asked != c.addrLookup {
				t.Fatalf("A asked: %v, want %v", asked, c.addrLookup)
			}
		})
	}
	got := r.DomainExists(context.Background(), "campus.test")
	if len(got.MX) != 2 || got.MX[0].Mx != "mx1.campus.test." || got.MX[1].Mx != "mx2.campus.test." {
		t.Fatalf("MX not sorted by preference: %v", got.MX)
	}
}

func TestDNSCanary(t *testing.T) {
	s := dnsTestServer(t)
	s.Add("aonly.campus.test. 300 IN A 192.0.2.30")
	ctx := context.Background()

	t.Run("no canary is healthy", func(t *testing.T) {
		r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
		if h := r.Health(ctx); !h.Healthy || !strings.Contains(h.Reason, "no DNS canary") {
			t.Fatalf("%+v", h)
		}
	})

	t.Run("found, cached, then failing", func(t *testing.T) {
		s.ResetCounts()
		r, clock := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.Canary = "campus.test" })
		if h := r.Health(ctx); !h.Healthy || !strings.Contains(h.Reason, "2 MX") {
			t.Fatalf("%+v", h)
		}
		s.SetBehavior("campus.test.", testdns.AnyType, testdns.Servfail)
		defer s.SetBehavior("campus.test.", testdns.AnyType, testdns.Normal)
		clock.Advance(9 * time.Second)
		if !r.Health(ctx).Healthy {
			t.Fatal("healthy result not kept for 10 s")
		}
		if n := s.Queries("campus.test", testdns.AnyType, testdns.AnyTransport); n != 1 {
			t.Fatalf("%d probes, want 1", n)
		}
		clock.Advance(2 * time.Second)
		h := r.Health(ctx)
		if h.Healthy || !strings.Contains(h.Reason, "SERVFAIL") {
			t.Fatalf("%+v", h)
		}
		// The canary bypasses the answer cache: a cached MX of the canary
		// must not keep DNS "healthy".
		if res := r.Lookup(ctx, "campus.test", dns.TypeMX); res.Outcome != DNSCouldNotTell {
			t.Fatalf("lookup after failure: %v", res.Outcome)
		}
		s.SetBehavior("campus.test.", testdns.AnyType, testdns.Normal)
		clock.Advance(1 * time.Second)
		if r.Health(ctx).Healthy {
			t.Fatal("unhealthy result not kept for 2 s")
		}
		clock.Advance(1 * time.Second)
		if !r.Health(ctx).Healthy {
			t.Fatal("recovery not seen after 2 s")
		}
	})

	t.Run("A only", func(t *testing.T) {
		r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.Canary = "aonly.campus.test" })
		if h := r.Health(ctx); !h.Healthy || !strings.Contains(h.Reason, "MX: NODATA") {
			t.Fatalf("%+v", h)
		}
	})

	t.Run("NXDOMAIN canary is unhealthy", func(t *testing.T) {
		r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) { c.Canary = "gone.campus.test" })
		if h := r.Health(ctx); h.Healthy || !strings.Contains(h.Reason, "NXDOMAIN") {
			t.Fatalf("%+v", h)
		}
	})

	t.Run("silent resolver", func(t *testing.T) {
		quiet := dnsTestServer(t)
		quiet.SetSilent(true)
		r, _ := dnsTestResolver(t, []string{quiet.Addr()}, func(c *DNSConfig) { c.Canary = "campus.test" })
		start := time.Now()
		h := r.Health(ctx)
		if h.Healthy || !strings.Contains(h.Reason, "timeout") {
			t.Fatalf("%+v", h)
		}
		if elapsed := time.Since(start); elapsed > 2*dnsTestTimeout+dnsSlack {
			t.Fatalf("probe took %v", elapsed)
		}
	})

	t.Run("concurrent callers share one probe", func(t *testing.T) {
		s.ResetCounts()
		r, _ := dnsTestResolver(t, []string{s.Addr()}, func(c *DNSConfig) {
			c.Canary = "campus.test"
			c.Timeout = 5 * time.Second
		})
		const n = 20
		var joined sync.WaitGroup
		joined.Add(n)
		r.dnsTestHookJoined = func(string) { joined.Done() }
		hold := s.Hold("campus.test.", dns.TypeMX)
		var healthy atomic.Int32
		var done sync.WaitGroup
		for range n {
			done.Go(func() {
				if r.Health(ctx).Healthy {
					healthy.Add(1)
				}
			})
		}
		<-hold.Arrived()
		joined.Wait()
		hold.Release()
		done.Wait()
		if healthy.Load() != n {
			t.Fatalf("%d of %d callers saw healthy", healthy.Load(), n)
		}
		if q := s.Queries("campus.test", dns.TypeMX, testdns.AnyTransport); q != 1 {
			t.Fatalf("%d probes for %d concurrent callers, want 1", q, n)
		}
	})
}

func TestReverseIP(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		{"192.0.2.1", "1.2.0.192"},
		{"127.0.0.2", "2.0.0.127"},
		{"::ffff:10.1.2.3", "3.2.1.10"},
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
		{"2001:db8:1234:5678:9abc:def0:1:2", "2.0.0.0.1.0.0.0.0.f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.8.b.d.0.1.0.0.2"},
	} {
		if got := ReverseIP(netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("ReverseIP(%s) = %s, want %s", c.ip, got, c.want)
		}
	}
	if got := ReverseIP(netip.Addr{}); got != "" {
		t.Errorf("zero Addr: %q", got)
	}
	// Consistent with miekg/dns's reverse names.
	for _, ip := range []string{"192.0.2.1", "2001:db8::1"} {
		a := netip.MustParseAddr(ip)
		zone := ".in-addr.arpa."
		if a.Is6() {
			zone = ".ip6.arpa."
		}
		if want, _ := dns.ReverseAddr(ip); ReverseIP(a)+zone != want {
			t.Errorf("%s: %s vs miekg %s", ip, ReverseIP(a)+zone, want)
		}
	}
}

func TestDNSLookupIPsForDNSBL(t *testing.T) {
	s := testdns.Start(t)
	s.AddZone("bl.test.", 60)
	ip := netip.MustParseAddr("192.0.2.99")
	s.Add(
		ReverseIP(ip)+".bl.test. 300 IN A 127.0.0.2",
		ReverseIP(ip)+".bl.test. 300 IN TXT \"listed: see https://bl.test/192.0.2.99\"",
	)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	ctx := context.Background()
	ips, res := r.LookupIPs(ctx, ReverseIP(ip)+".bl.test")
	dnsWant(t, res, DNSFound, "")
	if len(ips) != 1 || ips[0] != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("%v", ips)
	}
	txts, res := r.LookupTXT(ctx, ReverseIP(ip)+".bl.test")
	if res.Outcome != DNSFound || len(txts) != 1 || !strings.HasPrefix(txts[0], "listed") {
		t.Fatalf("%v %q", res.Outcome, txts)
	}
	ips, res = r.LookupIPs(ctx, ReverseIP(netip.MustParseAddr("192.0.2.100"))+".bl.test")
	dnsWant(t, res, DNSNXDomain, "")
	if ips != nil {
		t.Fatalf("addresses with NXDOMAIN: %v", ips)
	}
}

func TestNewResolverConfig(t *testing.T) {
	r, err := NewResolver(DNSConfig{Resolvers: []string{"127.0.0.1", "127.0.0.2:5353", "::1", "[::1]:5300"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:53", "127.0.0.2:5353", "[::1]:53", "[::1]:5300"}
	if got := r.Servers(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("servers %v, want %v", got, want)
	}
	if r.timeout != DefaultDNSTimeout || r.attempts != DefaultDNSAttempts || r.cache == nil || r.cache.max != DefaultDNSCacheSize {
		t.Fatalf("defaults: %v %d %v", r.timeout, r.attempts, r.cache)
	}
	for _, bad := range []DNSConfig{
		{Resolvers: []string{"dns.example:53"}},
		{Resolvers: []string{"127.0.0.1:99999"}},
		{Resolvers: []string{"127.0.0.1"}, Timeout: -1},
		{Resolvers: []string{"127.0.0.1"}, Attempts: -1},
		{Resolvers: []string{"127.0.0.1"}, Canary: "a..b"},
	} {
		if _, err := NewResolver(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}

	// Empty Resolvers: /etc/resolv.conf.
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old string) { dnsResolvConf = old }(dnsResolvConf)
	dnsResolvConf = conf
	r, err = NewResolver(DNSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Servers(), " "); got != "192.0.2.53:53 [2001:db8::53]:53" {
		t.Fatalf("servers from resolv.conf: %s", got)
	}
	dnsResolvConf = filepath.Join(dir, "missing")
	if _, err := NewResolver(DNSConfig{}); err == nil {
		t.Fatal("missing resolv.conf accepted")
	}
}
