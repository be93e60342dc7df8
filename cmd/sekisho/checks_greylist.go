package main

// Greylisting (DESIGN.md §3 row 6): its configuration and wiring.

import (
	"time"

	"sekisho/filters"
)

// GreylistConfig configures greylisting.
type GreylistConfig struct {
	Off           bool          `yaml:"off"`
	Delay         time.Duration `yaml:"delay"`
	RetryWindow   time.Duration `yaml:"retry_window"`
	Expire        time.Duration `yaml:"expire"`
	AutoWhitelist int           `yaml:"auto_whitelist"`
	OnStoreError  string        `yaml:"on_store_error"` // accept | tempfail
}

func (c *GreylistConfig) validate() error {
	switch c.OnStoreError {
	case "accept", "tempfail":
		return nil
	}
	return invalid("on_store_error must be accept or tempfail", "checks", "greylist", "on_store_error")
}

// greylistChecks builds the greylisting check on the configured store.
func greylistChecks(cfg *Config, d *deps) ([]filters.Check, error) {
	return nil, nil
}
