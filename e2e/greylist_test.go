package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testredis"
)

// Greylisting end to end (DESIGN.md §3 row 6, §5): the built binary, real
// clients from 127.0.0.x, a real next hop, the embedded bbolt store and a
// real redis-server. The delays are short (1–2 s) and waited out with the
// clock: the delay is the feature under test. The tests run in parallel with
// each other; each has its own store.

// greylistOnly turns off the checks that would need DNS or LDAP, so these
// tests are about greylisting alone.
const greylistOnly = "spf: {off: true}\ndomain: {off: true}\ndnsbl: {off: true}\naccount: {off: true}"

// greylistGateway starts a campus gateway with `greylist: <settings>` and
// the top-level YAML extra (the store).
func greylistGateway(t *testing.T, settings, extra string) (*harness.Gateway, *harness.NextHop) {
	t.Helper()
	// exempt: [] because the clients here are loopback addresses, which
	// the embedded defaults may exempt.
	settings = "{exempt: [], " + strings.TrimPrefix(settings, "{")
	return campus(t, func(s *site) {
		s.checks = "greylist: " + settings + "\n" + greylistOnly
		s.extra = extra
	})
}

func glBoltStore(path string) string { return fmt.Sprintf("store: {path: %q}\n", path) }

func glRedisStore(addr string) string { return fmt.Sprintf("store: {redis: {addrs: [%q]}}\n", addr) }

// glRcptAttempt opens a session from src and sends EHLO, MAIL FROM and RCPT
// TO; it returns the client, still in the transaction, and the RCPT reply.
func glRcptAttempt(t *testing.T, gw *harness.Gateway, src, from, rcpt string) (*harness.Client, harness.Reply) {
	t.Helper()
	c := harness.DialFrom(t, src, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<"+from+">", "250")
	return c, c.Cmd("RCPT TO:<" + rcpt + ">")
}

// glWantAccepted fails unless the attempt's RCPT got 250, then ends the
// session.
func glWantAccepted(t *testing.T, gw *harness.Gateway, src, from, rcpt, why string) {
	t.Helper()
	c, r := glRcptAttempt(t, gw, src, from, rcpt)
	if r.Code != 250 {
		t.Fatalf("%s: %s from %s, <%s> → <%s>: %v, want 250\n%s", why, gw.SMTP, src, from, rcpt, r, c.Transcript())
	}
	c.Cmd("QUIT")
}

var glSecondsLeft = regexp.MustCompile(`^4\.7\.1 greylisted, please try again in (\d+) seconds$`)

// glWantGreylisted fails unless r is 451 4.7.1 with the seconds left within
// 1..max, and returns them.
func glWantGreylisted(t *testing.T, c *harness.Client, r harness.Reply, max time.Duration) int {
	t.Helper()
	m := glSecondsLeft.FindStringSubmatch(r.Text)
	if r.Code != 451 || m == nil {
		t.Fatalf("got %v, want 451 4.7.1 with the seconds left\n%s", r, c.Transcript())
	}
	n, _ := strconv.Atoi(m[1])
	if n < 1 || time.Duration(n)*time.Second > max {
		t.Fatalf("%d seconds left, want 1..%v", n, max)
	}
	return n
}

// glDeliver sends a message in the open transaction and expects 250.
func glDeliver(t *testing.T, c *harness.Client, subject string) {
	t.Helper()
	c.Expect("DATA", "354")
	c.SendRaw(hdr(subject) + "Greylisted, then accepted.\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v\n%s", r, c.Transcript())
	}
	c.Cmd("QUIT")
}

// glHasSubject reports whether the next hop holds a message with subject.
func glHasSubject(hop *harness.NextHop, subject string) bool {
	for _, m := range hop.Messages() {
		if messageHasSubject(m, subject) {
			return true
		}
	}
	return false
}

// messageHasSubject reports whether m's header has the subject.
func messageHasSubject(m harness.Message, subject string) bool {
	return strings.Contains(string(m.Data), "\r\nSubject: "+subject+"\r\n")
}

// glWaitUntil waits for the clock to reach t: greylisting's delay, the
// feature under test.
func glWaitUntil(t time.Time) { time.Sleep(time.Until(t)) }

