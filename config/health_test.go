package config

import (
	"strings"
	"testing"
)

// TestHealthConfigErrors: an unknown dependency, ldap_canary without LDAP,
// an alarm ratio outside (0, 1) and a mail_to without a route are refused
// with file:line; the defaults are the documented ones.
func TestHealthConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"hostname: mx\nhealth:\n  required: [dns, store]\n", `f.yaml:3: "dns" is not a dependency`},
		{"hostname: mx\nhealth: {required: [ldap_canary]}\n", "f.yaml:2: ldap_canary needs ldap.urls"},
		{"hostname: mx\nhealth: {interval: 0s}\n", "f.yaml:2: interval must be positive"},
		{"hostname: mx\nalarm:\n  tempfail_ratio: 1.5\n", "f.yaml:3: tempfail_ratio must be between 0 and 1"},
		{"hostname: mx\nalarm:\n  min_events: 0\n", "f.yaml:3: min_events must be at least 1"},
		{"hostname: mx\nalarm:\n  mail_to: ops@elsewhere.example\n", "f.yaml:3: mail_to ops@elsewhere.example matches no route"},
		{"hostname: mx\nalarm:\n  mail_to: not an address\n", "f.yaml:3: mail_to"},
	} {
		_, err := Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
	cfg := Defaults()
	if len(cfg.Health.Required) != 0 || cfg.Health.Interval.String() != "15s" ||
		cfg.Alarm.TempfailRatio != 0.2 || cfg.Alarm.Window.String() != "10m0s" || cfg.Alarm.MinEvents != 20 {
		t.Errorf("defaults: %+v %+v", cfg.Health, cfg.Alarm)
	}
	if _, err := Parse("f.yaml", []byte("hostname: mx\nhealth: {required: [dns_canary, store, next_hop]}\nalarm: {mail_to: postmaster@localhost}\n"+localSite)); err != nil {
		t.Errorf("valid health and alarm refused: %v", err)
	}
}
