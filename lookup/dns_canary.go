package lookup

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// How long a canary probe's result is trusted. A failure is re-probed
// sooner than a success, so that a recovered DNS is noticed quickly.
const (
	dnsCanaryHealthyFor   = 10 * time.Second
	dnsCanaryUnhealthyFor = 2 * time.Second
)

// dnsCanaryKey is the singleflight key of the canary probe (not a valid
// question key, so it never collides with one).
const dnsCanaryKey = "\x00canary"

// DNSHealth is the state of DNS as the canary saw it.
type DNSHealth struct {
	Healthy bool
	// Reason says what the probe found: "canary campus.test.: 1 MX from …",
	// "canary campus.test.: MX: timeout after 2 attempts (…)".
	Reason string
	// Checked is when the probe ran.
	Checked time.Time
}

// Health probes the canary name, or returns the result of a recent probe
// (trusted for 10 s when healthy, 2 s when not). The probe asks the
// resolvers directly, bypassing the cache, for the canary's MX and, if it
// certainly has none, its A record; any record found means healthy.
// NXDOMAIN, NODATA on both or could-not-tell mean unhealthy. Concurrent
// callers share one probe; a caller whose ctx ends first gets "unhealthy".
//
// With no canary configured, DNS is always reported healthy.
func (r *Resolver) Health(ctx context.Context) DNSHealth {
	if r.canary == "" {
		return DNSHealth{Healthy: true, Reason: "no DNS canary configured"}
	}
	r.healthMu.Lock()
	if r.now().Before(r.healthUntil) {
		h := r.health
		r.healthMu.Unlock()
		return h
	}
	r.healthMu.Unlock()

	ch := r.flight.DoChan(dnsCanaryKey, func() (any, error) { return r.probeCanary(), nil })
	if r.dnsTestHookJoined != nil {
		r.dnsTestHookJoined(dnsCanaryKey)
	}
	select {
	case res := <-ch:
		return res.Val.(DNSHealth)
	case <-ctx.Done():
		return DNSHealth{Healthy: false, Reason: "canary " + r.canary + ": gave up waiting: " + ctx.Err().Error(), Checked: r.now()}
	}
}

func (r *Resolver) probeCanary() DNSHealth {
	// A probe that finished just before we joined is still good.
	r.healthMu.Lock()
	if r.now().Before(r.healthUntil) {
		h := r.health
		r.healthMu.Unlock()
		return h
	}
	r.healthMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), r.budget())
	defer cancel()
	h := DNSHealth{Checked: r.now()}
	mx, _ := r.resolve(ctx, r.canary, dns.TypeMX)
	switch mx.Outcome {
	case DNSFound:
		h.Healthy, h.Reason = true, "canary "+r.canary+": "+mx.Reason
	case DNSCouldNotTell:
		h.Reason = "canary " + r.canary + ": MX: " + mx.Reason
	default:
		a, _ := r.resolve(ctx, r.canary, dns.TypeA)
		h.Healthy = a.Outcome == DNSFound
		h.Reason = "canary " + r.canary + ": MX: " + mx.Reason + "; A: " + a.Reason
	}

	until := h.Checked.Add(dnsCanaryUnhealthyFor)
	if h.Healthy {
		until = h.Checked.Add(dnsCanaryHealthyFor)
	}
	r.healthMu.Lock()
	r.health, r.healthUntil = h, until
	r.healthMu.Unlock()
	return h
}
