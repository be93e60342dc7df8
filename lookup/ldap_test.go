package lookup

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"sekisho/internal/faultproxy"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

// ldapSlack is what a faulty lookup may take beyond its configured timeout
// (scheduling under -race on a small machine).
const ldapSlack = time.Second

func ldapTestConfig(s *testslapd.Server, urls ...string) LDAPConfig {
	if len(urls) == 0 {
		urls = []string{s.URL()}
	}
	return LDAPConfig{
		URLs:          urls,
		BaseDN:        s.BaseDN,
		BindDN:        s.BindDN,
		BindPassword:  s.BindPassword,
		AccountFilter: testslapd.AccountFilter,
		Canary:        testslapd.Canary,
		Timeout:       2 * time.Second,
	}
}

func ldapTestDirectory(t testing.TB, cfg LDAPConfig) *Directory {
	t.Helper()
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// ldapExpectAccount looks addr up and checks the outcome; it returns the
// result and how long the lookup took.
func ldapExpectAccount(t *testing.T, d *Directory, addr string, want AccountOutcome) (AccountResult, time.Duration) {
	t.Helper()
	start := time.Now()
	r := d.Account(context.Background(), addr)
	elapsed := time.Since(start)
	if r.Outcome != want {
		t.Fatalf("Account(%q) = %v (%s), want %v", addr, r.Outcome, r.Reason, want)
	}
	return r, elapsed
}

func ldapWithinTimeout(t *testing.T, d *Directory, elapsed time.Duration) {
	t.Helper()
	if elapsed > d.cfg.Timeout+ldapSlack {
		t.Errorf("took %v, configured timeout %v (+%v slack)", elapsed, d.cfg.Timeout, ldapSlack)
	}
}

func TestLDAPAccount(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapTestConfig(s))
	alice := testslapd.PersonByUID("alice").DN()
	tests := []struct {
		addr     string
		want     AccountOutcome
		wantDN   string
		wantAddr string
	}{
		{"alice@campus.test", AccountFound, alice, "alice@campus.test"},
		{"ALICE@Campus.TEST", AccountFound, alice, "ALICE@Campus.TEST"},
		{"a.smith@campus.test", AccountFound, alice, "a.smith@campus.test"}, // mailAlternateAddress
		{"alice+lists@campus.test", AccountFound, alice, "alice@campus.test"},
		{"alice.smith+a+b@campus.test", AccountFound, alice, "alice.smith@campus.test"},
		{"bob@campus.test", AccountFound, testslapd.PersonByUID("bob").DN(), "bob@campus.test"}, // stored as Bob@Campus.Test
		{"shared@campus.test", AccountFound, "", "shared@campus.test"},                          // two entries
		{testslapd.Canary, AccountFound, testslapd.PersonByUID("canary").DN(), testslapd.Canary},
		{"nobody@campus.test", AccountNotFound, "", "nobody@campus.test"},
		{"alice@other.test", AccountNotFound, "", "alice@other.test"},
		{"+alice@campus.test", AccountNotFound, "", "+alice@campus.test"}, // nothing before the separator: kept
		{"ünï@campus.test", AccountNotFound, "", "ünï@campus.test"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			r, _ := ldapExpectAccount(t, d, tt.addr, tt.want)
			if tt.wantDN != "" && r.DN != tt.wantDN {
				t.Errorf("DN = %q, want %q", r.DN, tt.wantDN)
			}
			if r.Address != tt.wantAddr {
				t.Errorf("Address = %q, want %q", r.Address, tt.wantAddr)
			}
			if r.Cached {
				t.Error("Cached with the cache off")
			}
			if r.Reason == "" {
				t.Error("no Reason")
			}
		})
	}
}

// ldapMessageCounter counts the LDAP messages in a byte stream (each one a
// BER SEQUENCE with a definite length), fed by faultproxy's observer.
type ldapMessageCounter struct {
	mu       sync.Mutex
	buf      []byte
	messages int
}