// glEarlyRetry makes a retry that must come before the delay is over and
// fails unless it was deferred. firstSent is a time before the first
// attempt's RCPT was sent: the store recorded that attempt no earlier, so its
// delay cannot end before firstSent+delay, and a retry answered before then
// was early for certain. A retry answered later proves nothing — had it been
// accepted, that could be right — so it fails as too late (a machine too busy
// for the delay chosen) instead of passing or blaming the gateway.
func glEarlyRetry(t *testing.T, firstSent time.Time, delay time.Duration, retry func() (*harness.Client, harness.Reply)) *harness.Client {
	t.Helper()
	c, r := retry()
	if took := time.Since(firstSent); took >= delay && r.Code != 451 {
		t.Fatalf("the early retry was answered %v after the first attempt began, not within the %v delay: "+
			"too late to prove that an early retry is deferred (got %v)\n%s", took.Round(time.Millisecond), delay, r, c.Transcript())
	}
	glWantGreylisted(t, c, r, delay)
	return c
}

// glAfterDelay is when a retry of an attempt answered at first passes: the
// store recorded the attempt before the reply, so the delay from the
// reply's arrival plus a little for the clocks' granularity.
func glAfterDelay(first time.Time, delay time.Duration) time.Time {
	return first.Add(delay + 100*time.Millisecond)
}

// TestGreylistEmbedded: the first attempt is deferred with the seconds
// left, an early retry too; a retry after the delay passes and the next hop
// gets the message; another host of the /24 passes at once; after three
// passes the network is auto-whitelisted; trusted clients and postmaster@
// are never greylisted. The store's directory is created.
func TestGreylistEmbedded(t *testing.T) {
	t.Parallel()
	const delay = 4 * time.Second                                 // room for the early retry under -race on busy cores
	store := filepath.Join(t.TempDir(), "var", "lib", "state.db") // var/lib does not exist yet
	gw, hop := greylistGateway(t, "{delay: 4s, retry_window: 1m, auto_whitelist: 3}", glBoltStore(store))
	if _, err := os.Stat(store); err != nil {
		t.Fatalf("store file not created with its directory: %v", err)
	}

	firstSent := time.Now()
	c, r := glRcptAttempt(t, gw, outside, "bob@example.org", "alice@campus.test")
	first := time.Now()
	glWantGreylisted(t, c, r, delay)
	// An early retry (same transaction) is deferred again.
	glEarlyRetry(t, firstSent, delay, func() (*harness.Client, harness.Reply) { return c, c.Cmd("RCPT TO:<alice@campus.test>") })
	gw.WaitLog("new triplet 127.0.0.0/24 <bob@example.org> → <alice@campus.test> greylisted", 5*time.Second)
	gw.WaitLog("known triplet 127.0.0.0/24 <bob@example.org> → <alice@campus.test> greylisted", 5*time.Second)
	c.Cmd("QUIT")

	// Never greylisted: a trusted client, and postmaster (RFC 5321 §4.5.1).
	glWantAccepted(t, gw, "127.0.0.1", "carol@example.org", "alice@campus.test", "trusted client")
	glWantAccepted(t, gw, outside, "dave@example.org", "postmaster@campus.test", "postmaster")
	glWantAccepted(t, gw, outside, "dave@example.org", "PostMaster@sub.campus.test", "postmaster of a subdomain")

	glWaitUntil(glAfterDelay(first, delay))
	c, r = glRcptAttempt(t, gw, outside, "bob@example.org", "alice@campus.test")
	if r.Code != 250 {
		t.Fatalf("retry after the delay: %v, want 250", r)
	}
	glDeliver(t, c, "after the delay")
	if !glHasSubject(hop, "after the delay") {
		t.Fatal("the next hop does not have the message accepted after the delay")
	}

	// Another host of the same /24 retries: the same triplet (pass 2).
	glWantAccepted(t, gw, "127.0.0.3", "bob@example.org", "alice@campus.test", "same /24, other host")
	// Two passes are not yet three: a new sender is greylisted.
	c, r = glRcptAttempt(t, gw, outside, "erin@example.org", "alice@campus.test")
	glWantGreylisted(t, c, r, delay)
	// The third pass auto-whitelists the network: a new sender passes at once.
	glWantAccepted(t, gw, "127.0.0.3", "bob@example.org", "alice@campus.test", "a passed triplet")
	glWantAccepted(t, gw, outside, "frank@example.org", "alice@campus.test", "auto-whitelisted network")
	glWantAccepted(t, gw, "127.0.0.4", "grace@example.org", "bob@campus.test", "auto-whitelisted network, other host")
}

