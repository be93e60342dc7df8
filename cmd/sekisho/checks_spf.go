package main

// SPF (DESIGN.md §3 row 7): its configuration and wiring.

import (
	"sekisho/filters"
)

// SPFConfig configures SPF.
type SPFConfig struct {
	Off  bool   `yaml:"off"`
	Fail string `yaml:"fail"` // reject | tag
}

func (c *SPFConfig) validate() error {
	switch c.Fail {
	case "reject", "tag":
		return nil
	}
	return invalid("fail must be reject or tag", "checks", "spf", "fail")
}

// spfChecks builds the SPF check.
func spfChecks(cfg *Config, d *deps) ([]filters.Check, error) {
	return nil, nil
}
