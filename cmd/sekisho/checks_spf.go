package main

// SPF (DESIGN.md §3 row 7): its configuration and wiring.

import (
	"fmt"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/lookup"
)

// spfChecks builds the SPF check on the shared resolver; the hostname names
// the gateway in Received-SPF and Authentication-Results.
func spfChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	c := cfg.Checks.SPF
	if c.Off {
		return nil, nil
	}
	fail, err := filters.ParseSPFFailAction(c.Fail)
	if err != nil {
		return nil, fmt.Errorf("checks.spf: %w", err)
	}
	tempError, err := filters.ParseSPFTempErrorAction(c.TempError)
	if err != nil {
		return nil, fmt.Errorf("checks.spf: %w", err)
	}
	check, err := filters.NewSPF(filters.SPFOptions{
		Resolver:   lookup.NewSPFResolver(d.resolver),
		AuthServID: cfg.Hostname,
		Fail:       fail,
		TempError:  tempError,
		Timeout:    c.Timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("checks.spf: %w", err)
	}
	return []filters.Check{check}, nil
}