func (c *ldapMessageCounter) feed(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, b...)
	for len(c.buf) >= 2 {
		n, hdr := int(c.buf[1]), 2
		if n&0x80 != 0 {
			octets := n & 0x7f
			if len(c.buf) < 2+octets {
				return
			}
			n = 0
			for _, o := range c.buf[2 : 2+octets] {
				n = n<<8 | int(o)
			}
			hdr += octets
		}
		if len(c.buf) < hdr+n {
			return
		}
		c.messages++
		c.buf = c.buf[hdr+n:]
	}
}

func (c *ldapMessageCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.messages
}

var ldapLogOp = regexp.MustCompile(`conn=(\d+) op=\d+ (BIND dn="([^"]*)" method|SRCH base)`)

// ldapOps lists slapd's logged binds and searches as "conn kind dn".
func ldapOps(s *testslapd.Server) (binds, searches []string) {
	for _, m := range ldapLogOp.FindAllStringSubmatch(s.Log(), -1) {
		if strings.HasPrefix(m[2], "BIND") {
			binds = append(binds, m[1]+" "+m[3])
		} else {
			searches = append(searches, m[1])
		}
	}
	return binds, searches
}

// TestLDAPOneRoundTripPerLookup counts, on the wire and in slapd's log,
// what one account lookup costs once the pool is warm: one search request,
// nothing else.
func TestLDAPOneRoundTripPerLookup(t *testing.T) {
	s := testslapd.Start(t)
	p := faultproxy.Start(t, s.Addr())
	var wire ldapMessageCounter
	p.ObserveClientToServer(wire.feed)
	d := ldapTestDirectory(t, ldapTestConfig(s, "ldap://"+p.Addr()))

	// Cold: one bind for the new service connection, one search.
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	binds, searches := ldapOps(s)
	if wire.count() != 2 || len(binds) != 1 || len(searches) != 1 {
		t.Fatalf("cold lookup: %d messages on the wire, binds %v, %d searches; want 2, 1, 1", wire.count(), binds, len(searches))
	}

	for i, addr := range []string{"nobody@campus.test", "a.smith@campus.test", "bob+x@campus.test"} {
		beforeWire := wire.count()
		d.Account(context.Background(), addr)
		binds, searches := ldapOps(s)
		if got := wire.count() - beforeWire; got != 1 {
			t.Errorf("Account(%q): %d LDAP messages sent, want 1", addr, got)
		}
		if len(searches) != i+2 || len(binds) != 1 {
			t.Errorf("Account(%q): slapd logged %d searches and %d binds in all, want %d and 1", addr, len(searches), len(binds), i+2)
		}
	}
	if st := p.Stats(); st.Accepted != 1 {
		t.Errorf("%d connections for sequential lookups, want 1 reused", st.Accepted)
	}
	want := "(|(|(mail=bob@campus.test)(mailAlternateAddress=bob@campus.test))(|(mail=canary@campus.test)(mailAlternateAddress=canary@campus.test)))"
	if f := s.SearchFilters(); f[len(f)-1] != want {
		t.Errorf("filter sent: %s\nwant:        %s", f[len(f)-1], want)
	}
}

func TestLDAPInjectionIsEscaped(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapTestConfig(s))
	tests := []struct {
		addr string
		// wantLogged is the recipient's value as slapd logs it: escaped,
		// hex in upper case.
		wantLogged string
		// unescapedMatches: sent raw, the value would match entries,
		// which proves the case can catch a missing escape.
		unescapedMatches bool
	}{
		{`*@campus.test`, `\2A@campus.test`, true},
		{`a*@campus.test`, `a\2A@campus.test`, true},
		{`x)(uid=*@campus.test`, `x\29\28uid=\2A@campus.test`, false},
		{`\5c@campus.test`, `\5C5c@campus.test`, false},
		{`*)(|(mail=*@campus.test`, `\2A\29\28|\28mail=\2A@campus.test`, false},
	}
	svc, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Bind(s.BindDN, s.BindPassword); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if tt.unescapedMatches {
				res, err := svc.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(mail="+tt.addr+")", nil, nil))
				if err != nil || len(res.Entries) == 0 {
					t.Fatalf("control: unescaped (mail=%s) should match entries: %v", tt.addr, err)
				}
			}
			ldapExpectAccount(t, d, tt.addr, AccountNotFound)
			filters := s.SearchFilters()
			got := filters[len(filters)-1]
			want := fmt.Sprintf("(|(|(mail=%[1]s)(mailAlternateAddress=%[1]s))(|(mail=canary@campus.test)(mailAlternateAddress=canary@campus.test)))", tt.wantLogged)
			if got != want {
				t.Errorf("slapd received %s\nwant               %s", got, want)
			}
		})
	}
}

