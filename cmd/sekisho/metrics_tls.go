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

// relayCacheCollector publishes what the next-hop connection cache did
// (relay.CacheCounters): how many transactions went on a kept connection,
// and how many kept connections were found dead and replaced.
type relayCacheCollector struct{ c *relay.CacheCounters }

var relayCacheDesc = prometheus.NewDesc("sekisho_relay_connection_cache_total",
	"Next hop connections kept between transactions (next_hop.connection_cache_time): reused, a transaction carried by a kept connection; dead, a kept connection that failed at MAIL and was replaced by a fresh one.",
	[]string{"outcome"}, nil)

func (r relayCacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- relayCacheDesc }

func (r relayCacheCollector) Collect(ch chan<- prometheus.Metric) {
	if r.c == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(relayCacheDesc, prometheus.CounterValue, float64(r.c.Reused.Load()), "reused")
	ch <- prometheus.MustNewConstMetric(relayCacheDesc, prometheus.CounterValue, float64(r.c.Dead.Load()), "dead")
}
