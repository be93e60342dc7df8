package lookup

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/testdns"
)

func TestMailHosts(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddZone("mx.test.", 60)
	srv.Add(
		"two.mx.test. 60 IN MX 20 b.mx.test.",
		"two.mx.test. 60 IN MX 10 a.mx.test.",
		"a.mx.test. 60 IN A 192.0.2.10",
		"b.mx.test. 60 IN A 192.0.2.20",
		"b.mx.test. 60 IN AAAA 2001:db8::20",
		"implicit.mx.test. 60 IN A 192.0.2.30",
		"null.mx.test. 60 IN MX 0 .",
		"dangling.mx.test. 60 IN MX 10 nowhere.mx.test.",
		"broken.mx.test. 60 IN MX 10 fails.mx.test.",
	)
	srv.SetBehavior("fails.mx.test.", testdns.AnyType, testdns.Servfail)
	r, err := NewResolver(DNSConfig{Resolvers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	hosts, res := r.MailHosts(ctx, "two.mx.test")
	if res.Outcome != DomainFound || len(hosts) != 2 || hosts[0].Name != "a.mx.test" || len(hosts[1].Addrs) != 2 {
		t.Errorf("two: %+v %+v", hosts, res)
	}
	hosts, res = r.MailHosts(ctx, "implicit.mx.test")
	if res.Outcome != DomainFound || len(hosts) != 1 || hosts[0].Addrs[0].String() != "192.0.2.30" {
		t.Errorf("implicit: %+v %+v", hosts, res)
	}
	for name, want := range map[string]DomainOutcome{
		"null.mx.test":     DomainNullMX,
		"absent.mx.test":   DomainNotFound,
		"dangling.mx.test": DomainNotFound,
		"broken.mx.test":   DomainCouldNotTell,
	} {
		if _, res := r.MailHosts(ctx, name); res.Outcome != want {
			t.Errorf("%s: %v (%s), want %v", name, res.Outcome, res.Reason, want)
		}
	}
	_ = dns.TypeMX
}

func TestTXTUnescapedAndOddNames(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddZone("txt.test.", 60)
	srv.Add(`quoted.txt.test. 60 IN TXT "v=spf1 \"q\" back\\slash caf\195\169"`)
	r, err := NewResolver(DNSConfig{Resolvers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	txts, res := r.LookupTXT(context.Background(), "quoted.txt.test")
	if res.Outcome != DNSFound || len(txts) != 1 || txts[0] != "v=spf1 \"q\" back\\slash café" {
		t.Errorf("TXT = %q (%v)", txts, res.Reason)
	}
	// A name with a space (as SPF macros can make) is asked and answered.
	if _, res := r.LookupTXT(context.Background(), "a space.txt.test"); res.Outcome != DNSNXDomain {
		t.Errorf("odd name: %v %s", res.Outcome, res.Reason)
	}
}