func TestLDAPStopped(t *testing.T) {
	s := testslapd.Start(t)
	cfg := ldapTestConfig(s)
	cfg.Timeout = 700 * time.Millisecond
	d := ldapTestDirectory(t, cfg)
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound) // a pooled connection exists

	s.Stop()
	for _, addr := range []string{"alice@campus.test", "nobody@campus.test"} {
		r, elapsed := ldapExpectAccount(t, d, addr, AccountCouldNotTell)
		ldapWithinTimeout(t, d, elapsed)
		if !strings.Contains(r.Reason, "refused") {
			t.Errorf("Reason = %q, want it to say the connection was refused", r.Reason)
		}
	}
	// A directory that never reached the server answers the same.
	cold := ldapTestDirectory(t, cfg)
	_, elapsed := ldapExpectAccount(t, cold, "nobody@campus.test", AccountCouldNotTell)
	ldapWithinTimeout(t, cold, elapsed)

	// Recovery, without a new Directory.
	s.Restart()
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
}

func TestLDAPRestartRecoversPool(t *testing.T) {
	s := testslapd.Start(t)
	cfg := ldapTestConfig(s)
	cfg.PoolSize = 3
	d := ldapTestDirectory(t, cfg)
	// Fill the pool with several connections.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { d.Account(context.Background(), "alice@campus.test") })
	}
	wg.Wait()
	s.Restart()
	// Every pooled connection is now dead; each lookup must still be right
	// the first time.
	for range 4 {
		ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
		ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
	}
	s.Kill()
	s.Restart()
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
}

func TestLDAPFrozenPath(t *testing.T) {
	s := testslapd.Start(t)
	p := faultproxy.Start(t, s.Addr())
	cfg := ldapTestConfig(s, "ldap://"+p.Addr())
	cfg.Timeout = 700 * time.Millisecond
	d := ldapTestDirectory(t, cfg)
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)

	p.Freeze()
	// The pooled connection: the search is sent, no answer comes back.
	r, elapsed := ldapExpectAccount(t, d, "nobody@campus.test", AccountCouldNotTell)
	ldapWithinTimeout(t, d, elapsed)
	if elapsed < cfg.Timeout/2 {
		t.Errorf("gave up after %v: the frozen path should have hung until the timeout (%v)", elapsed, cfg.Timeout)
	}
	if !strings.Contains(r.Reason, "timed out") && !strings.Contains(r.Reason, "deadline") {
		t.Errorf("Reason = %q, want a timeout", r.Reason)
	}
	// A new connection: TCP connects (to the proxy), the bind hangs.
	_, elapsed = ldapExpectAccount(t, d, "alice@campus.test", AccountCouldNotTell)
	ldapWithinTimeout(t, d, elapsed)

	p.Thaw()
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
}