// TestGreylistStateSurvivesRestart: a triplet deferred by one sekisho
// passes after the delay at the next sekisho started on the same file.
func TestGreylistStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	store := filepath.Join(t.TempDir(), "state.db")
	settings := "{delay: 1s, retry_window: 1m, auto_whitelist: 0}"
	gw, _ := greylistGateway(t, settings, glBoltStore(store))
	c, r := glRcptAttempt(t, gw, outside, "bob@example.org", "alice@campus.test")
	first := time.Now()
	glWantGreylisted(t, c, r, delay)
	c.Cmd("QUIT")
	gw.Stop()
	if err := gw.Wait(time.Second); err != nil {
		t.Fatalf("first sekisho: %v", err)
	}

	gw2, hop2 := greylistGateway(t, settings, glBoltStore(store))
	glWaitUntil(glAfterDelay(first, delay))
	c, r = glRcptAttempt(t, gw2, outside, "bob@example.org", "alice@campus.test")
	if r.Code != 250 {
		t.Fatalf("retry after a restart: %v, want 250 (the first attempt was forgotten?)\n%s", r, c.Transcript())
	}
	glDeliver(t, c, "across a restart")
	if !glHasSubject(hop2, "across a restart") {
		t.Fatal("next hop lacks the message")
	}
	// The restarted sekisho greylists: a new triplet is deferred.
	c, r = glRcptAttempt(t, gw2, outside, "carol@example.org", "alice@campus.test")
	glWantGreylisted(t, c, r, delay)
}

// TestGreylistSharedOnRedis: two sekisho processes on one redis-server
// share the greylist: the first attempt at gateway A, an early retry at B
// (deferred as a known triplet), the retry after the delay at B passes.
func TestGreylistSharedOnRedis(t *testing.T) {
	t.Parallel()
	const delay = 4 * time.Second // room for the early retry under -race on busy cores
	rs := testredis.Start(t)
	settings := "{delay: 4s, retry_window: 1m, auto_whitelist: 0}"
	gwA, _ := greylistGateway(t, settings, glRedisStore(rs.Addr()))
	gwB, hopB := greylistGateway(t, settings, glRedisStore(rs.Addr()))

	firstSent := time.Now()
	c, r := glRcptAttempt(t, gwA, outside, "bob@example.org", "alice@campus.test")
	first := time.Now()
	glWantGreylisted(t, c, r, delay)

	c = glEarlyRetry(t, firstSent, delay, func() (*harness.Client, harness.Reply) {
		return glRcptAttempt(t, gwB, outside, "bob@example.org", "alice@campus.test")
	})
	gwA.WaitLog("new triplet 127.0.0.0/24 <bob@example.org> → <alice@campus.test>", 5*time.Second)
	gwB.WaitLog("known triplet 127.0.0.0/24 <bob@example.org> → <alice@campus.test>", 5*time.Second)
	c.Cmd("QUIT")

	glWaitUntil(glAfterDelay(first, delay))
	c, r = glRcptAttempt(t, gwB, "127.0.0.3", "bob@example.org", "alice@campus.test")
	if r.Code != 250 {
		t.Fatalf("retry at the other gateway after the delay: %v, want 250\n%s", r, c.Transcript())
	}
	glDeliver(t, c, "shared greylist")
	if !glHasSubject(hopB, "shared greylist") {
		t.Fatal("gateway B's next hop lacks the message")
	}
	if keys, _ := rs.Do("KEYS", "sekisho:greylist:*"); !strings.Contains(keys, "sekisho:greylist:{127.0.0.0/24}:t:bob@example.org") {
		t.Fatalf("no triplet key in Redis: %q", keys)
	}
}

