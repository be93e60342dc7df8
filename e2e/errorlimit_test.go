package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testslapd"
)

// TestErrorLimitHarvest: limits.max_errors (Postfix's smtpd_hard_error_limit)
// against a directory harvest, with the real account check on slapd.
//
//   - harvest: a session that tries 1,000 random recipients gets 550 5.1.1
//     for the first max_errors (10) of them, then 421 4.7.0 right after the
//     10th 550, and the connection is closed. The harvest cost at most
//     max_errors LDAP searches (counted in slapd's own log: one search per
//     recipient, the canary in the same filter), and the next hop was never
//     contacted: a recipient refused by a check opens no call-ahead. The
//     same holds when the 1,000 RCPTs are pipelined in one write.
//   - greylisting deferrals (451 4.7.1) and 452 do not count: 30 known
//     recipients, all greylisted on first contact, get 30 × 451 4.7.1 and no
//     421; past max_recipients every further RCPT gets 452 4.5.3, 15 times,
//     and no 421. The session is still usable afterwards.
//   - the count starts again after a delivered message: 9 errors, a message
//     delivered (250 to DATA), then 9 more errors are all answered 550 with
//     no 421 (18 errors in the session, but 9 since the delivery); the 10th
//     error after the delivery gets its 550 followed by 421 4.7.0.
func TestErrorLimitHarvest(t *testing.T) {
	const maxErrors = 10
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	s := ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)
	// 127.0.0.2 (the harvester) and 127.0.0.4 are exempt from greylisting:
	// their known recipients would reach the call-ahead. 127.0.0.3 is not.
	s.checks = "account: {}\ngreylist: {delay: 1h, exempt: [127.0.0.2/32, 127.0.0.4/32]}"
	s.limits = fmt.Sprintf("max_errors: %d\nmax_recipients: 5", maxErrors)
	s.extra += fmt.Sprintf("store: {path: %q}\n", filepath.Join(t.TempDir(), "state.db"))
	gw := harness.Start(t, s.yaml(t))

	t.Run("harvest", func(t *testing.T) {
		token := randomToken(t)
		c := harness.DialFrom(t, outside, gw.SMTP)
		c.Expect("EHLO harvester.example.net", "250")
		c.Expect("MAIL FROM:<harvest@example.net>", "250")
		sent, refused := 0, 0
		var last harness.Reply
		for i := 0; i < 1000; i++ {
			sent++
			last = c.Cmd(fmt.Sprintf("RCPT TO:<%s-%04d@campus.test>", token, i))
			if !strings.HasPrefix(last.String(), "550 5.1.1") {
				break
			}
			refused++
			if refused == maxErrors {
				// The reply that reaches the limit is followed at once by
				// 421, without another command.
				last = c.Read()
				break
			}
		}
		if refused != maxErrors || !strings.HasPrefix(last.String(), "421 4.7.0") {
			t.Fatalf("after %d RCPTs: %d × 550 5.1.1, then %q; want %d × 550 5.1.1 then 421 4.7.0\n%s",
				sent, refused, last, maxErrors, c.Transcript())
		}
		if !c.Closed(10 * time.Second) {
			t.Errorf("connection still open after 421 4.7.0")
		}
		searches := 0
		for _, f := range slapd.SearchFilters() {
			if strings.Contains(f, token) {
				searches++
			}
		}
		t.Logf("harvest: %d RCPTs sent of 1000, %d × 550 5.1.1, then 421; %d LDAP searches; next hop sessions %d",
			sent, refused, searches, hop.Sessions())
		// Each refused RCPT is one search (recipient and canary in one
		// filter); the RCPTs the client never got to send cost nothing.
		if searches > maxErrors {
			t.Errorf("the harvest cost %d LDAP searches, want at most %d", searches, maxErrors)
		}
		if searches == 0 {
			t.Errorf("no search with %q in slapd's log: the count proves nothing", token)
		}
		if n := hop.Sessions(); n != 0 {
			t.Errorf("unknown recipients opened %d next hop sessions, want 0", n)
		}
		gw.WaitLog("error limit reached", 5*time.Second)
	})

	t.Run("pipelined harvest", func(t *testing.T) {
		// The same harvest as a fast harvester sends it: all 1,000 RCPTs
		// in one write (PIPELINING is offered, RFC 2920). The gateway
		// stops at the limit all the same: the commands behind the one
		// that reached it are never executed.
		token := randomToken(t)
		c := harness.DialFrom(t, "127.0.0.5", gw.SMTP)
		c.Expect("EHLO harvester.example.net", "250")
		c.Expect("MAIL FROM:<harvest@example.net>", "250")
		var all strings.Builder
		for i := 0; i < 1000; i++ {
			fmt.Fprintf(&all, "RCPT TO:<%s-%04d@campus.test>\r\n", token, i)
		}
		c.SendRaw(all.String())
		refused := 0
		var last harness.Reply
		for {
			last = c.Read()
			if !strings.HasPrefix(last.String(), "550 5.1.1") {
				break
			}
			refused++
		}
		if refused != maxErrors || !strings.HasPrefix(last.String(), "421 4.7.0") {
			t.Fatalf("pipelined harvest: %d × 550 5.1.1, then %q; want %d × 550 5.1.1 then 421 4.7.0\n%s",
				refused, last, maxErrors, c.Transcript())
		}
		searches := 0
		for _, f := range slapd.SearchFilters() {
			if strings.Contains(f, token) {
				searches++
			}
		}
		t.Logf("pipelined harvest: %d × 550 5.1.1, then 421; %d LDAP searches", refused, searches)
		if searches > maxErrors || searches == 0 {
			t.Errorf("the pipelined harvest cost %d LDAP searches, want 1..%d", searches, maxErrors)
		}
		if n := hop.Sessions(); n != 0 {
			t.Errorf("unknown recipients opened %d next hop sessions, want 0", n)
		}
	})

	t.Run("greylisting and 452 do not count", func(t *testing.T) {
		c := harness.DialFrom(t, "127.0.0.3", gw.SMTP)
		c.Expect("EHLO mx.example.net", "250")
		c.Expect("MAIL FROM:<list@example.net>", "250")
		for i := 0; i < 30; i++ {
			// alice+tag is looked up as alice: a known user, so the
			// account check passes and greylisting defers.
			c.Expect(fmt.Sprintf("RCPT TO:<alice+%d@campus.test>", i), "451 4.7.1")
		}
		// postmaster passes greylisting (RFC 5321 §4.5.1): five of them
		// fill max_recipients, the next fifteen get 452.
		for i := 0; i < 5; i++ {
			c.Expect("RCPT TO:<postmaster@campus.test>", "250")
		}
		for i := 0; i < 15; i++ {
			c.Expect("RCPT TO:<postmaster@campus.test>", "452 4.5.3")
		}
		c.Expect("RSET", "250")
		c.Expect("NOOP", "250")
		c.Expect("QUIT", "221")
	})

	t.Run("count starts again after a delivered message", func(t *testing.T) {
		token := randomToken(t)
		c := harness.DialFrom(t, "127.0.0.4", gw.SMTP)
		c.Expect("EHLO mx.example.net", "250")
		c.Expect("MAIL FROM:<sender@example.net>", "250")
		for i := 0; i < maxErrors-1; i++ {
			c.Expect(fmt.Sprintf("RCPT TO:<%s-a%d@campus.test>", token, i), "550 5.1.1")
		}
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(hdr("between errors") + "body\r\n.\r\n")
		if r := c.Read(); !strings.HasPrefix(r.String(), "250 2.0.0") {
			t.Fatalf("DATA: %q, want 250 2.0.0\n%s", r, c.Transcript())
		}
		c.Expect("MAIL FROM:<sender@example.net>", "250")
		for i := 0; i < maxErrors-1; i++ {
			c.Expect(fmt.Sprintf("RCPT TO:<%s-b%d@campus.test>", token, i), "550 5.1.1")
		}
		// 9 errors since the delivery: the session goes on.
		c.Expect("NOOP", "250")
		c.Expect(fmt.Sprintf("RCPT TO:<%s-b%d@campus.test>", token, maxErrors), "550 5.1.1")
		if r := c.Read(); !strings.HasPrefix(r.String(), "421 4.7.0") {
			t.Errorf("10th error since the delivery: then %q, want 421 4.7.0\n%s", r, c.Transcript())
		}
		if n := len(hop.Messages()); n != 1 {
			t.Errorf("next hop holds %d messages, want 1", n)
		}
	})
}

// randomToken is a fresh local-part prefix, so that a harvest's searches can
// be told apart in slapd's log.
func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "h" + hex.EncodeToString(b)
}
