package main

// The LDAP account check (DESIGN.md §3 row 5): its configuration and wiring.

import (
	"sekisho/filters"
)

// AccountConfig configures the LDAP account check. It runs when ldap.urls is
// set and it is not off.
type AccountConfig struct {
	Off bool `yaml:"off"`
}

func (c *AccountConfig) validate() error { return nil }

// accountChecks builds the account check when an LDAP directory is configured.
func accountChecks(cfg *Config, d *deps) ([]filters.Check, error) {
	if cfg.Checks.Account.Off || d.directory == nil {
		return nil, nil
	}
	return []filters.Check{filters.NewAccountCheck(d.directory)}, nil
}
