package auth

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sekisho/internal/testenv"
	"sekisho/lookup"
	"sekisho/policy"
)

// fakeDir is a Directory with fixed accounts; it counts the calls that
// would have reached LDAP (a search) and the binds among them. Like slapd,
// it finds an entry whatever the case and the surrounding spaces of the
// name.
type fakeDir struct {
	calls   atomic.Int64
	binds   atomic.Int64
	twice   string        // a name that matches two entries
	release chan struct{} // if set, each call waits for it
	entered chan struct{} // if set, each call reports here first
	down    atomic.Bool   // every call answers could-not-tell
}

type fakeAccount struct {
	dn, password string
	addrs        []string
}

var fakeAccounts = map[string]fakeAccount{
	"alice":                   {"uid=alice,ou=people", "alice-pw", []string{"Alice@Campus.Test", "alice.smith@campus.test", "alice@campus.test"}},
	"alice@campus.test":       {"uid=alice,ou=people", "alice-pw", []string{"Alice@Campus.Test", "alice.smith@campus.test", "alice@campus.test"}},
	"alice.smith@campus.test": {"uid=alice,ou=people", "alice-pw", []string{"Alice@Campus.Test", "alice.smith@campus.test", "alice@campus.test"}},
	"bob":                     {"uid=bob,ou=people", "bob-pw", []string{"bob@campus.test"}},
}

func (d *fakeDir) AuthenticateIf(ctx context.Context, user, password string, mayBind func(string) bool) lookup.AuthResult {
	d.calls.Add(1)
	if d.down.Load() {
		return lookup.AuthResult{Reason: "ldap: connection refused"}
	}
	if d.twice != "" && strings.EqualFold(strings.TrimSpace(user), d.twice) {
		return lookup.AuthResult{Ambiguous: true, Reason: "2 entries match " + user + ": the directory is ambiguous, no bind"}
	}
	a, ok := fakeAccounts[strings.ToLower(strings.TrimSpace(user))]
	if !ok {
		return lookup.AuthResult{Outcome: lookup.AuthInvalid, Reason: "no entry for " + user}
	}
	if !mayBind(a.dn) {
		return lookup.AuthResult{Outcome: lookup.AuthNotTried, DN: a.dn, Reason: "refused by the caller"}
	}
	// The bind: where a slow directory holds an attempt.
	if d.entered != nil {
		d.entered <- struct{}{}
	}
	if d.release != nil {
		<-d.release
	}
	d.binds.Add(1)
	if a.password != password {
		return lookup.AuthResult{Outcome: lookup.AuthInvalid, DN: a.dn, Reason: "invalid credentials for " + a.dn}
	}
	return lookup.AuthResult{Outcome: lookup.AuthValid, DN: a.dn, Addresses: a.addrs}
}

// newClock is the one controllable clock of the tests (internal/testenv).
func newClock() *testenv.Clock { return testenv.NewClock() }

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type fixture struct {
	svc   *Service
	dir   *fakeDir
	clock *testenv.Clock
	log   *logBuffer
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{dir: &fakeDir{}, clock: newClock(), log: &logBuffer{}}
	cfg.Now, cfg.Logger = f.clock.Now, f.log.logger()
	f.svc = New(f.dir, cfg)
	return f
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
	ip3 = netip.MustParseAddr("198.51.100.3")
)

// login runs Login and checks the reply (nil: success) and whether the
// directory was asked.
func (f *fixture) login(t *testing.T, ip netip.Addr, user, password string, want *policy.Reply, wantAsked bool) User {
	t.Helper()
	before := f.dir.calls.Load()
	u, r := f.svc.Login(context.Background(), nil, ip, user, password)
	if r != want {
		t.Fatalf("Login(%s, %q) = %v, want %v", ip, user, r, want)
	}
	if asked := f.dir.calls.Load() != before; asked != wantAsked {
		t.Fatalf("Login(%s, %q): directory asked = %v, want %v", ip, user, asked, wantAsked)
	}
	return u
}

