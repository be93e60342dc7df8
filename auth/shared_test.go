package auth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"sekisho/greylist"
	"sekisho/internal/testredis"
	"sekisho/policy"
)

func sharedService(t *testing.T, dir Directory, addr string, log *logBuffer) *Service {
	t.Helper()
	store := greylist.NewRedisStore(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { store.Close() })
	cfg := Config{MaxFailures: 5, MaxMessagesPerHour: 4, Shared: store}
	if log != nil {
		cfg.Logger = log.logger()
	}
	return New(dir, cfg)
}

// TestSharedBudgets: two gateways on one Redis share alice's budget (her
// entry's): five wrong passwords spread over both, under her uid and her
// address, spend it on both — the right password is then 454 without a bind
// on either; a client address's budget and a user's hourly message limit
// are shared the same way.
func TestSharedBudgets(t *testing.T) {
	rs := testredis.Start(t)
	dir := &fakeDir{}
	a, b := sharedService(t, dir, rs.Addr(), nil), sharedService(t, dir, rs.Addr(), nil)
	ctx := context.Background()
	for i := range 5 {
		svc, name := a, "alice"
		if i%2 == 1 {
			svc, name = b, "alice@campus.test"
		}
		ip := netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 10+i))
		if _, r := svc.Login(ctx, nil, ip, name, "wrong"); r != policy.AuthFailed {
			t.Fatalf("wrong password %d: %v, want 535", i+1, r)
		}
	}
	binds := dir.binds.Load()
	for _, svc := range []*Service{a, b} {
		if _, r := svc.Login(ctx, nil, netip.MustParseAddr("198.51.100.1"), "alice.smith@campus.test", "alice-pw"); r != policy.AuthThrottledUser {
			t.Errorf("right password after five failures over two gateways: %v, want 454 throttled", r)
		}
	}
	if dir.binds.Load() != binds {
		t.Errorf("a spent budget still bound (%d binds)", dir.binds.Load()-binds)
	}

	ip := netip.MustParseAddr("203.0.113.5")
	for i := range 5 {
		svc := []*Service{a, b}[i%2]
		svc.Login(ctx, nil, ip, fmt.Sprintf("nobody%d", i), "x")
	}
	if _, r := a.Login(ctx, nil, ip, "bob", "bob-pw"); r != policy.AuthThrottledIP {
		t.Errorf("an address with five failures over two gateways: %v, want 421", r)
	}

	u, r := b.Login(ctx, nil, netip.MustParseAddr("198.51.100.2"), "bob", "bob-pw")
	if r != nil {
		t.Fatal(r)
	}
	allowed := 0
	for i := range 6 {
		if []*Service{a, b}[i%2].AllowMessage(u) == nil {
			allowed++
		}
	}
	if allowed != 4 {
		t.Errorf("bob's hourly limit of 4 let %d of 6 messages through over two gateways", allowed)
	}
	if a.SharedErrors()+b.SharedErrors() != 0 {
		t.Errorf("store errors with Redis up: %d", a.SharedErrors()+b.SharedErrors())
	}
}

// TestSharedBudgetsStoreDown: with Redis stopped a right password is
// accepted (the throttle skipped), a wrong one is 535, the hourly limit
// lets the message through; the skips are counted, and logged once.
func TestSharedBudgetsStoreDown(t *testing.T) {
	rs := testredis.Start(t)
	var log logBuffer
	svc := sharedService(t, &fakeDir{}, rs.Addr(), &log)
	rs.Stop()
	ctx := context.Background()
	u, r := svc.Login(ctx, nil, netip.MustParseAddr("192.0.2.1"), "alice", "alice-pw")
	if r != nil {
		t.Fatalf("right password with the budgets' store down: %v", r)
	}
	if _, r := svc.Login(ctx, nil, netip.MustParseAddr("192.0.2.1"), "bob", "wrong"); r != policy.AuthFailed {
		t.Errorf("wrong password with the store down: %v, want 535", r)
	}
	if r := svc.AllowMessage(u); r != nil {
		t.Errorf("hourly limit with the store down: %v", r)
	}
	if svc.SharedErrors() == 0 {
		t.Error("no store error counted")
	}
	if n := strings.Count(log.String(), "auth budgets store unavailable"); n != 1 {
		t.Errorf("%d incident lines, want 1", n)
	}
}
