package main

// The DNS-based checks of the early stages: DNSBL and domain existence
// (DESIGN.md §3 rows 2, 3, 3b). Their configuration and their wiring live
// here, one file per family of checks, so that main stays a list of calls.

import (
	"sekisho/filters"
)

// DNSBLConfig lists the DNS blocklists.
type DNSBLConfig struct {
	Off   bool     `yaml:"off"`
	Zones []string `yaml:"zones"`
}

func (c *DNSBLConfig) validate() error { return nil }

// DomainConfig configures the domain-existence check.
type DomainConfig struct {
	Off        bool   `yaml:"off"`
	BadDomains string `yaml:"bad_domains"`
	NXDomain   string `yaml:"nxdomain"` // tempfail | reject
}

func (c *DomainConfig) validate() error {
	switch c.NXDomain {
	case "tempfail", "reject":
		return nil
	}
	return invalid("nxdomain must be tempfail or reject", "checks", "domain", "nxdomain")
}

// dnsChecks builds the DNSBL and domain-existence checks.
func dnsChecks(cfg *Config, d *deps) ([]filters.Check, error) {
	return nil, nil
}
