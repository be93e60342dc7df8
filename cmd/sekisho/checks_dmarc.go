package main

// DKIM and DMARC of inbound mail (DESIGN.md §3 row 8): its configuration,
// wiring and metrics.

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/internal/mailaddr"
)

// dmarcChecks builds the DKIM/DMARC check on the shared resolver.
func dmarcChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	c := cfg.Checks.DMARC
	if c.Off {
		return nil, nil
	}
	nets, names, err := c.Forwarders()
	if err != nil {
		return nil, fmt.Errorf("checks.dmarc: %w", err)
	}
	var observe func(method, result string)
	if d.authResults != nil {
		observe = d.authResults.observe
	}
	check, err := filters.NewDMARC(filters.DMARCOptions{
		Resolver:       d.resolver,
		AuthServID:     cfg.Hostname,
		LocalDomains:   mailaddr.NewDomainSet(cfg.LocalDomains),
		Reject:         filters.DMARCAction(c.Reject),
		Quarantine:     filters.DMARCAction(c.Quarantine),
		LocalFrom:      filters.DMARCAction(c.LocalFrom),
		TempError:      filters.DMARCTempErrorAction(c.TempError),
		ForwarderNets:  nets,
		ForwarderNames: names,
		MaxSignatures:  c.MaxSignatures,
		Timeout:        c.Timeout,
		Observe:        observe,
	})
	if err != nil {
		return nil, fmt.Errorf("checks.dmarc: %w", err)
	}
	return []filters.Check{check}, nil
}

// authResultCounts counts the results of the message authentication
// methods (dkim: one per signature; dmarc: one per From domain) for
// sekisho_auth_results_total. It outlives reloads (deps carries it on).
type authResultCounts struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

func newAuthResultCounts() *authResultCounts {
	return &authResultCounts{n: map[[2]string]uint64{}}
}

func (a *authResultCounts) observe(method, result string) {
	a.mu.Lock()
	a.n[[2]string{method, result}]++
	a.mu.Unlock()
}

var authResultsDesc = prometheus.NewDesc("sekisho_auth_results_total",
	"Results of message authentication of inbound mail, by method (dkim: one per signature verified; dmarc: one per From domain) and result (pass, fail, none, neutral, temperror, permerror).",
	[]string{"method", "result"}, nil)

func (a *authResultCounts) Describe(ch chan<- *prometheus.Desc) { ch <- authResultsDesc }

func (a *authResultCounts) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, n := range a.n {
		ch <- prometheus.MustNewConstMetric(authResultsDesc, prometheus.CounterValue, float64(n), k[0], k[1])
	}
}