// TestLDAPBusyPoolDoesNotBlock: with one connection, hung on a frozen path,
// other lookups wait for it no longer than their own timeout.
func TestLDAPBusyPoolDoesNotBlock(t *testing.T) {
	s := testslapd.Start(t)
	p := faultproxy.Start(t, s.Addr())
	cfg := ldapTestConfig(s, "ldap://"+p.Addr())
	cfg.Timeout = 600 * time.Millisecond
	cfg.PoolSize = 1
	d := ldapTestDirectory(t, cfg)
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	p.Freeze()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			start := time.Now()
			r := d.Account(context.Background(), fmt.Sprintf("user%d@campus.test", i))
			if r.Outcome != AccountCouldNotTell {
				t.Errorf("lookup %d: %v (%s), want could not tell", i, r.Outcome, r.Reason)
			}
			ldapWithinTimeout(t, d, time.Since(start))
		})
	}
	wg.Wait()
	// A caller's shorter deadline is honoured too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if r := d.Account(ctx, "alice@campus.test"); r.Outcome != AccountCouldNotTell {
		t.Errorf("with a 100ms context: %v", r.Outcome)
	}
	if e := time.Since(start); e > 100*time.Millisecond+ldapSlack {
		t.Errorf("with a 100ms context: took %v", e)
	}
}

func TestLDAPFailover(t *testing.T) {
	s1, s2 := testslapd.Start(t), testslapd.Start(t)
	cfg := ldapTestConfig(s1, s1.URL(), s2.URL())
	cfg.Timeout = time.Second
	d := ldapTestDirectory(t, cfg)

	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	if _, searches := ldapOps(s1); len(searches) != 1 {
		t.Fatalf("first server: %d searches, want 1", len(searches))
	}
	s1.Kill()
	_, elapsed := ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	ldapWithinTimeout(t, d, elapsed)
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
	if _, searches := ldapOps(s2); len(searches) != 2 {
		t.Errorf("second server: %d searches, want 2", len(searches))
	}
	// The second server stays in use (no round trip to the dead first one).
	s1.Restart()
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	if _, searches := ldapOps(s1); len(searches) != 1 {
		t.Errorf("first server back: %d searches, want still 1", len(searches))
	}
	// And back to the first when the second dies.
	s2.Stop()
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
	if _, searches := ldapOps(s1); len(searches) != 2 {
		t.Errorf("first server after the second stopped: %d searches, want 2", len(searches))
	}
}

// TestLDAPFailoverFromFrozenServer: the first server's path is frozen (TCP
// connects, nothing answers); the second gets its share of the time.
func TestLDAPFailoverFromFrozenServer(t *testing.T) {
	s1, s2 := testslapd.Start(t), testslapd.Start(t)
	p := faultproxy.Start(t, s1.Addr())
	p.Freeze()
	cfg := ldapTestConfig(s1, "ldap://"+p.Addr(), s2.URL())
	cfg.Timeout = time.Second
	d := ldapTestDirectory(t, cfg)
	_, elapsed := ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	ldapWithinTimeout(t, d, elapsed)
	if st := p.Stats(); st.Accepted != 1 {
		t.Errorf("frozen first server: %d connections, want 1 attempt", st.Accepted)
	}
}

func TestLDAPCanaryMissing(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapTestConfig(s))
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)

	canary := testslapd.PersonByUID("canary")
	s.DeleteEntry(canary.DN())
	for _, addr := range []string{"nobody@campus.test", "alice@campus.test"} {
		r, _ := ldapExpectAccount(t, d, addr, AccountCouldNotTell)
		if !strings.Contains(r.Reason, "canary missing") {
			t.Errorf("Reason = %q", r.Reason)
		}
	}
	if r := d.Authenticate(context.Background(), "alice@campus.test", "alice-pw"); r.Outcome != AuthCouldNotTell {
		t.Errorf("Authenticate without the canary: %v (%s)", r.Outcome, r.Reason)
	}
	s.AddPerson(canary)
	ldapExpectAccount(t, d, "nobody@campus.test", AccountNotFound)
}

