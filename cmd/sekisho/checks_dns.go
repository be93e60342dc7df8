package main

// The DNS-based checks of the early stages: DNSBL and domain existence
// (DESIGN.md §3 rows 2, 3, 3b). Their configuration and their wiring live
// here, one file per family of checks, so that main stays a list of calls.
// See docs/checks-dnsbl.md and docs/checks-domain.md.

import (
	"fmt"

	"sekisho/config"
	"sekisho/filters"
)

// dnsChecks builds the DNSBL and domain-existence checks.
func dnsChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	var checks []filters.Check
	if c := cfg.Checks.DNSBL; !c.Off && len(c.Zones) > 0 {
		zones, err := c.ParsedZones()
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
