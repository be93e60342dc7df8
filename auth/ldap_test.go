package auth

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"sekisho/internal/testslapd"
	"sekisho/lookup"
	"sekisho/policy"
)

var slapdOp = regexp.MustCompile(`op=\d+ (BIND dn="([^"]*)" method|SRCH base)`)

// slapdOps counts the user binds (not the service account's) and the
// searches slapd has logged.
func slapdOps(s *testslapd.Server) (userBinds, searches int) {
	for _, m := range slapdOp.FindAllStringSubmatch(s.Log(), -1) {
		switch {
		case strings.HasPrefix(m[1], "SRCH"):
			searches++
		case m[2] != s.BindDN:
			userBinds++
		}
	}
	return userBinds, searches
}

// TestLoginWithSlapd runs Login against a real slapd through
// lookup.Directory: logins by uid and by address, the addresses a user
// owns, throttled attempts that send no bind (slapd's log), a directory
// outage that is a 454, and a log that names user, address and reason but
// never a password.
func TestLoginWithSlapd(t *testing.T) {
	s := testslapd.Start(t)
	dave := testslapd.Person{UID: "dave", Mail: "Dave@Campus.Test", Alternates: []string{"dave.jones@campus.test"}, Password: "dave-Secret-1"}
	s.AddPerson(dave)
	dir, err := lookup.NewDirectory(lookup.LDAPConfig{
		URLs: []string{s.URL()}, BaseDN: s.BaseDN, BindDN: s.BindDN, BindPassword: s.BindPassword,
		AccountFilter: testslapd.AccountFilter, Canary: testslapd.Canary, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	var logs logBuffer
	clock := newClock()
	svc := New(dir, Config{Logger: logs.logger(), Now: clock.Now})
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.10")
	login := func(ip netip.Addr, user, password string, want *policy.Reply, wantBinds int) User {
		t.Helper()
		binds, _ := slapdOps(s)
		u, r := svc.Login(ctx, nil, ip, user, password)
		if r != want {
			t.Fatalf("Login(%s, %q) = %v, want %v", ip, user, r, want)
		}
		if after, _ := slapdOps(s); after-binds != wantBinds {
			t.Fatalf("Login(%s, %q): %d user binds, want %d", ip, user, after-binds, wantBinds)
		}
		return u
	}

	u := login(client, "dave", dave.Password, nil, 1)
	if u.DN != dave.DN() || strings.Join(u.Addresses, ",") != "dave@campus.test,dave.jones@campus.test" {
		t.Errorf("user = %+v", u)
	}
	for addr, want := range map[string]bool{"DAVE@campus.test": true, "dave+lists@campus.test": true, "dave.jones@campus.test": true, "alice@campus.test": false} {
		if u.Owns(addr) != want {
			t.Errorf("dave owns %s: %v, want %v", addr, !want, want)
		}
	}
	login(client, "dave@campus.test", dave.Password, nil, 1)

	// Four wrong passwords for dave from four addresses, then an empty one
	// (refused unseen, counted): dave is throttled, and not even the right
	// password reaches slapd.
	guesses := []string{"guess-Alpha-1", "guess-Bravo-2", "guess-Charlie-3", "guess-Delta-4"}
	for i, g := range guesses {
		login(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), "dave", g, policy.AuthFailed, 1)
	}
	login(netip.MustParseAddr("198.51.100.5"), "dave", "", policy.AuthFailed, 0)
	login(netip.MustParseAddr("198.51.100.6"), "dave", dave.Password, policy.AuthThrottledUser, 0)
	login(netip.MustParseAddr("198.51.100.6"), "Dave@Campus.Test", dave.Password, policy.AuthThrottledUser, 0)

	// One address trying five names: its sixth attempt is closed with 421,
	// without a search or a bind.
	scanner := netip.MustParseAddr("203.0.113.66")
	for _, name := range []string{"root", "admin", "test", "alice", "bob"} {
		login(scanner, name, "guess-Echo-5", policy.AuthFailed, map[bool]int{true: 1, false: 0}[name == "alice" || name == "bob"])
	}
	_, searches := slapdOps(s)
	login(scanner, "carol", "guess-Foxtrot-6", policy.AuthThrottledIP, 0)
	if _, after := slapdOps(s); after != searches {
		t.Errorf("a throttled attempt searched (%d searches)", after-searches)
	}

	// The window passes: dave logs in, which forgets his failures.
	clock.Advance(10 * time.Minute)
	login(client, "dave", dave.Password, nil, 1)

	// The directory is down: 454, not counted (six attempts, no throttle).
	s.Stop()
	for range 6 {
		login(client, "alice", testslapd.PersonByUID("alice").Password, policy.AuthTempFailed, 0)
	}

	out := logs.String()
	for _, want := range []string{
		`msg="auth failed" user=dave ip=198.51.100.1 outcome=invalid dn="uid=dave,ou=people,dc=campus,dc=test" reason="invalid credentials for uid=dave,ou=people,dc=campus,dc=test"`,
		`msg="auth failed" user=dave ip=198.51.100.5 outcome=invalid reason="empty password"`,
		`msg="auth refused" user=dave ip=198.51.100.6 outcome=throttled reason="too many failures for this user"`,
		`msg="auth failed" user=root ip=203.0.113.66 outcome=invalid dn="" reason="no entry for root (canary present)"`,
		`msg="auth refused" user=carol ip=203.0.113.66 outcome=throttled reason="too many failures from this address"`,
		`level=WARN msg="auth failed" user=alice ip=192.0.2.10 outcome=temporary dn="" reason="ldap: `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, pw := range append(guesses, dave.Password, testslapd.PersonByUID("alice").Password, "guess-Echo-5", "guess-Foxtrot-6", "Secret") {
		if strings.Contains(out, pw) {
			t.Errorf("password %q in the log", pw)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}
