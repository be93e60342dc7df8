package config

// The health and alarm settings (docs/metrics.md): which Dependencies
// /readyz requires, and when infrastructure deferrals raise the tempfail
// alarm.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"sekisho/internal/mailaddr"
)

// The Dependencies sekisho_up reports and health.required may name.
const (
	DepDNSCanary  = "dns_canary"
	DepLDAPCanary = "ldap_canary"
	DepStore      = "store"
	DepNextHop    = "next_hop"
)

var Dependencies = []string{DepDNSCanary, DepLDAPCanary, DepStore, DepNextHop}

// HealthConfig configures /readyz and the dependency prober.
type HealthConfig struct {
	// Required are the Dependencies without which /readyz answers 503, so
	// that a load balancer sends new connections to another gateway. The
	// default is none: gateways usually share their Dependencies, and
	// taking every one out of the pool at once would leave clients with
	// nothing, not even the 4xx that makes them retry.
	Required []string `yaml:"required" type:"list of dns_canary, ldap_canary, store, next_hop"`
	// Interval is how often the Dependencies are probed (default 15s).
	Interval time.Duration `yaml:"interval"`
}

// AlarmConfig configures the tempfail alarm (docs/metrics.md).
type AlarmConfig struct {
	// TempfailRatio: the alarm fires when infrastructure deferrals are
	// more than this share of the mail decisions in Window (default 0.2).
	TempfailRatio float64 `yaml:"tempfail_ratio"`
	// Window is the sliding window the ratio is computed over (10m).
	Window time.Duration `yaml:"window"`
	// MinEvents: fewer mail decisions than this in Window never fire (20).
	MinEvents int `yaml:"min_events"`
	// MailTo, when set, is mailed at the start and the end of an
	// episode, through its route's next hop.
	MailTo string `yaml:"mail_to" type:"address"`
}

func (c *Config) validateHealth() error {
	for _, d := range c.Health.Required {
		if !slices.Contains(Dependencies, d) {
			return invalid(fmt.Sprintf("%q is not a dependency (want %s)", d, strings.Join(Dependencies, ", ")), "health", "required")
		}
		if d == DepLDAPCanary && len(c.LDAP.URLs) == 0 {
			return invalid("ldap_canary needs ldap.urls", "health", "required")
		}
	}
	if c.Health.Interval <= 0 {
		return invalid("interval must be positive", "health", "interval")
	}
	a := c.Alarm
	switch {
	case a.TempfailRatio <= 0 || a.TempfailRatio >= 1:
		return invalid("tempfail_ratio must be between 0 and 1", "alarm", "tempfail_ratio")
	case a.Window <= 0:
		return invalid("window must be positive", "alarm", "window")
	case a.MinEvents < 1:
		return invalid("min_events must be at least 1", "alarm", "min_events")
	}
	if a.MailTo != "" {
		to, err := ParseMailbox(a.MailTo)
		if err != nil {
			return invalid(fmt.Sprintf("mail_to %q: %v", a.MailTo, err), "alarm", "mail_to")
		}
		if c.RelayRoutes().Lookup(to.Domain) < 0 {
			return invalid("mail_to "+a.MailTo+" matches no route", "alarm", "mail_to")
		}
	}
	return nil
}

// ParseMailbox parses a plain address (no angle brackets).
func ParseMailbox(s string) (mailaddr.Address, error) {
	a, rest, err := mailaddr.ParsePath("<"+s+">", false, false, false)
	if err == nil && rest != "" {
		err = fmt.Errorf("unexpected %q", rest)
	}
	return a, err
}
