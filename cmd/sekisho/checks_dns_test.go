package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/lookup"
	"sekisho/policy"
)

const dnsTestBase = "hostname: mx\nlocal_domains: [localhost]\n"

// TestDNSChecksWiring: the checks built from a config, by name and stage;
// off turns each off.
func TestDNSChecksWiring(t *testing.T) {
	build := func(yaml string) []filters.Check {
		t.Helper()
		cfg, err := config.Parse("f.yaml", []byte(dnsTestBase+yaml+localRoute))
		if err != nil {
			t.Fatal(err)
		}
		r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{"127.0.0.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		d := &deps{log: slog.New(slog.NewTextHandler(io.Discard, nil)), resolver: r, badDomains: policy.NewBadDomains(policy.BadDomainsOptions{})}
		cs, err := dnsChecks(&cfg, d)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	describe := func(cs []filters.Check) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.Name()+"@"+c.Stage().String())
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct{ yaml, want string }{
		{"", "domain@mail domain@rcpt"},
		{"checks:\n  dnsbl: {zones: [\"zen.test=127.0.0.2..127.0.0.11*2\", b.test], threshold: 2, timeout: 3s}\n", "dnsbl@rcpt domain@mail domain@rcpt"},
		{"checks:\n  dnsbl: {zones: [zen.test], off: true}\n  domain: {off: true}\n", ""},
		{"checks:\n  domain: {nxdomain: reject, popular_domains: []}\n", "domain@mail domain@rcpt"},
	} {
		if got := describe(build(c.yaml)); got != c.want {
			t.Errorf("%q: checks %q, want %q", c.yaml, got, c.want)
		}
	}
	cfg, err := config.Parse("f.yaml", []byte(dnsTestBase+"checks:\n  domain: {popular_domains: []}\n"+localRoute))
	if err != nil || cfg.Checks.Domain.PopularDomains == nil || cfg.Checks.Domain.NXDomain != "tempfail" {
		t.Errorf("popular_domains: [] must stay an empty list (suggestion off), nxdomain default tempfail: %#v %v", cfg.Checks.Domain, err)
	}
}