func TestLoginOutcomes(t *testing.T) {
	f := newFixture(t, Config{})
	u := f.login(t, ip1, "Alice", "alice-pw", nil, true)
	want := User{Name: "Alice", DN: "uid=alice,ou=people", TagSeparator: "+",
		Addresses: []string{"alice@campus.test", "alice.smith@campus.test"}}
	if u.Name != want.Name || u.DN != want.DN || u.TagSeparator != want.TagSeparator || !slices.Equal(u.Addresses, want.Addresses) {
		t.Errorf("user = %+v, want %+v", u, want)
	}
	f.login(t, ip1, "alice", "wrong", policy.AuthFailed, true)
	f.login(t, ip1, "nobody", "x", policy.AuthFailed, true)
	f.dir.down.Store(true)
	f.login(t, ip1, "alice", "alice-pw", policy.AuthTempFailed, true)

	log := f.log.String()
	for _, want := range []string{
		`msg="auth succeeded" user=Alice ip=192.0.2.1 dn="uid=alice,ou=people" addresses=2`,
		`msg="auth failed" user=alice ip=192.0.2.1 outcome=invalid dn="uid=alice,ou=people" reason="invalid credentials`,
		`msg="auth failed" user=nobody ip=192.0.2.1 outcome=invalid dn="" reason="no entry for nobody"`,
		`level=WARN msg="auth failed" user=alice ip=192.0.2.1 outcome=temporary dn="" reason="ldap: connection refused"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s\nlog:\n%s", want, log)
		}
	}
	if strings.Contains(log, "alice-pw") || strings.Contains(log, "wrong") {
		t.Errorf("a password is in the log:\n%s", log)
	}
}

// TestLoginRefusedUnseen: credentials that cannot be right get 535 without
// a directory request, are logged, and count as failures.
func TestLoginRefusedUnseen(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 100})
	for reason, c := range map[string][2]string{
		"empty password":     {"alice", ""},
		"empty user name":    {"", "pw"},
		"NUL in user name":   {"al\x00ice", "alice-pw"},
		"NUL in password":    {"alice", "alice-pw\x00"},
		"password too long":  {"alice", strings.Repeat("x", MaxPasswordBytes+1)},
		"user name too long": {strings.Repeat("u", MaxUserBytes+1), "pw"},
	} {
		f.login(t, ip1, c[0], c[1], policy.AuthFailed, false)
		if !strings.Contains(f.log.String(), `reason="`+reason+`"`) {
			t.Errorf("%s: not logged", reason)
		}
	}
	// The limits themselves are allowed through.
	f.login(t, ip1, "bob", strings.Repeat("x", MaxPasswordBytes), policy.AuthFailed, true)
	f.login(t, ip1, strings.Repeat("u", MaxUserBytes), "pw", policy.AuthFailed, true)
	// Counted: with a budget of 5, the sixth attempt from ip2 is refused.
	f = newFixture(t, Config{})
	for range 5 {
		f.login(t, ip2, "alice", "", policy.AuthFailed, false)
	}
	f.login(t, ip2, "bob", "bob-pw", policy.AuthThrottledIP, false)
}

// TestUserThrottle: after MaxFailures failures for a user name within the
// window, attempts for it get 454 without a directory request for the rest
// of the window (counted from the first failure); then one attempt per
// window comes back.
func TestUserThrottle(t *testing.T) {
	f := newFixture(t, Config{}) // 5 failures, 10 minutes
	ips := []netip.Addr{ip1, ip2, ip3, netip.MustParseAddr("203.0.113.4"), netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("203.0.113.6")}
	for i := range 5 {
		f.login(t, ips[i], "alice", "guess", policy.AuthFailed, true)
		f.clock.Advance(time.Minute) // the fifth failure at +4m
	}
	// +5m .. +9m59s: throttled, whatever the password or the address, and
	// whatever the case of the name.
	f.login(t, ips[5], "alice", "alice-pw", policy.AuthThrottledUser, false)
	f.login(t, ips[5], "ALICE", "guess", policy.AuthThrottledUser, false)
	f.clock.Advance(5*time.Minute - time.Second)
	f.login(t, ips[5], "alice", "alice-pw", policy.AuthThrottledUser, false)
	// Other users are not affected.
	f.login(t, ips[5], "bob", "bob-pw", nil, true)

	// +10m: one token back (one per window): one attempt.
	f.clock.Advance(time.Second)
	f.login(t, ips[5], "alice", "guess", policy.AuthFailed, true)
	f.login(t, ips[5], "alice", "alice-pw", policy.AuthThrottledUser, false)
	// Another full window for the next one.
	f.clock.Advance(10*time.Minute - time.Second)
	f.login(t, ips[5], "alice", "alice-pw", policy.AuthThrottledUser, false)
	f.clock.Advance(time.Second)
	f.login(t, ips[5], "alice", "alice-pw", nil, true)

	if n := strings.Count(f.log.String(), `outcome=throttled reason="too many failures for this user"`); n != 5 {
		t.Errorf("%d throttled attempts logged, want 5", n)
	}
}

// TestUserThrottleSpreadFailures: failures spread over more than a window
// still add up while they come faster than one per window.
func TestUserThrottleSpreadFailures(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 3, FailureWindow: time.Hour})
	// One failure every 40 minutes: 3 - 1 - (1 - 40/60) - ... tokens.
	for range 4 {
		f.login(t, ip1, "bob", "x", policy.AuthFailed, true)
		f.clock.Advance(40 * time.Minute)
	}
	// Tokens: 3 -4 failures + 160/60 refilled = 1.67: one more.
	f.login(t, ip2, "bob", "x", policy.AuthFailed, true)
	f.login(t, ip3, "bob", "x", policy.AuthThrottledUser, false)
}

// TestUserThrottleByEntry: the names of one entry (uid, addresses) share
// the entry's budget once the directory has said which entry they name.
func TestUserThrottleByEntry(t *testing.T) {
	f := newFixture(t, Config{})
	for range 3 {
		f.login(t, ip1, "alice", "x", policy.AuthFailed, true)
	}
	for range 2 {
		f.login(t, ip2, "alice@campus.test", "x", policy.AuthFailed, true)
	}
	// Five failures for uid=alice: both names are throttled now.
	f.login(t, ip3, "alice", "alice-pw", policy.AuthThrottledUser, false)
	f.login(t, ip3, "Alice@Campus.Test", "alice-pw", policy.AuthThrottledUser, false)
	// A name not seen yet is searched (which entry it names is not known
	// before the directory is asked), but the entry found has no budget
	// left: no bind. From then on the name is refused unsearched.
	binds := f.dir.binds.Load()
	f.login(t, ip3, "alice.smith@campus.test", "x", policy.AuthThrottledUser, true)
	f.login(t, ip3, "alice.smith@campus.test", "alice-pw", policy.AuthThrottledUser, false)
	if n := f.dir.binds.Load() - binds; n != 0 {
		t.Errorf("%d binds for a spent entry, want 0", n)
	}
}

// TestUserThrottleEverySpelling: once the entry's budget is spent, every
// spelling of its names — case, spaces around and inside that the
// directory ignores, the uid and each address — is 454 without a bind, even
// with the right password; the spellings the name key folds are refused
// without a search too. The address and the other names from the same
// address are not throttled (only four failures came from ip1).
func TestUserThrottleEverySpelling(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 4})
	for range 4 {
		f.login(t, ip2, "alice", "guess", policy.AuthFailed, true)
	}
	binds := f.dir.binds.Load()
	for _, name := range []string{"alice", " alice", "ALICE", "alice ", "\talice\t"} {
		f.login(t, ip1, name, "alice-pw", policy.AuthThrottledUser, false)
	}
	// Spellings that are another name key: one search each to learn the
	// entry, no bind; then no search either.
	for _, name := range []string{"alice@campus.test", " Alice.Smith@Campus.Test"} {
		f.login(t, ip1, name, "alice-pw", policy.AuthThrottledUser, true)
		f.login(t, ip1, name, "alice-pw", policy.AuthThrottledUser, false)
		f.login(t, ip1, strings.ToUpper(name)+"  ", "guess", policy.AuthThrottledUser, false)
	}
	if n := f.dir.binds.Load() - binds; n != 0 {
		t.Errorf("%d binds once alice's budget was spent, want 0", n)
	}
	if n := strings.Count(f.log.String(), `outcome=throttled dn="uid=alice,ou=people" reason="too many failures for this user"`); n != 2 {
		t.Errorf("%d throttled attempts logged with the entry, want 2:\n%s", n, f.log.String())
	}
	f.login(t, ip1, "bob", "bob-pw", nil, true)
}

func TestNameKey(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                           "alice",
		"  ALICE\t":                       "alice",
		"Alice@Campus.Test ":              "alice@campus.test",
		"al  ice":                         "al ice",
		"al\u00a0ice":                     "al ice",
		"alice@campus.test":               "alice@campus.test",
		strings.Repeat("X", 300):          strings.Repeat("x", MaxUserBytes),
		"\u00a0alice+tag@campus.test\r\n": "alice+tag@campus.test",
	} {
		if got := NameKey(in); got != want {
			t.Errorf("NameKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIPThrottle: failures from one address for any users close its
// connections (421) without a directory request; a success in between does
// not reset the count; IPv6 addresses count by /64.
func TestIPThrottle(t *testing.T) {
	f := newFixture(t, Config{})
	for i := range 4 {
		f.login(t, ip1, fmt.Sprintf("user%d", i), "x", policy.AuthFailed, true)
	}
	f.login(t, ip1, "bob", "bob-pw", nil, true) // a success does not reset ip1
	f.login(t, ip1, "user4", "x", policy.AuthFailed, true)
	f.login(t, ip1, "alice", "alice-pw", policy.AuthThrottledIP, false)
	f.login(t, netip.MustParseAddr("::ffff:192.0.2.1"), "alice", "alice-pw", policy.AuthThrottledIP, false)
	f.login(t, ip2, "alice", "alice-pw", nil, true)
	if !strings.Contains(f.log.String(), `user=alice ip=192.0.2.1 outcome=throttled reason="too many failures from this address"`) {
		t.Errorf("IP throttle not logged:\n%s", f.log.String())
	}
	f.clock.Advance(10 * time.Minute)
	f.login(t, ip1, "alice", "alice-pw", nil, true)

	a := netip.MustParseAddr("2001:db8:1:2::1")
	for i := range 5 {
		f.login(t, a, fmt.Sprintf("v6user%d", i), "x", policy.AuthFailed, true)
	}
	f.login(t, netip.MustParseAddr("2001:db8:1:2:ffff::9"), "alice", "alice-pw", policy.AuthThrottledIP, false)
	f.login(t, netip.MustParseAddr("2001:db8:1:3::1"), "alice", "alice-pw", nil, true)
}

// TestSuccessResetsUser: a successful login forgets the user's failures
// (the password is proven), but not the address's.
func TestSuccessResetsUser(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 3})
	for _, ip := range []netip.Addr{ip1, ip2} {
		f.login(t, ip, "bob", "x", policy.AuthFailed, true)
	}
	f.login(t, ip3, "bob", "bob-pw", nil, true)
	for _, ip := range []netip.Addr{ip1, ip2} {
		f.login(t, ip, "bob", "x", policy.AuthFailed, true)
	}
	f.login(t, ip3, "bob", "x", policy.AuthFailed, true)
	f.login(t, ip3, "bob", "bob-pw", policy.AuthThrottledUser, false)
	// ip1 and ip2 have 2 failures each: one more each before 421.
	f.login(t, ip1, "alice", "x", policy.AuthFailed, true)
	f.login(t, ip1, "alice", "alice-pw", policy.AuthThrottledIP, false)
}

// TestTemporaryFailuresNotCounted: a directory that cannot tell is not the
// client's fault: no throttle, however many attempts.
func TestTemporaryFailuresNotCounted(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 2})
	f.dir.down.Store(true)
	for range 10 {
		f.login(t, ip1, "alice", "alice-pw", policy.AuthTempFailed, true)
	}
	f.dir.down.Store(false)
	f.login(t, ip1, "alice", "alice-pw", nil, true)
}

// TestConcurrentLoginsNotBlamed: attempts in flight are not failures. Many
// right passwords at once through one address (a NAT) and for one user,
// held by a slow directory, all reach it and all succeed: none is throttled
// by the failures the others might have been.
func TestConcurrentLoginsNotBlamed(t *testing.T) {
	f := newFixture(t, Config{MaxConcurrentBinds: 50})
	f.dir.release = make(chan struct{})
	f.dir.entered = make(chan struct{}, 50)
	const n = 40
	replies := make(chan *policy.Reply, n)
	for i := range n {
		go func() {
			ip, user, pw := ip1, "bob", "bob-pw" // one address, two users
			if i%2 == 0 {
				ip, user, pw = netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), "alice", "alice-pw"
			}
			_, r := f.svc.Login(context.Background(), nil, ip, user, pw)
			replies <- r
		}()
	}
	for range n { // every one reaches the directory while all are held
		select {
		case <-f.dir.entered:
		case r := <-replies:
			close(f.dir.release)
			t.Fatalf("a right password ended while the others were held: %v", r)
		}
	}
	close(f.dir.release)
	for range n {
		if r := <-replies; r != nil {
			t.Errorf("a right password in parallel: %v", r)
		}
	}
	if strings.Contains(f.log.String(), "throttled") {
		t.Errorf("throttled:\n%s", f.log.String())
	}
}

// TestConcurrentGuessesBounded: parallel guesses overdraw a budget by fewer
// than MaxConcurrentBinds: those waiting for a bind slot look at the budgets
// again once they have one, the entry's budget is looked at again just
// before the bind, and a failure is counted before its slot is given back.
// The overdraft is a debt: the bucket refills from below zero, one token
// per window.
func TestConcurrentGuessesBounded(t *testing.T) {
	const maxFailures, slots, n = 2, 3, 20
	f := newFixture(t, Config{MaxFailures: maxFailures, MaxConcurrentBinds: slots, BindWait: time.Minute})
	f.dir.release = make(chan struct{})
	f.dir.entered = make(chan struct{}, n)
	replies := make(chan *policy.Reply, n)
	for i := range n {
		go func() {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
			_, r := f.svc.Login(context.Background(), nil, ip, "alice", "guess")
			replies <- r
		}()
	}
	for range maxFailures {
		<-f.dir.entered // binds held, all passed the budget
	}
	close(f.dir.release)
	got := map[*policy.Reply]int{}
	for range n {
		got[<-replies]++
	}
	binds := int(f.dir.binds.Load())
	if binds < maxFailures || binds > maxFailures+slots-1 || got[policy.AuthFailed] != binds || got[policy.AuthThrottledUser] != n-binds {
		t.Fatalf("%d binds, replies %v; want %d..%d binds, each a 535, the others 454 throttled", binds, got, maxFailures, maxFailures+slots-1)
	}
	f.dir.release, f.dir.entered = nil, nil
	// maxFailures tokens, binds failures: the debt takes binds-maxFailures+1
	// windows to pay back to one token.
	f.clock.Advance(time.Duration(binds-maxFailures+1)*10*time.Minute - time.Second)
	f.login(t, ip1, "alice", "alice-pw", policy.AuthThrottledUser, false)
	f.clock.Advance(time.Second)
	f.login(t, ip1, "alice", "alice-pw", nil, true)
}

// TestAmbiguousEntry: a name that matches two entries is the directory's
// fault: 454 (never 535), logged at ERROR, and not a failure however often
// it is tried.
func TestAmbiguousEntry(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 2})
	f.dir.twice = "shared@campus.test"
	for range 5 {
		f.login(t, ip1, "shared@campus.test", "pw", policy.AuthTempFailed, true)
	}
	if !strings.Contains(f.log.String(), `level=ERROR msg="auth failed" user=shared@campus.test ip=192.0.2.1 outcome=temporary reason="2 entries match`) {
		t.Errorf("not logged at ERROR:\n%s", f.log.String())
	}
	f.login(t, ip1, "bob", "bob-pw", nil, true)
}

