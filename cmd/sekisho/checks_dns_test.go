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

// TestDNSChecksConfigErrors: the DNSBL and domain settings are validated
// with file:line.
func TestDNSChecksConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"checks:\n  dnsbl:\n    zones: [zen.test, \"bl.test=127.0.0.9..127.0.0.2\"]\n", "f.yaml:5: zone 2: \"bl.test=127.0.0.9..127.0.0.2\": return codes"},
		{"checks:\n  dnsbl:\n    zones: [\"bl.test=127.255.255.254\"]\n", "f.yaml:5: zone 1:"},
		{"checks:\n  dnsbl:\n    zones: [a.test, A.test.]\n", "f.yaml:5: zone a.test is listed twice"},
		{"checks:\n  dnsbl:\n    zones: [\"a.test*2\", b.test]\n    threshold: 4\n", "f.yaml:6: threshold 4 is above the weights"},
		{"checks:\n  dnsbl:\n    zones: [a.test]\n    timeout: 2m\n", "f.yaml:6: timeout must be"},
		{"checks:\n  dnsbl:\n    zone: [a.test]\n", `f.yaml:5: unknown key "zone" in checks.dnsbl (did you mean "zones"?)`},
		{"checks:\n  domain:\n    popular_domains: [gmail.com, \"gmail com\"]\n", "f.yaml:5: popular domain \"gmail com\""},
		{"checks:\n  domain:\n    nxdomain: \"\"\n", "f.yaml:5: nxdomain must be"},
	}
	for _, c := range cases {
		_, err := config.Parse("f.yaml", []byte(dnsTestBase+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
	// Off: nothing is judged.
	if _, err := config.Parse("f.yaml", []byte(dnsTestBase+"checks:\n  dnsbl: {off: true, zones: [\"x=1\"]}\n"+localRoute)); err != nil {
		t.Errorf("an off dnsbl section judged: %v", err)
	}
}

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
