package main

// /metrics (docs/metrics.md): one registry of sekisho's own, wired here
// explicitly — the gateway's decisions and connections, the lookups'
// durations, the dependencies' health, the tempfail alarm, what the checks
// count (DNSBL answers, greylist store), the relay's TLS outcomes, the report
// counter's drops, and the Go and process collectors. Nothing is registered
// in client_golang's global default registry.

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sekisho/auth"
	"sekisho/filters"
	"sekisho/greylist"
	"sekisho/lookup"
)

// lookupDuration is sekisho_lookup_duration_seconds: how long DNS, LDAP,
// store and next hop lookups take, by outcome. Buckets from 1 ms (a LAN
// answer) to 30 s (a call-ahead's budget).
func newLookupDuration() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sekisho_lookup_duration_seconds",
		Help:    "Duration of lookups that asked a server (cache hits are not observed), by kind (dns, ldap, store) and outcome (dns: found, nxdomain, nodata, could_not_tell; ldap: found, not_found, could_not_tell; store: ok, error).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"kind", "outcome"})
}

// observer feeds the histogram (lookup.ObserveFunc).
func observer(h *prometheus.HistogramVec) lookup.ObserveFunc {
	return func(kind, outcome string, took time.Duration) {
		h.WithLabelValues(kind, outcome).Observe(took.Seconds())
	}
}

// timedStore observes the greylist store's calls (kind store) and passes
// them on.
type timedStore struct {
	greylist.Store
	observe lookup.ObserveFunc
}

func (s timedStore) done(start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.observe("store", outcome, time.Since(start))
}

func (s timedStore) Check(ctx context.Context, t greylist.Triplet, p greylist.Policy) (greylist.Decision, error) {
	start := time.Now()
	d, err := s.Store.Check(ctx, t, p)
	s.done(start, err)
	return d, err
}

func (s timedStore) Peek(ctx context.Context, t greylist.Triplet, p greylist.Policy) (greylist.Decision, error) {
	start := time.Now()
	d, err := s.Store.Peek(ctx, t, p)
	s.done(start, err)
	return d, err
}

func (s timedStore) GetValue(ctx context.Context, key string) ([]byte, bool, error) {
	start := time.Now()
	v, ok, err := s.Store.GetValue(ctx, key)
	s.done(start, err)
	return v, ok, err
}

func (s timedStore) PutValue(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	start := time.Now()
	err := s.Store.PutValue(ctx, key, v, ttl)
	s.done(start, err)
	return err
}

func (s timedStore) DeleteValue(ctx context.Context, key string) error {
	start := time.Now()
	err := s.Store.DeleteValue(ctx, key)
	s.done(start, err)
	return err
}

// checksCollector publishes what the checks count: per DNSBL zone the
// answers by kind (a zone that refuses us or times out protects nobody, and
// an admin must see it), and the health of the greylist store.
type checksCollector struct {
	dnsbl   *filters.DNSBL
	grey    *filters.Greylist
	account *filters.AccountCheck
	auth    *auth.Service // the MSA's, when submission is served
}

var (
	dnsblAnswersDesc = prometheus.NewDesc("sekisho_dnsbl_answers_total",
		"DNSBL answers by zone and kind (refused: 127.255.255.x, the list refuses our queries).", []string{"zone", "answer"}, nil)
	greyHealthyDesc = prometheus.NewDesc("sekisho_greylist_store_healthy",
		"1 if the last greylist store operation succeeded.", nil, nil)
	ldapStaleDesc = prometheus.NewDesc("sekisho_ldap_stale_total",
		"Recipients the account check let pass from the account memory while the directory could not tell (served stale, ldap.stale_ttl); the call-ahead may still refuse them.", nil, nil)
	accountMemoryErrorsDesc = prometheus.NewDesc("sekisho_account_memory_errors_total",
		"Account memory calls (remember, forget, serve stale) that the state store did not answer.", nil, nil)
	authBudgetErrorsDesc = prometheus.NewDesc("sekisho_auth_budget_store_errors_total",
		"Calls to the MSA's budgets shared in Redis (failure throttles, hourly limits) that the store did not answer: each a throttle or limit skipped.", nil, nil)
	greyErrorsDesc = prometheus.NewDesc("sekisho_greylist_store_errors_total",
		"Greylist store operations that failed (mail then passed or was deferred per on_store_error).", nil, nil)
)

