package lookup

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/miekg/dns"

	"sekisho/internal/testdns"
)

var _ spf.DNSResolver = (*SPFResolver)(nil)

// dnsSPFServer serves the spf.test zone used by the SPF tests.
func dnsSPFServer(t *testing.T) *testdns.Server {
	t.Helper()
	s := testdns.Start(t)
	s.AddZone("spf.test.", 60)
	s.Add(
		`spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 a:mail.spf.test -all"`,
		"mail.spf.test. 300 IN A 192.0.2.2",
		// Its A lookup fails: an a: mechanism on it must give temperror.
		`broken.spf.test. 300 IN TXT "v=spf1 a:flaky.spf.test -all"`,
		"flaky.spf.test. 300 IN A 192.0.2.3",
		// A found, AAAA fails: still temperror (see SPFResolver).
		`half.spf.test. 300 IN TXT "v=spf1 a:halfv6.spf.test -all"`,
		"halfv6.spf.test. 300 IN A 192.0.2.4",
		// mx mechanism over a null MX never matches: fail, not temperror.
		`nullmx.spf.test. 300 IN TXT "v=spf1 mx -all"`,
		"nullmx.spf.test. 300 IN MX 0 .",
		// mx mechanism with a real MX.
		`mxok.spf.test. 300 IN TXT "v=spf1 mx -all"`,
		"mxok.spf.test. 300 IN MX 10 mail.spf.test.",
		// A domain without SPF record.
		`nospf.spf.test. 300 IN TXT "hello"`,
	)
	s.SetBehavior("flaky.spf.test.", dns.TypeA, testdns.Servfail)
	s.SetBehavior("halfv6.spf.test.", dns.TypeAAAA, testdns.Servfail)
	return s
}

func dnsCheckSPF(r *Resolver, ip, sender string) (spf.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return spf.CheckHostWithSender(net.ParseIP(ip), "helo.example", sender,
		spf.WithResolver(NewSPFResolver(r)), spf.WithContext(ctx))
}

func TestSPFThroughResolver(t *testing.T) {
	s := dnsSPFServer(t)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	for _, c := range []struct {
		ip, sender string
		want       spf.Result
	}{
		{"192.0.2.1", "user@spf.test", spf.Pass},
		{"192.0.2.2", "user@spf.test", spf.Pass}, // via a:mail.spf.test
		{"192.0.2.9", "user@spf.test", spf.Fail},
		{"192.0.2.3", "user@broken.spf.test", spf.TempError},
		{"192.0.2.4", "user@half.spf.test", spf.TempError},
		{"192.0.2.2", "user@nullmx.spf.test", spf.Fail},
		{"192.0.2.2", "user@mxok.spf.test", spf.Pass},
		{"192.0.2.9", "user@mxok.spf.test", spf.Fail},
		{"192.0.2.1", "user@nospf.spf.test", spf.None},
		{"192.0.2.1", "user@nxdomain.spf.test", spf.None},
	} {
		t.Run(c.sender+"/"+c.ip, func(t *testing.T) {
			got, err := dnsCheckSPF(r, c.ip, c.sender)
			if got != c.want {
				t.Fatalf("got %s (%v), want %s", got, err, c.want)
			}
		})
	}
}

func TestSPFSilentResolverIsTempError(t *testing.T) {
	s := dnsSPFServer(t)
	s.SetSilent(true)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	start := time.Now()
	got, err := dnsCheckSPF(r, "192.0.2.1", "user@spf.test")
	if got != spf.TempError {
		t.Fatalf("got %s (%v), want temperror", got, err)
	}
	if elapsed := time.Since(start); elapsed > 2*dnsTestTimeout+dnsSlack {
		t.Fatalf("took %v", elapsed)
	}
	var derr *net.DNSError
	if de, ok := err.(*net.DNSError); !ok || !de.IsTimeout || !de.IsTemporary {
		t.Fatalf("error %#v is not an unwrapped timeout *net.DNSError", err)
	} else {
		derr = de
	}
	if !strings.Contains(derr.Err, "timeout after") {
		t.Fatalf("error text %q", derr.Err)
	}
}

// The adapter's errors, one by one: the spf package type-asserts them.
func TestSPFResolverErrors(t *testing.T) {
	s := dnsSPFServer(t)
	s.Add("v6.spf.test. 300 IN AAAA 2001:db8::5",
		"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.spf.test.")
	s.AddZone("2.0.192.in-addr.arpa.", 60)
	s.Add("1.2.0.192.in-addr.arpa. 300 IN PTR mail.spf.test.")
	s.SetBehavior("servfail.spf.test.", testdns.AnyType, testdns.Servfail)
	r, _ := dnsTestResolver(t, []string{s.Addr()}, nil)
	a := NewSPFResolver(r)
	ctx := context.Background()

	notFound := func(t *testing.T, err error) {
		t.Helper()
		de, ok := err.(*net.DNSError)
		if !ok || !de.IsNotFound || de.IsTemporary || de.IsTimeout {
			t.Fatalf("want unwrapped not-found *net.DNSError, got %#v", err)
		}
	}
	temporary := func(t *testing.T, err error) {
		t.Helper()
		de, ok := err.(*net.DNSError)
		if !ok || de.IsNotFound || !de.IsTemporary || de.IsTimeout {
			t.Fatalf("want unwrapped temporary *net.DNSError, got %#v", err)
		}
	}

	_, err := a.LookupTXT(ctx, "nxdomain.spf.test")
	notFound(t, err)
	_, err = a.LookupTXT(ctx, "mail.spf.test") // NODATA
	notFound(t, err)
	_, err = a.LookupTXT(ctx, "servfail.spf.test")
	temporary(t, err)
	_, err = a.LookupMX(ctx, "servfail.spf.test")
	temporary(t, err)
	_, err = a.LookupIPAddr(ctx, "servfail.spf.test")
	temporary(t, err)
	_, err = a.LookupIPAddr(ctx, ".")
	notFound(t, err)
	_, err = a.LookupIPAddr(ctx, "nxdomain.spf.test")
	notFound(t, err)

	ips, err := a.LookupIPAddr(ctx, "v6.spf.test")
	if err != nil || len(ips) != 1 || ips[0].IP.String() != "2001:db8::5" {
		t.Fatalf("%v %v", ips, err)
	}
	mxs, err := a.LookupMX(ctx, "mxok.spf.test")
	if err != nil || len(mxs) != 1 || mxs[0].Host != "mail.spf.test." || mxs[0].Pref != 10 {
		t.Fatalf("%v %v", mxs, err)
	}
	names, err := a.LookupAddr(ctx, "192.0.2.1")
	if err != nil || len(names) != 1 || names[0] != "mail.spf.test." {
		t.Fatalf("%v %v", names, err)
	}
	names, err = a.LookupAddr(ctx, "2001:db8::5")
	if err != nil || len(names) != 1 || names[0] != "v6.spf.test." {
		t.Fatalf("%v %v", names, err)
	}
	// Outside every zone of the server: REFUSED, temporary.
	_, err = a.LookupAddr(ctx, "2001:db8::6")
	temporary(t, err)
	_, err = a.LookupAddr(ctx, "192.0.2.7")
	notFound(t, err)
}