// TestBindSlots: with every slot taken, an attempt waits BindWait and gets
// 454, without a directory request, and without counting as a failure.
func TestBindSlots(t *testing.T) {
	f := newFixture(t, Config{MaxConcurrentBinds: 2, BindWait: 50 * time.Millisecond, MaxFailures: 1})
	f.dir.release = make(chan struct{})
	f.dir.entered = make(chan struct{}, 2)
	done := make(chan *policy.Reply, 2)
	// Held logins by two users.
	hold := func() {
		for _, c := range []struct {
			ip       netip.Addr
			user, pw string
		}{{ip1, "bob", "bob-pw"}, {ip2, "alice@campus.test", "alice-pw"}} {
			go func() {
				_, r := f.svc.Login(context.Background(), nil, c.ip, c.user, c.pw)
				done <- r
			}()
		}
	}
	hold()
	<-f.dir.entered
	<-f.dir.entered
	start := time.Now()
	f.login(t, ip3, "alice", "alice-pw", policy.AuthTempFailed, false)
	if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
		t.Errorf("waited %v for a slot, want about 50ms", el)
	}
	if !strings.Contains(f.log.String(), `reason="all directory slots busy"`) {
		t.Error("busy not logged")
	}
	close(f.dir.release)
	for range 2 {
		if r := <-done; r != nil {
			t.Errorf("held login: %v", r)
		}
	}
	f.dir.release, f.dir.entered = nil, nil
	// Not counted, although MaxFailures is 1.
	f.login(t, ip3, "alice", "alice-pw", nil, true)

	// A cancelled context while waiting: 454 too.
	f.dir.release = make(chan struct{})
	f.dir.entered = make(chan struct{}, 2)
	hold()
	<-f.dir.entered
	<-f.dir.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, r := f.svc.Login(ctx, nil, ip3, "carol", "carol-pw"); r != policy.AuthTempFailed {
		t.Errorf("cancelled: %v", r)
	}
	close(f.dir.release)
	<-done
	<-done
}

