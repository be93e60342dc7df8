package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"sekisho/relay"
)

// relayTLSCollector publishes what happened to TLS at the next hop
// connections (relay.TLSCounters), so that an admin sees opportunistic TLS
// falling back to clear, and required TLS refusing next hops.
type relayTLSCollector struct{ c *relay.TLSCounters }

var relayTLSDesc = prometheus.NewDesc("sekisho_relay_tls_total",
	"Next hop connections by what happened to TLS (encrypted, verified: of those, the certificate valid for the name; clear_*: tls may without TLS; refused: TLS required and not had, next hop skipped).",
	[]string{"outcome"}, nil)

func (r relayTLSCollector) Describe(ch chan<- *prometheus.Desc) { ch <- relayTLSDesc }

func (r relayTLSCollector) Collect(ch chan<- prometheus.Metric) {
	c := r.c
	if c == nil {
		return
	}
	for _, kv := range []struct {
		outcome string
		n       uint64
	}{
		{"encrypted", c.Encrypted.Load()},
		{"verified", c.Verified.Load()},
		{"clear_not_offered", c.ClearNotOffered.Load()},
		{"clear_starttls_refused", c.ClearRefused.Load()},
		{"clear_after_handshake_failure", c.ClearAfterHandshakeFailure.Load()},
		{"refused", c.Refused.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(relayTLSDesc, prometheus.CounterValue, float64(kv.n), kv.outcome)
	}
}
