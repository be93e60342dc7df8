package main

// The dependencies' health (sekisho_up) and readiness (/readyz): a prober
// asks the DNS canary, the LDAP canary and the state store every
// health.interval; the next hops are judged by the call-aheads themselves
// (the last outcome per route, from the decisions the gateway reports).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sekisho/config"
	"sekisho/greylist"
	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/relay"
	"sekisho/report"
)

// depState is what the last probe of a dependency found.
type depState struct {
	up      bool
	reason  string
	checked time.Time
}

// healthKey is the key the store probe reads: absent, so the answer is
// "not found" from a store that works.
const healthKey = "sekisho:health-probe"

// health probes the dependencies and answers /readyz. It is also a
// report.Recorder, to see the next hops' outcomes.
type health struct {
	interval time.Duration
	required []string
	store    greylist.KV // nil: no store opened
	draining func() bool
	stopping atomic.Bool // set at SIGTERM, before the drain begins

	mu sync.Mutex
	// What a configuration reload changes (follow, reload.go).
	resolver *lookup.Resolver  // nil: no DNS canary probe
	dir      *lookup.Directory // nil: no LDAP configured
	ldapAddr string            // the address the LDAP probe asks for
	router   *relay.Router
	routes   []string            // a name per route: its first domain
	deps     map[string]depState // dns_canary, ldap_canary, store
	hops     map[int]depState    // by route index
}

func newHealth(cfg *config.Config, d *deps, router *relay.Router, draining func() bool) *health {
	h := &health{
		interval: cfg.Health.Interval, required: cfg.Health.Required,
		store: d.store, draining: draining, deps: map[string]depState{},
	}
	h.follow(cfg, d, router) // the lookups and routes (reload.go)
	return h
}

// configured lists the dependencies this gateway has, in order.
func (h *health) configured() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ds []string
	if h.resolver != nil {
		ds = append(ds, config.DepDNSCanary)
	}
	if h.dir != nil {
		ds = append(ds, config.DepLDAPCanary)
	}
	if h.store != nil {
		ds = append(ds, config.DepStore)
	}
	return append(ds, config.DepNextHop)
}

// run probes now and every interval until ctx ends.
func (h *health) run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe asks every probed dependency at once, each within the interval
// (and at most 10 s).
func (h *health) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, min(h.interval, 10*time.Second))
	defer cancel()
	h.mu.Lock()
	resolver, dir, ldapAddr := h.resolver, h.dir, h.ldapAddr
	h.mu.Unlock()
	var wg sync.WaitGroup
	set := func(dep string, up bool, reason string) {
		h.mu.Lock()
		h.deps[dep] = depState{up: up, reason: reason, checked: time.Now()}
		h.mu.Unlock()
	}
	if resolver != nil {
		wg.Go(func() {
			r := resolver.Health(ctx)
			set(config.DepDNSCanary, r.Healthy, r.Reason)
		})
	}
	if dir != nil {
		wg.Go(func() {
			r := dir.Account(ctx, ldapAddr)
			set(config.DepLDAPCanary, r.Outcome != lookup.AccountCouldNotTell, r.Reason)
		})
	}
	if h.store != nil {
		wg.Go(func() {
			_, _, err := h.store.GetValue(ctx, healthKey)
			if err != nil {
				set(config.DepStore, false, err.Error())
				return
			}
			set(config.DepStore, true, "answered")
		})
	}
	wg.Wait()
}

// Record implements report.Recorder: a recipient accepted means its route's
// next hop answered; nexthop_tempfail means it did not. Other causes say
// nothing about the next hop (the checks refuse before the call-ahead).
func (h *health) Record(e report.Event) {
	var up bool
	switch e.Cause {
	case report.Accepted:
		up = true
	case report.NexthopTempfail:
	default:
		return
	}
	at := strings.LastIndexByte(e.Recipient, '@')
	if at < 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	route := h.router.Lookup(mailaddr.Fold(e.Recipient[at+1:]))
	if route < 0 {
		return
	}
	reason := "last call-ahead answered"
	if !up {
		reason = "last call-ahead failed"
	}
	h.hops[route] = depState{up: up, reason: reason, checked: e.Time}
}

// state returns a dependency's state; ok is false before its first probe.
// next_hop is up unless the last call-ahead of some route failed.
func (h *health) state(dep string) (s depState, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if dep != config.DepNextHop {
		s, ok = h.deps[dep]
		return s, ok
	}
	s = depState{up: true, reason: "no call-ahead failed"}
	var down []string
	for i, st := range h.hops {
		if !st.up {
			down = append(down, h.routes[i])
		}
	}
	if len(down) > 0 {
		s = depState{up: false, reason: "last call-ahead failed for route " + strings.Join(down, ", ")}
	}
	return s, true
}

// ready tells /readyz's answer and why.
func (h *health) ready() (bool, string) {
	if h.stopping.Load() || h.draining != nil && h.draining() {
		return false, "draining: shutting down, transactions in flight are finishing"
	}
	var why []string
	for _, dep := range h.required {
		s, ok := h.state(dep)
		switch {
		case !ok:
			why = append(why, dep+": not probed yet")
		case !s.up:
			why = append(why, dep+" down: "+s.reason)
		}
	}
	if len(why) > 0 {
		return false, "not ready: " + strings.Join(why, "; ")
	}
	if len(h.required) == 0 {
		return true, "ready (no dependency required)"
	}
	return true, "ready: " + strings.Join(h.required, ", ") + " up"
}

func (h *health) readyz(w http.ResponseWriter, _ *http.Request) {
	ok, why := h.ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, why+"\n")
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok: the process is alive (readiness: /readyz)\n")
}

// String summarizes every dependency (for the log at start).
func (h *health) String() string {
	var parts []string
	for _, dep := range h.configured() {
		s, ok := h.state(dep)
		switch {
		case !ok:
			parts = append(parts, dep+"=unknown")
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", dep, s.up))
		}
	}
	return strings.Join(parts, " ")
}