// TestExchangeFailed: a refused authorization identity is logged and
// counted; a malformed exchange is logged, answered 501, not counted.
func TestExchangeFailed(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 2})
	for range 3 {
		m, _ := NewMechanism("PLAIN")
		_, _, err := m.Next([]byte("x\x00y"))
		if r := f.svc.ExchangeFailed(nil, ip1, m, err); r.Code != 501 {
			t.Errorf("malformed: %v", r)
		}
	}
	f.login(t, ip1, "bob", "bob-pw", nil, true)
	for range 2 {
		m, _ := NewMechanism("PLAIN")
		_, _, err := m.Next([]byte("bob\x00alice\x00secret-guess"))
		if r := f.svc.ExchangeFailed(nil, ip1, m, err); r != policy.AuthFailed {
			t.Errorf("authzid: %v", r)
		}
	}
	f.login(t, ip2, "alice", "alice-pw", policy.AuthThrottledUser, false)
	f.login(t, ip1, "bob", "bob-pw", policy.AuthThrottledIP, false)
	log := f.log.String()
	if !strings.Contains(log, `user=alice ip=192.0.2.1 outcome=invalid reason="authorization identity differs`) {
		t.Errorf("authzid failure not logged:\n%s", log)
	}
	if strings.Contains(log, "secret-guess") {
		t.Error("password logged")
	}
}