// TestLDAPUnmatchedEntryIsNotNotFound: if the server returns an entry the
// client cannot match to the address or the canary, the server's matching
// rule saw something ours does not, and "not found" would be a guess.
func TestLDAPUnmatchedEntryIsNotNotFound(t *testing.T) {
	s := testslapd.Start(t)
	cfg := ldapTestConfig(s)
	cfg.AccountFilter = "(|(mail=%s)(cn=%s))"
	d := ldapTestDirectory(t, cfg)
	// An entry found by cn whose cn value differs from the address in a
	// way the server's matching ignores (surrounding and repeated spaces
	// in caseIgnoreMatch) but EqualFold does not.
	s.AddEntry("uid=spaced,"+testslapd.PeopleDN, map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {"spaced"}, "sn": {"x"},
		"cn": {"spaced  out@campus.test"}, "mail": {"spaced@campus.test"},
	})
	r, _ := ldapExpectAccount(t, d, "spaced out@campus.test", AccountCouldNotTell)
	if !strings.Contains(r.Reason, "uid=spaced") {
		t.Errorf("Reason = %q, want the unmatched entry named", r.Reason)
	}
}

func TestLDAPPositiveCache(t *testing.T) {
	s := testslapd.Start(t)
	cfg := ldapTestConfig(s)
	cfg.PositiveCacheTTL = time.Hour
	cfg.Timeout = 500 * time.Millisecond
	d := ldapTestDirectory(t, cfg)

	if r, _ := ldapExpectAccount(t, d, "alice@campus.test", AccountFound); r.Cached {
		t.Error("first lookup marked cached")
	}
	if r, _ := ldapExpectAccount(t, d, "Alice+x@Campus.Test", AccountFound); !r.Cached {
		t.Error("second lookup of the same address not cached")
	}
	_, searches := ldapOps(s)
	if len(searches) != 1 {
		t.Errorf("%d searches for two lookups, want 1", len(searches))
	}

	// A negative answer is not cached: the account appears at once.
	ldapExpectAccount(t, d, "dave@campus.test", AccountNotFound)
	s.AddPerson(testslapd.Person{UID: "dave", Mail: "dave@campus.test"})
	ldapExpectAccount(t, d, "dave@campus.test", AccountFound)

	// With the directory down, cached accounts are still found; others are
	// could-not-tell.
	s.Stop()
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	ldapExpectAccount(t, d, "bob@campus.test", AccountCouldNotTell)
}

func TestLDAPClosed(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapTestConfig(s))
	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	d.Close()
	ldapExpectAccount(t, d, "alice@campus.test", AccountCouldNotTell)
}