func newChecksCollector(chain *filters.Chain) *checksCollector {
	c := &checksCollector{}
	for _, ch := range chain.Checks(filters.StageRcpt) {
		switch x := ch.(type) {
		case *filters.DNSBL:
			c.dnsbl = x
		case *filters.Greylist:
			c.grey = x
		case *filters.AccountCheck:
			c.account = x
		}
	}
	return c
}

func (c *checksCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dnsblAnswersDesc
	ch <- greyHealthyDesc
	ch <- greyErrorsDesc
	ch <- ldapStaleDesc
	ch <- accountMemoryErrorsDesc
	ch <- authBudgetErrorsDesc
}

func (c *checksCollector) Collect(ch chan<- prometheus.Metric) {
	if c.dnsbl != nil {
		for _, z := range c.dnsbl.Stats() {
			for _, kv := range []struct {
				kind string
				n    uint64
			}{{"listed", z.Listed}, {"not_listed", z.NotListed}, {"refused", z.Refused}, {"could_not_tell", z.CouldNotTell}} {
				ch <- prometheus.MustNewConstMetric(dnsblAnswersDesc, prometheus.CounterValue, float64(kv.n), z.Zone, kv.kind)
			}
		}
	}
	if c.grey != nil {
		ch <- prometheus.MustNewConstMetric(greyHealthyDesc, prometheus.GaugeValue, b2f(c.grey.StoreHealthy()))
		ch <- prometheus.MustNewConstMetric(greyErrorsDesc, prometheus.CounterValue, float64(c.grey.StoreErrors()))
	}
	if c.account != nil {
		ch <- prometheus.MustNewConstMetric(ldapStaleDesc, prometheus.CounterValue, float64(c.account.ServedStale()))
		ch <- prometheus.MustNewConstMetric(accountMemoryErrorsDesc, prometheus.CounterValue, float64(c.account.MemoryErrors()))
	}
	if c.auth != nil {
		ch <- prometheus.MustNewConstMetric(authBudgetErrorsDesc, prometheus.CounterValue, float64(c.auth.SharedErrors()))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// healthCollector publishes sekisho_up per configured dependency (once
// probed) and sekisho_next_hop_up per route that had a call-ahead.
type healthCollector struct{ h *health }

var (
	upDesc = prometheus.NewDesc("sekisho_up",
		"1 if a dependency answered its last probe (dns_canary, ldap_canary, store: every health.interval; next_hop: 0 while the last call-ahead of some route failed).", []string{"dependency"}, nil)
	nextHopUpDesc = prometheus.NewDesc("sekisho_next_hop_up",
		"1 if the last call-ahead of a route (named by its first domain) was answered, 0 if it failed; absent before the first.", []string{"route"}, nil)
	readyDesc = prometheus.NewDesc("sekisho_ready",
		"1 if /readyz answers 200 (not draining, every required dependency up).", nil, nil)
)

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upDesc
	ch <- nextHopUpDesc
	ch <- readyDesc
}

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, dep := range c.h.configured() {
		if s, ok := c.h.state(dep); ok {
			ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, b2f(s.up), dep)
		}
	}
	c.h.mu.Lock()
	for i, s := range c.h.hops {
		ch <- prometheus.MustNewConstMetric(nextHopUpDesc, prometheus.GaugeValue, b2f(s.up), c.h.routes[i])
	}
	c.h.mu.Unlock()
	ready, _ := c.h.ready()
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, b2f(ready))
}

var alarmDesc = prometheus.NewDesc("sekisho_alarm", "1 while an alarm episode is on (kind tempfail: infrastructure deferrals above alarm.tempfail_ratio).", []string{"kind"}, nil)

type alarmCollector struct{ a *tempfailAlarm }

func (c alarmCollector) Describe(ch chan<- *prometheus.Desc) { ch <- alarmDesc }

func (c alarmCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(alarmDesc, prometheus.GaugeValue, b2f(c.a.Firing()), "tempfail")
}

// newRegistry builds the registry of /metrics from the collectors given
// (nil ones are skipped), with the Go and process collectors.
func newRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range cs {
		if c == nil {
			continue
		}
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// metricsHandler serves the registry in the text format (or OpenMetrics
// when asked); an error while collecting is logged by promhttp's default
// and the rest is still served.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
