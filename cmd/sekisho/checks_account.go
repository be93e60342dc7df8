package main

// The LDAP account check (DESIGN.md §3 row 5): its configuration and wiring.

import (
	"fmt"

	"sekisho/config"
	"sekisho/filters"
)

// accountChecks builds the account check when an LDAP directory is
// configured, with its account memory in the state store unless
// ldap.stale_ttl is 0s. Under `sekisho explain` (d.dryRun) the memory is
// read, never written.
func accountChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	if cfg.Checks.Account.Off || d.directory == nil {
		return nil, nil
	}
	opts := filters.AccountOptions{StaleTTL: cfg.LDAP.StaleTTL, ReadOnly: d.dryRun, Logger: d.log}
	if cfg.LDAP.StaleTTL > 0 {
		store, err := d.stateStore(cfg)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		opts.Memory = store
		d.log.Info("account memory", "stale_ttl", cfg.LDAP.StaleTTL)
	}
	return []filters.Check{filters.NewAccountCheck(d.directory, opts)}, nil
}
