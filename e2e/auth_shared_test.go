package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sekisho/internal/testredis"
)

// TestAuthBudgetSharedAcrossGateways: two MSAs on one slapd and one Redis
// (issue 19): alice's budget (auth.max_failures: 4) is spent by wrong
// passwords spread over both — under her uid and her address, from four
// addresses — and then her right password is 454 on both, with no bind in
// slapd; bob's hourly message limit (2) is one for both. With Redis stopped
// a right password works (the throttle is skipped, logged).
func TestAuthBudgetSharedAcrossGateways(t *testing.T) {
	rs := testredis.Start(t)
	opts := func(url string) func(*msaOpts) {
		return func(o *msaOpts) {
			if url != "" {
				o.ldapURL = url
			}
			o.auth = "{max_failures: 4, max_messages_per_hour: 2}"
			o.extra = glRedisStore(rs.Addr())
		}
	}
	a := startMSA(t, opts(""))
	b := startMSA(t, opts(a.slapd.URL()))
	gws := []*msaFixture{a, b}
	for i := range 4 {
		name := []string{"alice", "alice@campus.test"}[i%2]
		gws[i%2].session(t, fmt.Sprintf("127.0.3.%d", i+1), name, fmt.Sprintf("wrong-%d", i), "535 5.7.8").expect("QUIT", "221")
	}
	binds := a.binds("alice")
	for _, f := range gws {
		f.session(t, "127.0.3.9", "alice", "alice-pw", authThrottledUser).expect("QUIT", "221")
	}
	if n := a.binds("alice"); n != binds {
		t.Errorf("a budget spent over two gateways still bound %d times", n-binds)
	}

	accepted := 0
	for i := range 3 {
		c := gws[i%2].session(t, "127.0.3.20", "bob", "bob pw with spaces", "235")
		c.expect("MAIL FROM:<bob@campus.test>", "250")
		if r := c.cmd("RCPT TO:<friend@example.net>"); r.Code == 250 {
			accepted++
		} else if !strings.HasPrefix(r.String(), "450 4.7.1") {
			t.Errorf("bob's message %d: %v", i+1, r)
		}
		c.expect("QUIT", "221")
	}
	if accepted != 2 {
		t.Errorf("bob's hourly limit of 2 let %d of 3 messages through over two gateways", accepted)
	}

	rs.Stop()
	b.session(t, "127.0.3.30", "bob", "bob pw with spaces", "235").expect("QUIT", "221")
	b.gw.WaitLog("auth budgets store unavailable", 5*time.Second)
}
