package main

import (
	"testing"
	"time"

	"sekisho/config"
)

// TestGreetPauseTTLsReachTheGateway: pass_ttl and fail_ttl of
// checks.greet_pause reach the gateway each as itself (the gateway's test
// TestGreetMemoryTTLs shows how long it keeps each verdict).
func TestGreetPauseTTLsReachTheGateway(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`
hostname: mx1.campus.test
local_domains: [campus.test]
routes:
  - {domains: [campus.test], next_hops: ["smtp://10.0.1.5:25"]}
checks:
  greet_pause: {delay: 5s, pass_ttl: 3h, fail_ttl: 1h}
`))
	if err != nil {
		t.Fatal(err)
	}
	g := gatewayConfig(&cfg)
	if g.GreetPause != 5*time.Second || g.GreetPassTTL != 3*time.Hour || g.GreetFailTTL != time.Hour {
		t.Errorf("gateway greet pause %v, pass_ttl %v, fail_ttl %v; want 5s, 3h, 1h", g.GreetPause, g.GreetPassTTL, g.GreetFailTTL)
	}
}
