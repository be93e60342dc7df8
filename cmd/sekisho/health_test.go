package main

import (
	"strings"
	"testing"

	"sekisho/config"
	"sekisho/relay"
	"sekisho/report"
)

// TestReadiness: draining is 503 whatever else; a required dependency not
// yet probed or down is 503 naming it; a dependency that is not required
// does not matter; next_hop follows the last call-ahead of each route.
func TestReadiness(t *testing.T) {
	cfg := config.Defaults()
	router := &relay.Router{Routes: cfg.RelayRoutes()}
	draining := false
	h := newHealth(&cfg, &deps{}, router, func() bool { return draining })
	h.required = []string{config.DepStore, config.DepNextHop}

	check := func(wantOK bool, wantWhy string) {
		t.Helper()
		ok, why := h.ready()
		if ok != wantOK || !strings.Contains(why, wantWhy) {
			t.Errorf("ready() = %v %q, want %v %q", ok, why, wantOK, wantWhy)
		}
	}
	check(false, "store: not probed yet")
	h.deps[config.DepStore] = depState{up: false, reason: "redis: connection refused"}
	h.deps[config.DepDNSCanary] = depState{up: false, reason: "not required"}
	check(false, "store down: redis: connection refused")
	h.deps[config.DepStore] = depState{up: true}
	check(true, "ready: store, next_hop up")

	h.Record(report.Event{Cause: report.NexthopTempfail, Recipient: "alice@localhost"})
	check(false, "next_hop down: last call-ahead failed for route localhost")
	h.Record(report.Event{Cause: report.UnknownUser, Recipient: "bob@localhost"}) // says nothing of the next hop
	check(false, "next_hop down")
	h.Record(report.Event{Cause: report.Accepted, Recipient: "alice@LOCALHOST"})
	check(true, "ready")
	h.Record(report.Event{Cause: report.NexthopTempfail, Recipient: "x@elsewhere.example"}) // no route
	check(true, "ready")

	draining = true
	check(false, "draining")
}