// TestGreylistRedisOutage: Redis stops mid-run. Under on_store_error
// accept mail passes un-greylisted (and the next hop gets it), the outage is
// logged once; under tempfail the client is told 451 4.3.0. When Redis comes
// back (empty), both greylist again without a restart of sekisho.
func TestGreylistRedisOutage(t *testing.T) {
	t.Parallel()
	const delay = time.Minute
	rs := testredis.Start(t)
	accept, acceptHop := greylistGateway(t, "{delay: 1m, retry_window: 2m, on_store_error: accept}", glRedisStore(rs.Addr()))
	tempfail, _ := greylistGateway(t, "{delay: 1m, retry_window: 2m, on_store_error: tempfail}", glRedisStore(rs.Addr()))

	for _, gw := range []*harness.Gateway{accept, tempfail} {
		c, r := glRcptAttempt(t, gw, outside, "bob@example.org", "alice@campus.test")
		glWantGreylisted(t, c, r, delay)
	}

	rs.Stop()
	c, r := glRcptAttempt(t, accept, outside, "carol@example.org", "alice@campus.test")
	if r.Code != 250 {
		t.Fatalf("Redis down, on_store_error accept: %v, want 250", r)
	}
	if r := c.Cmd("RCPT TO:<bob@campus.test>"); r.Code != 250 {
		t.Fatalf("Redis down, second recipient: %v, want 250", r)
	}
	glDeliver(t, c, "during the outage")
	if !glHasSubject(acceptHop, "during the outage") {
		t.Fatal("mail accepted during the outage did not reach the next hop")
	}
	glWantAccepted(t, accept, outside, "dave@example.org", "alice@campus.test", "Redis down, on_store_error accept")
	accept.WaitLog(`msg="greylist store unavailable"`, 5*time.Second)
	if n := strings.Count(accept.Log(), `msg="greylist store unavailable"`); n != 1 {
		t.Fatalf("the outage was logged %d times for 3 recipients, want once", n)
	}

	c, r = glRcptAttempt(t, tempfail, outside, "carol@example.org", "alice@campus.test")
	if r.Code != 451 || !strings.HasPrefix(r.Text, "4.3.0 ") {
		t.Fatalf("Redis down, on_store_error tempfail: %v, want 451 4.3.0\n%s", r, c.Transcript())
	}
	tempfail.WaitLog(`msg="greylist store unavailable"`, 5*time.Second)

	rs.Restart() // empty: every triplet is new again
	for _, gw := range []*harness.Gateway{accept, tempfail} {
		c, r := glRcptAttempt(t, gw, outside, "erin@example.org", "alice@campus.test")
		glWantGreylisted(t, c, r, delay)
		gw.WaitLog(`msg="greylist store available again"`, 5*time.Second)
	}
}

// TestGreylistWhitelist: a whitelist file exempts a client address, a
// recipient, and clients whose forward-confirmed reverse-DNS name is under
// a listed domain (asked of a real DNS server); a PTR that does not lead
// back, or a reverse lookup that could not tell, is greylisted — and the
// could-not-tell lookup is made once per connection, not once per RCPT.
func TestGreylistWhitelist(t *testing.T) {
	t.Parallel()
	const delay = time.Minute
	ns := testdns.Start(t)
	ns.AddZone("127.in-addr.arpa.", 60)
	ns.AddZone("friendly.test.", 60)
	ns.Add(
		"5.0.0.127.in-addr.arpa. 300 IN PTR mx.friendly.test.",
		"mx.friendly.test. 300 IN A 127.0.0.5",
		"6.0.0.127.in-addr.arpa. 300 IN PTR forged.friendly.test.",
		"forged.friendly.test. 300 IN A 192.0.2.6",
		"7.0.0.127.in-addr.arpa. 300 IN PTR flaky.friendly.test.",
	)
	ns.SetBehavior("7.0.0.127.in-addr.arpa.", dns.TypePTR, testdns.Servfail)

	dir := t.TempDir()
	whitelist := filepath.Join(dir, "greylist-whitelist.txt")
	os.WriteFile(whitelist, []byte("# test whitelist\n127.0.0.4\n.friendly.test  # verified names\nabuse@campus.test\n"), 0o644)
	gw, _ := greylistGateway(t, fmt.Sprintf("{delay: 1m, retry_window: 2m, whitelist: %q}", whitelist),
		fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 2}\n", ns.Addr())+glBoltStore(filepath.Join(dir, "state.db")))
	gw.WaitLog("greylist whitelist loaded", 5*time.Second)

	glWantAccepted(t, gw, "127.0.0.4", "bob@example.org", "alice@campus.test", "whitelisted address")
	glWantAccepted(t, gw, "127.0.0.5", "bob@example.org", "alice@campus.test", "whitelisted verified name")
	glWantAccepted(t, gw, outside, "bob@example.org", "abuse@campus.test", "whitelisted recipient")

	c, r := glRcptAttempt(t, gw, "127.0.0.6", "bob@example.org", "alice@campus.test")
	glWantGreylisted(t, c, r, delay)

	ptr := "7.0.0.127.in-addr.arpa."
	c, r = glRcptAttempt(t, gw, "127.0.0.7", "bob@example.org", "alice@campus.test")
	glWantGreylisted(t, c, r, delay)
	asked := ns.Queries(ptr, dns.TypePTR, testdns.AnyTransport)
	if asked == 0 {
		t.Fatal("the PTR of 127.0.0.7 was never asked")
	}
	glWantGreylisted(t, c, c.Cmd("RCPT TO:<bob@campus.test>"), delay)
	if n := ns.Queries(ptr, dns.TypePTR, testdns.AnyTransport); n != asked {
		t.Fatalf("second RCPT of the connection asked the PTR again (%d queries, then %d)", asked, n)
	}
	gw.WaitLog("client name could not be verified", 5*time.Second)
}

