package main

// SPF (DESIGN.md §3 row 7): its configuration and wiring.

import (
	"fmt"
	"time"

	"sekisho/filters"
	"sekisho/lookup"
)

// SPFConfig configures SPF.
type SPFConfig struct {
	Off       bool          `yaml:"off"`
	Fail      string        `yaml:"fail"`      // reject (default) | tag
	TempError string        `yaml:"temperror"` // tag (default) | tempfail
	Timeout   time.Duration `yaml:"timeout"`   // one evaluation, all its lookups; default 20s
}

// maxSPFTimeout keeps an evaluation well inside the 5 minutes an SMTP
// client waits for the reply to RCPT (RFC 5321 §4.5.3.2.3).
const maxSPFTimeout = 2 * time.Minute

// validate checks the settings and fills in the defaults of those left
// empty, so that check-config prints the values in force.
func (c *SPFConfig) validate() error {
	if _, err := filters.ParseSPFFailAction(c.Fail); err != nil {
		return invalid("fail must be reject or tag", "checks", "spf", "fail")
	}
	if _, err := filters.ParseSPFTempErrorAction(c.TempError); err != nil {
		return invalid("temperror must be tag or tempfail (a temperror is never a rejection)", "checks", "spf", "temperror")
	}
	if c.Timeout < 0 || c.Timeout > maxSPFTimeout {
		return invalid(fmt.Sprintf("timeout must be between 0s (the default, %v) and %v", filters.DefaultSPFTimeout, maxSPFTimeout), "checks", "spf", "timeout")
	}
	if c.Fail == "" {
		c.Fail = filters.SPFFailReject.String()
	}
	if c.TempError == "" {
		c.TempError = filters.SPFTempErrorTag.String()
	}
	if c.Timeout == 0 {
		c.Timeout = filters.DefaultSPFTimeout
	}
	return nil
}

// spfChecks builds the SPF check on the shared resolver; the hostname names
// the gateway in Received-SPF and Authentication-Results.
func spfChecks(cfg *Config, d *deps) ([]filters.Check, error) {
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