func TestSendingLimits(t *testing.T) {
	f := newFixture(t, Config{MaxMessagesPerHour: 3})
	alice := User{Name: "alice", DN: "uid=alice,ou=people"}
	aliceByMail := User{Name: "alice@campus.test", DN: "UID=alice,ou=people"}
	bob := User{Name: "bob", DN: "uid=bob,ou=people"}
	for range 2 {
		if r := f.svc.AllowMessage(alice); r != nil {
			t.Fatalf("message within the limit: %v", r)
		}
	}
	if r := f.svc.AllowMessage(aliceByMail); r != nil {
		t.Fatalf("third message: %v", r)
	}
	// The fourth within the hour, whatever name alice used: 450 4.7.1.
	if r := f.svc.AllowMessage(alice); r != policy.UserRateLimited {
		t.Fatalf("fourth message: %v, want %v", r, policy.UserRateLimited)
	}
	if r := f.svc.AllowMessage(bob); r != nil {
		t.Errorf("bob is limited by alice's mail: %v", r)
	}
	if !strings.Contains(f.log.String(), `level=WARN msg="user sending limit exceeded" user=alice dn="uid=alice,ou=people" limit=messages per_hour=3`) {
		t.Errorf("excess not logged at WARN:\n%s", f.log.String())
	}
	// 3 per hour: one more every 20 minutes.
	f.clock.Advance(20*time.Minute - time.Second)
	if r := f.svc.AllowMessage(alice); r == nil {
		t.Error("allowed before a token was back")
	}
	f.clock.Advance(time.Second)
	if r := f.svc.AllowMessage(alice); r != nil {
		t.Errorf("after 20 minutes: %v", r)
	}

	// Recipients: the default 500 per hour.
	for i := range 500 {
		if r := f.svc.AllowRecipient(bob); r != nil {
			t.Fatalf("recipient %d: %v", i+1, r)
		}
	}
	if r := f.svc.AllowRecipient(bob); r != policy.UserRateLimited {
		t.Errorf("recipient 501: %v", r)
	}
	if !strings.Contains(f.log.String(), "limit=recipients per_hour=500") {
		t.Error("recipient excess not logged")
	}

	// Off.
	f = newFixture(t, Config{MaxMessagesPerHour: -1, MaxRecipientsPerHour: -1})
	for range 1000 {
		if f.svc.AllowMessage(alice) != nil || f.svc.AllowRecipient(alice) != nil {
			t.Fatal("limited although off")
		}
	}
}

