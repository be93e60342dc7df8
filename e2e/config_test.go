// Package e2e holds sekisho's end-to-end tests: the built binary, real
// clients (swaks, net/smtp, a raw transcript client), real next hops, and the
// real slapd, redis-server and DNS server of internal/.
package e2e

import (
	"fmt"
	"strings"
	"testing"

	"sekisho/internal/testenv"
)

// site describes a gateway configuration for a test. Zero values give the
// campus.test setup: mail for campus.test relayed to one next hop, 127.0.0.1
// trusted, 127.0.0.2 an outside client.
type site struct {
	smtp     string   // listener address; a free port if empty
	http     string   // the http listener's address; none if empty
	local    []string // local_domains
	trusted  []string
	routes   []string // YAML lines of the routes list
	extra    string   // more top-level YAML
	limits   string   // YAML lines under limits:
	greet    string   // checks.greet_pause delay; "0s" by default
	checks   string   // more YAML lines under checks: (a check not named here is off)
	hostname string
}

func (s site) yaml(t testing.TB) string {
	if s.smtp == "" {
		s.smtp = testenv.FreePort(t)
	}
	if s.local == nil {
		s.local = []string{"campus.test", ".campus.test"}
	}
	if s.trusted == nil {
		s.trusted = []string{"127.0.0.1/32"}
	}
	if s.hostname == "" {
		s.hostname = "mx.campus.test"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname: %s\n", s.hostname)
	fmt.Fprintf(&b, "listen:\n  smtp: %q\n", s.smtp)
	if s.http != "" {
		fmt.Fprintf(&b, "  http: %q\n", s.http)
	}
	fmt.Fprintf(&b, "local_domains: [%s]\n", quoteList(s.local))
	fmt.Fprintf(&b, "trusted_networks: [%s]\n", quoteList(s.trusted))
	b.WriteString("routes:\n")
	for _, r := range s.routes {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	b.WriteString("limits:\n  shutdown_grace: 20s\n")
	for _, l := range strings.Split(strings.TrimSpace(s.limits), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
		}
	}
	if s.greet == "" {
		s.greet = "0s"
	}
	b.WriteString("checks:\n")
	if !strings.Contains(s.checks, "greet_pause:") {
		fmt.Fprintf(&b, "  greet_pause: {delay: %s, exempt: []}\n", s.greet)
	}
	// The checks that need DNS, LDAP or a store are off unless the test
	// configures them: each test is about what it sets up.
	for _, check := range []string{"dnsbl", "domain", "account", "greylist", "spf"} {
		if !strings.Contains(s.checks, check+":") {
			fmt.Fprintf(&b, "  %s: {off: true}\n", check)
		}
	}
	for _, l := range strings.Split(s.checks, "\n") {
		if strings.TrimSpace(l) != "" {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	b.WriteString("log: {level: debug}\n")
	b.WriteString(s.extra)
	return b.String()
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// routeTo is a route line sending domains to next hops.
func routeTo(domains []string, hops ...string) string {
	return fmt.Sprintf("{domains: [%s], next_hops: [%s]}", quoteList(domains), quoteList(hops))
}
