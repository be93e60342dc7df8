package relay

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
	"sekisho/internal/testdns"
	"sekisho/lookup"
)

// mxRouter routes everything to "mx", resolving through a test DNS server.
func mxRouter(t *testing.T, s *testdns.Server, port int) *Router {
	t.Helper()
	res, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}, Timeout: time.Second, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(mustHop(t, "mx"))
	r.MailHosts = res
	r.MXPort = port
	return r
}

// mx next hops: the domain's mail hosts in order of preference (the lower
// MX preference first, whatever the order of the records), failover
// between them; null MX → 556 5.1.10; a lookup that cannot tell → 451
// 4.4.3.
func TestMX(t *testing.T) {
	// Two hosts on the same port of two loopback addresses: the MX port is
	// one setting.
	first := startHop(t, greeting("421 4.3.2 busy"))
	_, port, _ := net.SplitHostPort(first.Addr)
	if ln, err := net.Listen("tcp", "127.0.0.2:"+port); err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	} else {
		ln.Close()
	}
	startHop(t, func(h *harness.RawNextHop) { h.Listen = "127.0.0.2:" + port })
	p, _ := strconv.Atoi(port)

	s := testdns.Start(t)
	s.AddZone("dest.test.", 60)
	s.Add("dest.test. 300 IN MX 20 mx2.dest.test.",
		"dest.test. 300 IN MX 10 mx1.dest.test.",
		"mx1.dest.test. 300 IN A 127.0.0.1",
		"mx2.dest.test. 300 IN A 127.0.0.2",
		"nullmx.dest.test. 300 IN MX 0 .",
		"broken.dest.test. 300 IN MX 10 mx1.dest.test.")
	s.SetBehavior("broken.dest.test.", dns.TypeMX, testdns.Servfail)
	r := mxRouter(t, s, p)

	hops, err := r.Hops(context.Background(), 0, "Dest.Test")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hops {
		names = append(names, h.String())
	}
	if want := "mx mx1.dest.test [127.0.0.1], mx mx2.dest.test [127.0.0.2]"; strings.Join(names, ", ") != want {
		t.Fatalf("Hops = %s, want %s", strings.Join(names, ", "), want)
	}

	tx, err := r.Begin(context.Background(), 0, "dest.test", Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "mx mx2.dest.test [127.0.0.2]" {
		t.Errorf("transaction with %s, want mx2 after mx1's 421", tx.Hop())
	}
	if err := tx.Rcpt(context.Background(), mailaddr.Address{Local: "u", Domain: "dest.test"}, RcptDSN{}); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if transcript(t, first) != "" {
		t.Error("mx1 said 421 at the greeting and still got commands")
	}

	_, err = r.Begin(context.Background(), 0, "nullmx.dest.test", Envelope{From: sender})
	wantReply(t, err, 556, [3]int{5, 1, 10})
	_, err = r.Begin(context.Background(), 0, "broken.dest.test", Envelope{From: sender})
	wantReply(t, err, 451, [3]int{4, 4, 3})
}

type fakeMailHosts struct {
	hosts []lookup.MailHost
	res   lookup.DomainResult
}

func (f fakeMailHosts) MailHosts(context.Context, string) ([]lookup.MailHost, lookup.DomainResult) {
	return f.hosts, f.res
}

// At most 5 addresses per call-ahead, each once, in the resolver's order;
// a fixed next hop after "mx" stays the last resort; no resolver → 451.
func TestMXHopsLimits(t *testing.T) {
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	fallback := mustHop(t, "smtp://10.9.9.9:25")
	r := &Router{
		Routes: Routes{{Domains: mailaddr.NewDomainSet([]string{"*"}), NextHops: []NextHop{mustHop(t, "mx"), fallback}}},
		MailHosts: fakeMailHosts{res: lookup.DomainResult{Outcome: lookup.DomainFound}, hosts: []lookup.MailHost{
			{Name: "a.test", Addrs: a("192.0.2.1", "2001:db8::1", "192.0.2.1")},
			{Name: "b.test", Addrs: a("192.0.2.1", "192.0.2.2", "::ffff:192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6")},
		}},
	}
	hops, err := r.Hops(context.Background(), 0, "x.test")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, h := range hops {
		addrs = append(addrs, h.Addr)
	}
	want := "192.0.2.1:25 [2001:db8::1]:25 192.0.2.2:25 192.0.2.3:25 192.0.2.4:25 10.9.9.9:25"
	if strings.Join(addrs, " ") != want {
		t.Errorf("Hops = %s\nwant    %s", strings.Join(addrs, " "), want)
	}
	if hops[0].MXHost != "a.test" || hops[2].MXHost != "b.test" {
		t.Errorf("MXHost not set: %+v", hops[:3])
	}

	r.MailHosts = nil
	_, err = r.Hops(context.Background(), 0, "x.test")
	wantReply(t, err, 451, [3]int{4, 3, 0})
	_, err = r.Hops(context.Background(), 7, "x.test")
	wantReply(t, err, 451, [3]int{4, 3, 0})
}