func TestOwns(t *testing.T) {
	u := User{Addresses: []string{"alice@campus.test", "a.smith@campus.test", "list+owner@campus.test"}, TagSeparator: "+"}
	for addr, want := range map[string]bool{
		"alice@campus.test":        true,
		"Alice@Campus.TEST":        true,
		"a.smith@campus.test":      true,
		"alice+news@campus.test":   true,
		"ALICE+x+y@campus.test":    true,
		"list+owner@campus.test":   true,  // an address with '+' in the directory
		"list@campus.test":         false, // not the user's
		"alice@other.test":         false,
		"alice@campus.test.evil":   false,
		"bob@campus.test":          false,
		"+alice@campus.test":       false,
		"alice":                    false,
		"":                         false,
		"alice-news@campus.test":   false,
		"alice+news@CAMPUS.test":   true,
		"alice+@campus.test":       true,
		"alice@campus.test+x":      false,
		"x@alice@campus.test":      false,
		"alice@campus.test@x.test": false,
	} {
		if got := u.Owns(addr); got != want {
			t.Errorf("Owns(%q) = %v, want %v", addr, got, want)
		}
	}
	u.TagSeparator = ""
	if u.Owns("alice+news@campus.test") {
		t.Error("extension allowed without a separator")
	}
	u.TagSeparator = "+-"
	if !u.Owns("alice-news@campus.test") {
		t.Error("'-' separator ignored")
	}
}

