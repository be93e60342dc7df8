package lookup

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"sekisho/internal/testdns"
)

func dnsBenchServer(b *testing.B) *testdns.Server {
	s := testdns.Start(b)
	s.AddZone("campus.test.", 60)
	s.Add("campus.test. 300 IN MX 10 mx1.campus.test.", "mx1.campus.test. 300 IN A 192.0.2.25")
	return s
}

// BenchmarkLookupCached: an MX lookup answered from the cache.
func BenchmarkLookupCached(b *testing.B) {
	s := dnsBenchServer(b)
	r, err := NewResolver(DNSConfig{Resolvers: []string{s.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if res := r.Lookup(ctx, "campus.test", dns.TypeMX); res.Outcome != DNSFound {
		b.Fatal(res.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Lookup(ctx, "campus.test", dns.TypeMX); !res.Cached {
			b.Fatal("not cached")
		}
	}
	if n := s.TotalQueries(); n != 1 {
		b.Fatalf("%d upstream queries", n)
	}
}

// BenchmarkLookupUncached: an MX lookup with the cache off, i.e. one UDP
// round trip to testdns on loopback per lookup.
func BenchmarkLookupUncached(b *testing.B) {
	s := dnsBenchServer(b)
	r, err := NewResolver(DNSConfig{Resolvers: []string{s.Addr()}, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Lookup(ctx, "campus.test", dns.TypeMX); res.Outcome != DNSFound {
			b.Fatal(res.Reason)
		}
	}
}

// BenchmarkDomainExistsCached: the domain check as the RCPT stage runs it,
// from the cache.
func BenchmarkDomainExistsCached(b *testing.B) {
	s := dnsBenchServer(b)
	r, err := NewResolver(DNSConfig{Resolvers: []string{s.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.DomainExists(ctx, "campus.test"); res.Outcome != DomainFound {
			b.Fatal(res.Reason)
		}
	}
}