func TestLDAPConfigErrors(t *testing.T) {
	good := LDAPConfig{URLs: []string{"ldap://127.0.0.1:389"}, BaseDN: "dc=x", Canary: "c@x"}
	if _, err := NewDirectory(good); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	tests := []struct {
		name   string
		change func(*LDAPConfig)
	}{
		{"no urls", func(c *LDAPConfig) { c.URLs = nil }},
		{"bad scheme", func(c *LDAPConfig) { c.URLs = []string{"http://x"} }},
		{"no base", func(c *LDAPConfig) { c.BaseDN = "" }},
		{"bad base", func(c *LDAPConfig) { c.BaseDN = "not a dn" }},
		{"no canary", func(c *LDAPConfig) { c.Canary = "" }},
		{"bind dn without password", func(c *LDAPConfig) { c.BindDN = "cn=x" }},
		{"filter does not compile", func(c *LDAPConfig) { c.AccountFilter = "(mail=%s" }},
		{"substring filter", func(c *LDAPConfig) { c.AccountFilter = "(mail=%s*)" }},
		{"no placeholder", func(c *LDAPConfig) { c.AccountFilter = "(mail=x)" }},
		{"one placeholder inside a value", func(c *LDAPConfig) { c.AccountFilter = "(|(mail=%s)(cn=x%s))" }},
	}
	for _, tt := range tests {
		cfg := good
		tt.change(&cfg)
		if _, err := NewDirectory(cfg); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestLDAPFilterAttributes(t *testing.T) {
	got, err := ldapFilterAttributes("account_filter", "(&(objectClass=inetOrgPerson)(|(mail=%s)(mailAlternateAddress=%s)(MAIL=%s)))")
	if err != nil || strings.Join(got, ",") != "mail,mailAlternateAddress" {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestLDAPStripTag(t *testing.T) {
	d := &Directory{cfg: LDAPConfig{TagSeparator: "+-"}}
	for in, want := range map[string]string{
		"user+tag@dom":  "user@dom",
		"user-tag@dom":  "user@dom",
		"user+a-b@dom":  "user@dom",
		"+tag@dom":      "+tag@dom",
		"user@dom":      "user@dom",
		"user":          "user",
		"us+er@x@dom":   "us@dom",
		"user@do+m.com": "user@do+m.com",
	} {
		if got := d.stripTag(in); got != want {
			t.Errorf("stripTag(%q) = %q, want %q", in, got, want)
		}
	}
	d.cfg.NoTags = true
	if got := d.stripTag("user+tag@dom"); got != "user+tag@dom" {
		t.Errorf("NoTags: %q", got)
	}
}

func TestLDAPUnreachableAddress(t *testing.T) {
	// A port where nothing listens: connection refused at once, could not
	// tell, never not found.
	d := ldapTestDirectory(t, LDAPConfig{
		URLs: []string{"ldap://" + testenv.FreePort(t)}, BaseDN: testslapd.PeopleDN,
		Canary: testslapd.Canary, Timeout: 500 * time.Millisecond,
	})
	_, elapsed := ldapExpectAccount(t, d, "alice@campus.test", AccountCouldNotTell)
	ldapWithinTimeout(t, d, elapsed)
	if r := d.Authenticate(context.Background(), "alice@campus.test", "pw"); r.Outcome != AuthCouldNotTell {
		t.Errorf("Authenticate: %v", r.Outcome)
	}
}

func BenchmarkAccountUncached(b *testing.B) {
	s := testslapd.Start(b)
	d := ldapTestDirectory(b, ldapTestConfig(s))
	ctx := context.Background()
	if r := d.Account(ctx, "alice@campus.test"); r.Outcome != AccountFound {
		b.Fatal(r.Reason)
	}
	for b.Loop() {
		if r := d.Account(ctx, "alice@campus.test"); r.Outcome != AccountFound {
			b.Fatal(r.Reason)
		}
	}
}

func BenchmarkAccountUncachedParallel(b *testing.B) {
	s := testslapd.Start(b)
	d := ldapTestDirectory(b, ldapTestConfig(s))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := d.Account(context.Background(), "nobody@campus.test"); r.Outcome != AccountNotFound {
				b.Error(r.Reason)
				return
			}
		}
	})
}

func BenchmarkAccountCached(b *testing.B) {
	s := testslapd.Start(b)
	cfg := ldapTestConfig(s)
	cfg.PositiveCacheTTL = time.Hour
	d := ldapTestDirectory(b, cfg)
	ctx := context.Background()
	d.Account(ctx, "alice@campus.test")
	for b.Loop() {
		if r := d.Account(ctx, "alice+tag@campus.test"); !r.Cached {
			b.Fatal("not cached:", r.Reason)
		}
	}
}

// TestLDAPStaleConnectionRetried: a pooled connection that looks alive but
// whose server has gone (it closes as soon as the search arrives) costs one
// fast failure, then the search is repeated once on a fresh connection.
func TestLDAPStaleConnectionRetried(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapTestConfig(s))

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	received := make(chan int, 1)
	go func() {
		c, err := dead.Accept()
		if err != nil {
			return
		}
		n, _ := c.Read(make([]byte, 4096))
		c.Close()
		received <- n
	}()
	tcp, err := net.Dial("tcp", dead.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	stale := ldap.NewConn(tcp, false)
	stale.Start()
	d.pool.idle <- stale

	ldapExpectAccount(t, d, "alice@campus.test", AccountFound)
	if n := <-received; n == 0 {
		t.Error("the stale connection was not tried")
	}
	if _, searches := ldapOps(s); len(searches) != 1 {
		t.Errorf("slapd got %d searches, want 1 (the retry)", len(searches))
	}
}