func TestDefaults(t *testing.T) {
	s := New(&fakeDir{}, Config{})
	c := s.cfg
	if c.MaxFailures != 5 || c.FailureWindow != 10*time.Minute || c.MaxConcurrentBinds != 10 ||
		c.MaxRecipientsPerHour != 500 || c.MaxMessagesPerHour != 100 || c.TagSeparator != "+" ||
		c.Logger == nil || c.Now == nil || c.BindWait <= 0 || c.BindWait > 5*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	if s := New(&fakeDir{}, Config{NoTags: true}); s.cfg.TagSeparator != "" {
		t.Error("NoTags keeps a separator")
	}
}

// TestEveryRefusalOneLineWithReply: given the session's logger, every
// refused attempt is one line on it, naming the session (not ip=, which the
// session's client= stands for) and the reply the client gets — a password
// refused unseen and by the directory (535), the directory down and an
// ambiguous name (454, the latter at ERROR), a user's budget spent before
// the search and at the entry the search found (454), the address's budget
// (421), an exchange error (501); nothing goes to the service's own logger.
// Without a session logger the line is on the service's, with ip=.
func TestEveryRefusalOneLineWithReply(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 2})
	sess := &logBuffer{}
	log := sess.logger().With("session", "0123456789ab", "client", "192.0.2.9")
	ip := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, 100 + i}) }
	var want []*policy.Reply
	login := func(a netip.Addr, user, password string, r *policy.Reply) {
		t.Helper()
		if _, got := f.svc.Login(context.Background(), log, a, user, password); got != r {
			t.Fatalf("Login(%s, %q) = %v, want %v", a, user, got, r)
		}
		want = append(want, r)
	}
	login(ip(1), "carol", "", policy.AuthFailed)   // refused unseen
	login(ip(2), "nobody", "x", policy.AuthFailed) // no entry
	f.dir.down.Store(true)
	login(ip(3), "bob", "bob-pw", policy.AuthTempFailed)
	f.dir.down.Store(false)
	f.dir.twice = "shared"
	login(ip(4), "shared", "x", policy.AuthTempFailed) // ambiguous
	login(ip(5), "alice", "w1", policy.AuthFailed)
	login(ip(6), "alice@campus.test", "w2", policy.AuthFailed)                    // the entry's budget spent
	login(ip(7), "alice.smith@campus.test", "alice-pw", policy.AuthThrottledUser) // at the entry, after the search
	login(ip(7), "alice", "alice-pw", policy.AuthThrottledUser)                   // before the search
	login(ip(8), "x1", "w", policy.AuthFailed)
	login(ip(8), "x2", "w", policy.AuthFailed)
	login(ip(8), "bob", "bob-pw", policy.AuthThrottledIP)
	m, _ := NewMechanism("PLAIN")
	_, _, err := m.Next([]byte("x\x00y"))
	r := f.svc.ExchangeFailed(log, ip(9), m, err)
	want = append(want, r)

	lines := strings.Split(strings.TrimSpace(sess.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines for %d refusals:\n%s", len(lines), len(want), sess.String())
	}
	for i, l := range lines {
		if !strings.Contains(l, " session=0123456789ab ") || strings.Contains(l, " ip=") || !strings.HasSuffix(l, fmt.Sprintf(" reply=%q", want[i].String())) {
			t.Errorf("line %d, for %v: %s", i+1, want[i], l)
		}
	}
	if l := lines[3]; !strings.Contains(l, "level=ERROR") {
		t.Errorf("the ambiguous name is not at ERROR: %s", l)
	}
	if !strings.Contains(lines[6], " dn=") || strings.Contains(lines[7], " dn=") {
		t.Errorf("want the entry's refusal after the search, then the name's before it:\n%s\n%s", lines[6], lines[7])
	}
	if f.log.String() != "" {
		t.Errorf("lines on the service's logger:\n%s", f.log.String())
	}

	f.svc.Login(context.Background(), nil, ip(8), "bob", "bob-pw")
	if l := f.log.String(); !strings.Contains(l, `msg="auth refused" user=bob ip=192.0.2.108 outcome=throttled`) || !strings.Contains(l, ` reply="421 4.7.0 `) {
		t.Errorf("without a session logger: %s", l)
	}
}