// TestGreylistWhitelistReloadOnSIGHUP: an edited whitelist is in force
// after SIGHUP; a broken one is refused with file:line and the old list
// stays.
func TestGreylistWhitelistReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	whitelist := filepath.Join(dir, "greylist-whitelist.txt")
	os.WriteFile(whitelist, []byte("127.0.0.4\n"), 0o644)
	gw, _ := greylistGateway(t, fmt.Sprintf("{delay: 1m, retry_window: 2m, whitelist: %q}", whitelist), glBoltStore(filepath.Join(dir, "state.db")))
	c, r := glRcptAttempt(t, gw, "127.0.0.8", "bob@example.org", "alice@campus.test")
	glWantGreylisted(t, c, r, time.Minute)

	os.WriteFile(whitelist, []byte("127.0.0.4\n127.0.0.8\n"), 0o644)
	gw.Signal(syscall.SIGHUP)
	gw.WaitLog("clients=2", 5*time.Second)
	// The new whitelist is read as the whole configuration is rebuilt: it
	// is in force once the reload is (docs/config.md, Reloading).
	gw.WaitLog("configuration reloaded", 5*time.Second)
	glWantAccepted(t, gw, "127.0.0.8", "carol@example.org", "alice@campus.test", "whitelisted after SIGHUP")

	os.WriteFile(whitelist, []byte("127.0.0.4\n127.0.0.999\n"), 0o644)
	gw.Signal(syscall.SIGHUP)
	gw.WaitLog(whitelist+`:2: \"127.0.0.999\"`, 5*time.Second)
	glWantAccepted(t, gw, "127.0.0.8", "dave@example.org", "alice@campus.test", "old list kept after a broken reload")
}

// TestGreylistExplainPeeks: `sekisho explain` with a running gateway's
// config shows the shared Redis state (a known triplet; a new one, held
// with the transaction) and writes nothing; on the embedded store, which
// the running gateway locks, the gateway explains, and explain -direct says
// that it cannot read it.
func TestGreylistExplainPeeks(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	gw, _ := greylistGateway(t, "{delay: 1m, retry_window: 2m}", glRedisStore(rs.Addr()))
	c, r := glRcptAttempt(t, gw, outside, "bob@example.org", "alice@campus.test")
	glWantGreylisted(t, c, r, time.Minute)
	before, _ := rs.Do("DBSIZE")

	explain := func(gw *harness.Gateway) string {
		t.Helper()
		out, _ := explainCLI(t, gw.Dir, "-config", filepath.Join(gw.Dir, "sekisho.yaml"),
			"-ip", outside, "-from", "bob@example.org", "-rcpt", "alice@campus.test", "-rcpt", "carol@campus.test")
		return out
	}
	out := explain(gw)
	for _, want := range []string{
		"known triplet 127.0.0.0/24 <bob@example.org> → <alice@campus.test> greylisted",
		"triplet 127.0.0.0/24 <bob@example.org> → <carol@campus.test> held with the transaction (127.0.0.0/24 <bob@example.org> → <alice@campus.test> greylisted)",
		"451 4.7.1 greylisted, please try again in",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	if after, _ := rs.Do("DBSIZE"); after != before {
		t.Errorf("explain wrote to Redis: DBSIZE %q, then %q", before, after)
	}

	// The embedded store, locked by the running gateway: the gateway
	// explains on it (the control socket); explain on its own cannot read
	// it, and says so.
	gwBolt, _ := greylistGateway(t, "{delay: 1m, retry_window: 2m}", glBoltStore(filepath.Join(t.TempDir(), "state.db")))
	if out := explain(gwBolt); !strings.Contains(out, "new triplet 127.0.0.0/24 <bob@example.org> → <alice@campus.test> greylisted") ||
		!strings.Contains(out, "explained by the running gateway") {
		t.Errorf("explain beside a gateway on the embedded store:\n%s", out)
	}
	out, _ = explainCLI(t, gwBolt.Dir, "-direct", "-config", filepath.Join(gwBolt.Dir, "sekisho.yaml"),
		"-ip", outside, "-from", "bob@example.org", "-rcpt", "alice@campus.test")
	if !strings.Contains(out, "cannot be read while sekisho serve runs") {
		t.Errorf("explain -direct on a locked embedded store:\n%s", out)
	}
}
