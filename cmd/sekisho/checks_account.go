package main

// The LDAP account check (DESIGN.md §3 row 5): its configuration and wiring.

import (
	"sekisho/config"
	"sekisho/filters"
)

// accountChecks builds the account check when an LDAP directory is configured.
func accountChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	if cfg.Checks.Account.Off || d.directory == nil {
		return nil, nil
	}
	return []filters.Check{filters.NewAccountCheck(d.directory)}, nil
}
