package e2e

import (
	"net/smtp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
	"sekisho/internal/testslapd"
)

// Serve stale (issue 19, docs/checks-account.md): an account the directory
// found is remembered in the state store with when it was confirmed, and
// accepted while the directory cannot tell, for ldap.stale_ttl.

// staleGateway is a campus gateway on slapd (through ldapURL) and one Redis,
// without the in-process positive cache (so that what is served comes from
// the store), its next hop refusing carol's mailbox, with an http listener
// for the metrics and an alarm that fires on few decisions.
func staleGateway(t *testing.T, ldapURL string, rs *testredis.Server, hop *harness.NextHop) (*harness.Gateway, string) {
	t.Helper()
	s := ldapSite(t, ldapURL, "smtp://"+hop.Addr)
	s.extra = strings.Replace(s.extra, "  timeout: 1s\n", "  timeout: 1s\n  positive_cache_ttl: 0s\n", 1)
	s.http = testenv.FreePort(t)
	s.extra += glRedisStore(rs.Addr())
	s.extra += "alarm: {window: 1m, min_events: 3, tempfail_ratio: 0.5}\nreport: {flush_interval: 100ms}\n"
	return harness.Start(t, s.yaml(t)), s.http
}

// TestAccountServeStale: with slapd stopped, and again with slapd frozen,
// a recipient the directory confirmed (through gateway A) is accepted by A
// and by gateway B, which shares A's Redis and never asked about her; the
// mail reaches the next hop. A recipient the directory never confirmed is
// 451, an unknown one 451 (never 550 while the directory cannot tell, and
// never remembered), one confirmed longer ago than stale_ttl 451, and a
// confirmed one whose mailbox the next hop refuses gets the next hop's 550.
// Each recipient served stale is a WARN line with its age, the metric
// sekisho_ldap_stale_total, an ldap_stale row in `sekisho report`, and is
// named "served stale" by the tempfail alarm.
func TestAccountServeStale(t *testing.T) {
	slapd := testslapd.Start(t)
	rs := testredis.Start(t)
	hop := harness.StartNextHop(t, false)
	refuseCarolsMailbox(hop)
	a, aHTTP := staleGateway(t, slapd.URL(), rs, hop)
	b, _ := staleGateway(t, slapd.URL(), rs, hop)

	c := rcptSession(t, a)
	c.Expect("RCPT TO:<Alice+news@campus.test>", "250")  // remembered as alice@campus.test
	c.Expect("RCPT TO:<carol@campus.test>", "550 5.2.1") // in the directory, not at the mailbox server
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	c.Cmd("QUIT")
	if got, _ := rs.Do("GET", "sekisho:kv:account:nosuchuser@campus.test"); got != "$-1" {
		t.Errorf("an unknown user is remembered: %q", got)
	}
	// dup1 was confirmed eight days ago (more than the default stale_ttl,
	// seven days): as another gateway with a longer stale_ttl would have
	// left it.
	old := strconv.FormatInt(time.Now().Add(-8*24*time.Hour).UnixMilli(), 10)
	if got, err := rs.Do("SET", "sekisho:kv:account:dup1@campus.test", old, "PX", "3600000"); err != nil || got != "+OK" {
		t.Fatalf("SET: %q %v", got, err)
	}

	// Frozen, each lookup waits for the LDAP timeout (1 s): fewer
	// recipients.
	check := func(what string, gw *harness.Gateway, all bool) {
		t.Helper()
		c := rcptSession(t, gw)
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("RCPT TO:<carol@campus.test>", "550 5.2.1")
		c.Expect("RCPT TO:<bob@campus.test>", "451 4.4.3")
		if all {
			c.Expect("RCPT TO:<nosuchuser@campus.test>", "451 4.4.3")
			c.Expect("RCPT TO:<dup1@campus.test>", "451 4.4.3")
		}
		c.Expect("DATA", "354")
		c.SendRaw(hdr("served stale, "+what) + "body\r\n.\r\n")
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("%s: DATA: %v\n%s", what, r, c.Transcript())
		}
		c.Cmd("QUIT")
	}
	slapd.Stop()
	check("slapd stopped, gateway A", a, true)
	check("slapd stopped, gateway B", b, true)
	// net/smtp through B too: a real client's whole transaction.
	if err := smtp.SendMail(b.SMTP, nil, "bob@example.org", []string{"alice@campus.test"},
		[]byte(hdr("net/smtp, slapd stopped")+"body\r\n")); err != nil {
		t.Fatalf("net/smtp through B with slapd stopped: %v", err)
	}
	slapd.Restart()
	slapd.Freeze()
	check("slapd frozen, gateway A", a, false)
	slapd.Thaw()
	if n := len(hop.Messages()); n != 4 {
		t.Errorf("next hop got %d messages, want 4", n)
	}

	line := a.WaitLog("account served stale", 5*time.Second)
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "rcpt=alice@campus.test") || !strings.Contains(line, " age=") {
		t.Errorf("served stale line: %s", line)
	}
	b.WaitLog("account served stale", 5*time.Second)
	// The metric counts the account check's answers (alice and carol,
	// stopped and frozen); the report, recipients accepted (alice).
	if got := series(scrape(t, aHTTP), "sekisho_ldap_stale_total"); got[""] != 4 {
		t.Errorf("sekisho_ldap_stale_total on A: %v, want 4 (alice and carol, stopped and frozen)", got)
	}
	fired := a.WaitLog("alarm: infrastructure deferrals above threshold", 5*time.Second)
	if !strings.Contains(fired, "served stale (ldap_stale):") {
		t.Errorf("the alarm does not name served stale: %s", fired)
	}

	for _, gw := range []*harness.Gateway{a, b} {
		gw.Signal(syscall.SIGTERM)
		if err := gw.Wait(30 * time.Second); err != nil {
			t.Fatalf("sekisho did not stop: %v", err)
		}
	}
	today := time.Now().UTC().Format("2006-01-02")
	got, out := reportAttempts(t, a, today, today)
	// A: alice stopped and frozen; B: alice in the transcript and by net/smtp.
	if got["ldap_stale"] != 4 {
		t.Errorf("report: ldap_stale %d, want 4 (both gateways, one Redis)\n%s", got["ldap_stale"], out)
	}
	if got["ldap_tempfail"] != 7 {
		t.Errorf("report: ldap_tempfail %d, want 7 (bob, nosuchuser, dup1 on A and B; bob frozen)\n%s", got["ldap_tempfail"], out)
	}
}
