package greylist

import (
	"net/netip"
	"testing"
	"time"
)

// TestStatsBothStores: a triplet's first pass reports how long it was held
// (Decision.Delayed), a later pass does not; the week's longest delay per
// domain is the maximum recorded, a domain's pool the distinct client
// addresses, both sorted largest first and cut at top; other weeks are
// apart.
func TestStatsBothStores(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		p := DefaultPolicy()
		tr := NewDomainTriplet("Big.Example", "alice@campus.test")
		if d, err := h.Check(ctx, tr, p); err != nil || d.Pass || d.Delayed != 0 {
			t.Fatalf("first attempt: %+v %v", d, err)
		}
		h.advance(7 * time.Minute)
		d, err := h.Check(ctx, tr, p)
		if err != nil || !d.Pass || d.Delayed < 7*time.Minute || d.Delayed > 7*time.Minute+h.slack {
			t.Fatalf("first pass: %+v %v, want Delayed 7m", d, err)
		}
		if d, _ := h.Check(ctx, tr, p); !d.Pass || d.Delayed != 0 {
			t.Fatalf("second pass: %+v, want Delayed 0", d)
		}
		net := NewTriplet(netip.MustParseAddr("192.0.2.1"), "a@other.example", "bob@campus.test", DefaultNetworkPrefix)
		if d, _ := h.Check(ctx, net, p); d.Pass {
			t.Fatal("network triplet passed at once")
		}

		until := time.Now().Add(time.Hour)
		for _, r := range []Retry{
			{Week: "2026-W48", Domain: "big.example", Client: "192.0.2.1", Delay: 7 * time.Minute},
			{Week: "2026-W48", Domain: "big.example", Client: "198.51.100.2"},
			{Week: "2026-W48", Domain: "big.example", Client: "198.51.100.2", Delay: 3 * time.Minute},
			{Week: "2026-W48", Domain: "big.example", Client: "203.0.113.3"},
			{Week: "2026-W48", Domain: "slow.example", Client: "192.0.2.9", Delay: 20 * time.Hour},
			{Week: "2026-W48", Domain: "small.example", Client: "192.0.2.9", Delay: time.Minute},
			{Week: "2026-W47", Domain: "old.example", Client: "192.0.2.7", Delay: 40 * time.Hour},
		} {
			r.Until = until
			if err := h.AddRetry(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		ws, err := h.ReadStats(ctx, "2026-W48", 2)
		if err != nil {
			t.Fatal(err)
		}
		wantDelays := []DomainDelay{{"slow.example", 20 * time.Hour}, {"big.example", 7 * time.Minute}}
		wantPools := []DomainPool{{"big.example", 3}, {"slow.example", 1}}
		if len(ws.Delays) != 2 || ws.Delays[0] != wantDelays[0] || ws.Delays[1] != wantDelays[1] {
			t.Errorf("delays %v, want %v", ws.Delays, wantDelays)
		}
		if len(ws.Pools) != 2 || ws.Pools[0] != wantPools[0] || ws.Pools[1] != wantPools[1] {
			t.Errorf("pools %v, want %v", ws.Pools, wantPools)
		}
	})
}
