package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"sekisho/internal/faultproxy"
	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

// ldapSite configures a campus gateway whose account check asks the directory
// at url, with a 1 s LDAP timeout.
func ldapSite(t *testing.T, url string, hop string) site {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "ldap.secret")
	if err := os.WriteFile(secret, []byte(testslapd.ServicePass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, hop)},
		checks: "account: {}",
		extra: fmt.Sprintf(`ldap:
  urls: [%q]
  base_dn: %q
  bind_dn: %q
  bind_password_file: %q
  canary: %q
  timeout: 1s
`, url, testslapd.PeopleDN, testslapd.ServiceDN, secret, testslapd.Canary),
	}
}

// withoutLDAPCache switches the positive cache and the account memory off
// (ldap.positive_cache_ttl: 0s, ldap.stale_ttl: 0s): every recipient is
// one search and nothing is served stale, as the tests of the directory's
// failures need.
func withoutLDAPCache(s site) site {
	s.extra = strings.Replace(s.extra, "  timeout: 1s\n", "  timeout: 1s\n  positive_cache_ttl: 0s\n  stale_ttl: 0s\n", 1)
	return s
}

func rcptSession(t *testing.T, gw *harness.Gateway) *harness.Client {
	t.Helper()
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	return c
}

// TestAccountCheck: known users (by mail, alternate address, +tag) are
// accepted, an unknown one gets 550 5.1.1, postmaster always passes.
func TestAccountCheck(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	gw := harness.Start(t, ldapSite(t, slapd.URL(), "smtp://"+hop.Addr).yaml(t))
	c := rcptSession(t, gw)
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<a.smith@campus.test>", "250")
	c.Expect("RCPT TO:<bob+lists@campus.test>", "250")
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	c.Expect("RCPT TO:<*@campus.test>", "550 5.1.1")
	c.Expect("RCPT TO:<postmaster@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("to the known ones") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatal(r)
	}
	if m := hop.Messages(); len(m) != 1 || len(m[0].To) != 4 {
		t.Fatalf("next hop: %+v", m)
	}
	gw.WaitLog("no entry for nosuchuser@campus.test (canary present)", 5*time.Second)
}

// TestAccountDirectoryDown: slapd stopped → 451 4.4.3 for every recipient,
// known or not, never a 550 (without the positive cache: see
// TestAccountPositiveCache for what it changes).
func TestAccountDirectoryDown(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	gw := harness.Start(t, withoutLDAPCache(ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)).yaml(t))
	c := rcptSession(t, gw)
	c.Expect("RCPT TO:<alice@campus.test>", "250") // the pool is warm
	slapd.Stop()
	for _, rcpt := range []string{"carol@campus.test", "nosuchuser@campus.test", "alice@campus.test"} {
		c.Expect("RCPT TO:<"+rcpt+">", "451 4.4.3")
	}
	slapd.Restart()
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1") // back without restarting sekisho
}

// TestAccountPositiveCache: with ldap.positive_cache_ttl at its default (a
// minute), an account found once is accepted while slapd is stopped; an
// account not asked before and an unknown one are still deferred (nothing
// but a found account is remembered); with 0s the same known account is
// deferred.
func TestAccountPositiveCache(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	gw := harness.Start(t, ldapSite(t, slapd.URL(), "smtp://"+hop.Addr).yaml(t))
	plain := harness.Start(t, withoutLDAPCache(ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)).yaml(t))
	c, p := rcptSession(t, gw), rcptSession(t, plain)
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	p.Expect("RCPT TO:<alice@campus.test>", "250")
	slapd.Stop()
	c.Expect("RCPT TO:<Alice+news@campus.test>", "250") // the same account, from the cache
	c.Expect("RCPT TO:<carol@campus.test>", "451 4.4.3")
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "451 4.4.3")
	p.Expect("RCPT TO:<alice@campus.test>", "451 4.4.3")
}

// TestAccountDirectoryFrozen: the TCP path to slapd stops forwarding without
// closing; the client gets 451 4.4.3 within the LDAP timeout, not a hang.
func TestAccountDirectoryFrozen(t *testing.T) {
	slapd := testslapd.Start(t)
	proxy := faultproxy.Start(t, slapd.Addr())
	hop := harness.StartNextHop(t, false)
	gw := harness.Start(t, ldapSite(t, "ldap://"+proxy.Addr(), "smtp://"+hop.Addr).yaml(t))
	c := rcptSession(t, gw)
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	proxy.Freeze()
	start := time.Now()
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "451 4.4.3")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("frozen directory held the client for %v (LDAP timeout 1s)", took)
	}
	proxy.Thaw()
}

// TestAccountCanaryMissing: with the canary's entry deleted, an absent
// recipient is 451 4.3.0 (the directory may be incomplete), never 550.
func TestAccountCanaryMissing(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	gw := harness.Start(t, ldapSite(t, slapd.URL(), "smtp://"+hop.Addr).yaml(t))
	slapd.DeleteEntry(testslapd.PersonByUID("canary").DN())
	c := rcptSession(t, gw)
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "451 4.3.0")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.3.0")
	gw.WaitLog("canary missing", 5*time.Second)
}

// TestAccountAndNextHopAgree: a known user the next hop refuses gets the
// next hop's 550; an unknown user gets 550 5.1.1 from the directory without
// the next hop ever being contacted (no call-ahead for a recipient we refuse,
// so a directory harvest costs the next hop nothing); a known user while the
// next hop is unreachable gets 451 4.4.1.
func TestAccountAndNextHopAgree(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	refuseCarolsMailbox(hop)
	gw := harness.Start(t, ldapSite(t, slapd.URL(), "smtp://"+hop.Addr).yaml(t))
	c := rcptSession(t, gw)
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	if n := hop.Sessions(); n != 0 {
		t.Errorf("an unknown recipient opened %d next hop sessions, want 0", n)
	}
	c.Expect("RCPT TO:<carol@campus.test>", "550 5.2.1")

	dead := testenv.FreePort(t)
	gw2 := harness.Start(t, ldapSite(t, slapd.URL(), "smtp://"+dead).yaml(t))
	c2 := rcptSession(t, gw2)
	c2.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	c2.Expect("RCPT TO:<alice@campus.test>", "451 4.4.1")
}

// refuseCarolsMailbox makes the next hop refuse carol@ with 550 5.2.1, as a
// mailbox server whose mailbox is disabled while the directory still has
// the account.
func refuseCarolsMailbox(hop *harness.NextHop) {
	hop.OnRcpt = func(to string) error {
		if strings.HasPrefix(to, "carol@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 2, 1}, Message: "mailbox disabled"}
		}
		return nil
	}
}
