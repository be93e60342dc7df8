package main

// The DNS-based checks of the early stages: DNSBL and domain existence
// (DESIGN.md §3 rows 2, 3, 3b). Their configuration and their wiring live
// here, one file per family of checks, so that main stays a list of calls.
// See docs/checks-dnsbl.md and docs/checks-domain.md.

import (
	"fmt"
	"strconv"
	"time"

	"sekisho/filters"
	"sekisho/policy"
)

// DNSBLConfig lists the DNS blocklists.
type DNSBLConfig struct {
	Off bool `yaml:"off"`
	// Zones are "zone[=codes][*weight]", e.g.
	// "zen.spamhaus.org=127.0.0.2..127.0.0.11" (filters.ParseDNSBLZone).
	Zones []string `yaml:"zones"`
	// Threshold is the sum of weights that rejects; 0 or absent: 1.
	Threshold int `yaml:"threshold"`
	// Timeout bounds one connection's lookups; 0: 5s.
	Timeout time.Duration `yaml:"timeout"`
}

func (c *DNSBLConfig) validate() error {
	if c.Off {
		return nil
	}
	zones, err := c.zones()
	if err != nil {
		return err
	}
	if err := filters.ValidateDNSBLThreshold(zones, c.Threshold); err != nil && len(zones) > 0 {
		return invalid(err.Error(), "checks", "dnsbl", "threshold")
	}
	if c.Timeout < 0 || c.Timeout > time.Minute {
		return invalid("timeout must be between 0s (default 5s) and 1m", "checks", "dnsbl", "timeout")
	}
	return nil
}

func (c *DNSBLConfig) zones() ([]filters.DNSBLZone, error) {
	var zones []filters.DNSBLZone
	seen := map[string]bool{}
	for i, s := range c.Zones {
		z, err := filters.ParseDNSBLZone(s)
		if err != nil {
			return nil, invalid("zone "+strconv.Itoa(i+1)+": "+err.Error(), "checks", "dnsbl", "zones")
		}
		if seen[z.Zone] {
			return nil, invalid("zone "+z.Zone+" is listed twice", "checks", "dnsbl", "zones")
		}
		seen[z.Zone] = true
		zones = append(zones, z)
	}
	return zones, nil
}

// DomainConfig configures the domain-existence check.
type DomainConfig struct {
	Off        bool   `yaml:"off"`
	BadDomains string `yaml:"bad_domains"`
	NXDomain   string `yaml:"nxdomain"` // tempfail | reject
	// PopularDomains replaces the list a mistyped domain is compared with
	// (absent: the local domains and policy.PopularDomains; [] turns the
	// suggestion off). omitempty: check-config's printout must not turn an
	// absent list into [], which would switch the suggestion off.
	PopularDomains []string `yaml:"popular_domains,omitempty"`
}

func (c *DomainConfig) validate() error {
	if _, err := filters.ParseNXDomainAction(c.NXDomain); err != nil || c.NXDomain == "" {
		return invalid("nxdomain must be tempfail or reject", "checks", "domain", "nxdomain")
	}
	for _, d := range c.PopularDomains {
		if _, err := policy.ValidateDomain(d); err != nil {
			return invalid(fmt.Sprintf("popular domain %q: %v", d, err), "checks", "domain", "popular_domains")
		}
	}
	return nil
}

// dnsChecks builds the DNSBL and domain-existence checks.
func dnsChecks(cfg *Config, d *deps) ([]filters.Check, error) {
	var checks []filters.Check
	if c := cfg.Checks.DNSBL; !c.Off && len(c.Zones) > 0 {
		zones, err := c.zones()
		if err != nil {
			return nil, fmt.Errorf("checks.dnsbl: %w", err)
		}
		bl, err := filters.NewDNSBL(filters.DNSBLOptions{
			Resolver: d.resolver, Zones: zones, Threshold: c.Threshold, Timeout: c.Timeout, Logger: d.log,
		})
		if err != nil {
			return nil, fmt.Errorf("checks.dnsbl: %w", err)
		}
		checks = append(checks, bl)
	}
	if c := cfg.Checks.Domain; !c.Off {
		nx, err := filters.ParseNXDomainAction(c.NXDomain)
		if err != nil {
			return nil, fmt.Errorf("checks.domain: %w", err)
		}
		sender, recipient, err := filters.NewDomainChecks(filters.DomainOptions{
			Resolver: d.resolver, BadDomains: d.badDomains, NXDomain: nx,
			LocalDomains: cfg.LocalDomains, Popular: c.PopularDomains, Logger: d.log,
		})
		if err != nil {
			return nil, fmt.Errorf("checks.domain: %w", err)
		}
		checks = append(checks, sender, recipient)
	}
	return checks, nil
}
