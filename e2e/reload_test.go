package e2e

import (
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// reloadConfig is a whole configuration whose line numbers the tests know:
// limits.max_recipients is on line 10.
func reloadConfig(smtpAddr, hop string, maxRecipients string) string {
	return fmt.Sprintf(`hostname: mx.campus.test
listen:
  smtp: %q
local_domains: [campus.test]
trusted_networks: [127.0.0.1/32]
routes:
  - {domains: [campus.test], next_hops: ["smtp://%s"]}
limits:
  shutdown_grace: 20s
  max_recipients: %s
checks:
  greet_pause: {delay: 0s, exempt: []}
  dnsbl: {off: true}
  domain: {off: true}
  account: {off: true}
  greylist: {off: true}
  spf: {off: true}
`, smtpAddr, hop, maxRecipients)
}

// rewriteConfig replaces the configuration file as an editor does.
func rewriteConfig(t *testing.T, path, content string) {
	t.Helper()
	writeList(t, path, content)
}

// reloadAndWait sends SIGHUP and waits for the n-th log line with substr
// (the earlier ones are from earlier reloads).
func reloadAndWait(t *testing.T, gw *harness.Gateway, substr string, n int) string {
	t.Helper()
	gw.Signal(syscall.SIGHUP)
	return gw.WaitLogCount(func(l string) bool { return strings.Contains(l, substr) }, n, 10*time.Second)
}

// sendMail sends one message with net/smtp to the gateway, as a campus
// server (127.0.0.1, trusted) would.
func sendMail(gw *harness.Gateway, subject string, rcpts ...string) error {
	return smtp.SendMail(gw.SMTP, nil, "bob@example.org", rcpts, []byte(hdr(subject)+"body\r\n"))
}

// delivered reports the recipients of the message with subject at hop (nil
// if it has none).
func delivered(hop *harness.NextHop, subject string) []string {
	for _, m := range hop.Messages() {
		if strings.Contains(string(m.Data), "Subject: "+subject+"\r\n") {
			return m.To
		}
	}
	return nil
}

// TestReloadWholeConfiguration: SIGHUP puts a re-read configuration in
// force — a route to another next hop and a lower max_recipients — for new
// connections, while a session that sent MAIL and RCPT before the reload
// finishes its transaction on the old route and limit. A broken file is
// refused with file:line in an ERROR line and mail keeps flowing on the
// configuration in force.
func TestReloadWholeConfiguration(t *testing.T) {
	hopA := harness.StartNextHop(t, false)
	hopB := harness.StartNextHop(t, false)
	addr := testenv.FreePort(t)
	gw := harness.Start(t, reloadConfig(addr, hopA.Addr, "2"))
	path := filepath.Join(gw.Dir, "sekisho.yaml")

	// A session open across the reload: MAIL and RCPT before it.
	old := harness.Dial(t, gw.SMTP)
	old.Expect("EHLO old.campus.test", "250")
	old.Expect("MAIL FROM:<bob@example.org>", "250")
	old.Expect("RCPT TO:<alice@campus.test>", "250")

	rewriteConfig(t, path, reloadConfig(addr, hopB.Addr, "1"))
	line := reloadAndWait(t, gw, "configuration reloaded", 1)
	for _, want := range []string{"level=INFO", "routes", "limits"} {
		if !strings.Contains(line, want) {
			t.Errorf("reload log line lacks %q:\n%s", want, line)
		}
	}

	// The old session: a second recipient (max_recipients was 2), and
	// the message to the old route's next hop.
	old.Expect("RCPT TO:<carol@campus.test>", "250")
	old.Expect("DATA", "354")
	old.SendRaw(hdr("across the reload") + "body\r\n.\r\n")
	if r := old.Read(); r.Code != 250 {
		t.Fatalf("the session open across the reload: end of data got %v", r)
	}
	old.Expect("QUIT", "221")
	if got := delivered(hopA, "across the reload"); len(got) != 2 {
		t.Errorf("the session open across the reload was not delivered to the old next hop with its 2 recipients: %v (new hop: %v)",
			got, delivered(hopB, "across the reload"))
	}

	// A new session: the new limit, exactly, and the new route.
	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO new.campus.test", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<carol@campus.test>", "452 4.5.3 too many recipients")
	c.Expect("QUIT", "221")
	if err := sendMail(gw, "after the reload", "alice@campus.test"); err != nil {
		t.Fatalf("net/smtp after the reload: %v", err)
	}
	if delivered(hopB, "after the reload") == nil {
		t.Errorf("a new connection after the reload did not go to the new route's next hop (old hop has it: %v)",
			delivered(hopA, "after the reload") != nil)
	}

	// A broken file: refused with file:line, the configuration in force
	// stays (route to B, max_recipients 1).
	rewriteConfig(t, path, reloadConfig(addr, hopA.Addr, "many"))
	line = reloadAndWait(t, gw, "configuration reload refused", 1)
	for _, want := range []string{"level=ERROR", path + ":10:"} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal log line lacks %q:\n%s", want, line)
		}
	}
	if err := sendMail(gw, "after the broken file", "alice@campus.test"); err != nil {
		t.Fatalf("net/smtp after the broken file: %v", err)
	}
	if delivered(hopB, "after the broken file") == nil {
		t.Errorf("after a refused reload, mail did not go on to the next hop in force")
	}
	if err := sendMail(gw, "two recipients", "alice@campus.test", "carol@campus.test"); err == nil || !strings.Contains(err.Error(), "452") {
		t.Errorf("after a refused reload, max_recipients 1 is not in force: %v", err)
	}

	// An invalid value (not a YAML error): refused with its line too.
	rewriteConfig(t, path, reloadConfig(addr, hopA.Addr, "0"))
	line = reloadAndWait(t, gw, "configuration reload refused", 2)
	if !strings.Contains(line, path+":8:") || !strings.Contains(line, "max_recipients") {
		t.Errorf("refusal of an invalid value does not name file:line and the key:\n%s", line)
	}
}

// TestReloadNeedsRestart: a changed listen.smtp cannot be applied by a
// reload: a WARN line names it, the gateway goes on listening where it
// did, and the rest of the file (here a new route) is applied.
func TestReloadNeedsRestart(t *testing.T) {
	hopA := harness.StartNextHop(t, false)
	hopB := harness.StartNextHop(t, false)
	addr := testenv.FreePort(t)
	gw := harness.Start(t, reloadConfig(addr, hopA.Addr, "5"))
	path := filepath.Join(gw.Dir, "sekisho.yaml")

	other := testenv.FreePort(t)
	if err := os.WriteFile(path, []byte(reloadConfig(other, hopB.Addr, "5")), 0o600); err != nil {
		t.Fatal(err)
	}
	line := reloadAndWait(t, gw, "needs a restart", 1)
	for _, want := range []string{"level=WARN", "listen.smtp"} {
		if !strings.Contains(line, want) {
			t.Errorf("needs-restart log line lacks %q:\n%s", want, line)
		}
	}
	gw.WaitLog("configuration reloaded", 5*time.Second)
	if err := sendMail(gw, "old address", "alice@campus.test"); err != nil {
		t.Fatalf("the listener in force stopped after the reload: %v", err)
	}
	if delivered(hopB, "old address") == nil {
		t.Errorf("the rest of the file was not applied: the new route's next hop did not get the message")
	}
}

// mxStyleConfig is deploy/mx.yaml for a test: its sections, comments and
// settings, with test addresses and files; dns: comes first, so that every
// prefix the gateway accepts asks the test DNS server, never the machine's
// resolver. Two next hops as in mx.yaml, and a bad-domain list.
func mxStyleConfig(smtpAddr, httpAddr, dnsAddr, hop1, hop2, badDomains string) string {
	return fmt.Sprintf(`# sekisho as the inbound MX of campus.test: mail from the Internet for the
# campus domains, relayed to the campus mail servers.
hostname: mx1.campus.test
listen:
  smtp: %q
  http: %q          # /metrics, /healthz, /readyz
dns: {resolvers: [%q], timeout: 500ms, attempts: 2, canary: campus.test}
local_domains: [campus.test, .campus.test]   # leading dot: subdomains
trusted_networks: [127.0.0.1/32]   # nobody else may relay through an MX
routes:
  # First match wins. Both campus servers are tried in order (failover).
  - {domains: [campus.test, .campus.test], next_hops: ["smtp://%s", "smtp://%s"]}
checks:
  greet_pause: {delay: 5s}
  # Looked up while the banner is held, enforced at the first RCPT.
  dnsbl:
    zones: ["bl.test=127.0.0.2..127.0.0.11"]
    threshold: 1
  domain:
    bad_domains: %s
    nxdomain: tempfail
limits:
  max_connections: 2000
  max_connections_per_ip: 20
  max_message_bytes: 52428800
  max_recipients: 100
  max_errors: 10
  command_timeout: 5m
  data_timeout: 10m
  shutdown_grace: 20s
next_hop:
  connect_timeout: 10s
  call_ahead_timeout: 30s
  command_timeout: 2m
  data_timeout: 5m
log: {format: text, level: info}
`, smtpAddr, httpAddr, dnsAddr, hop1, hop2, badDomains)
}

// TestReloadEveryPrefixKeepsTheCampus: a running MX gets its configuration
// file replaced by each prefix of a deploy-style file (cut after each line:
// an editor's save caught half way, `: > sekisho.yaml`, a file that stops
// after listen:), then SIGHUP. After every reload a campus address from
// outside is still accepted (never a 5xx: no "relay access denied", no "no
// route"), and each refused file got exactly one ERROR line naming it, an
// empty one "file is empty"; an accepted one none.
func TestReloadEveryPrefixKeepsTheCampus(t *testing.T) {
	s := mailDNS(t)
	s.AddZone("bl.test.", 60)
	hop1 := harness.StartNextHop(t, false)
	hop2 := harness.StartNextHop(t, false)
	list := filepath.Join(t.TempDir(), "baddomains.txt")
	writeList(t, list, "first.net\n")
	full := mxStyleConfig(testenv.FreePort(t), testenv.FreePort(t), s.Addr(), hop1.Addr, hop2.Addr, list)
	gw := harness.Start(t, full)
	path := filepath.Join(gw.Dir, "sekisho.yaml")

	isReload := func(l string) bool {
		return strings.Contains(l, "configuration reloaded") || strings.Contains(l, "configuration reload refused")
	}
	countErrors := func() int { return strings.Count(gw.Log(), "level=ERROR") }
	lines := strings.SplitAfter(full, "\n")
	refused, accepted := 0, 0
	for n := 0; n <= len(lines); n++ {
		prefix := strings.Join(lines[:n], "")
		rewriteConfig(t, path, prefix)
		errorsBefore := countErrors()
		gw.Signal(syscall.SIGHUP)
		line := gw.WaitLogCount(isReload, n+1, 10*time.Second)
		if strings.Contains(line, "configuration reload refused") {
			refused++
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, path) {
				t.Errorf("cut after line %d: the refusal is not an ERROR line naming %s:\n%s", n, path, line)
			}
			if !strings.Contains(prefix, ":") && !strings.Contains(line, "file is empty") {
				t.Errorf("cut after line %d (no setting): the refusal does not say the file is empty:\n%s", n, line)
			}
			// Once the file has listen:, what is missing is said at the
			// line of the listener that needs it.
			if strings.Contains(prefix, "\nlisten:") && !regexp.MustCompile(regexp.QuoteMeta(path)+`:\d+: `).MatchString(line) {
				t.Errorf("cut after line %d: the refusal does not name %s:LINE:\n%s", n, path, line)
			}
		} else {
			accepted++
		}

		// From outside: a bounce (the null sender) and a message from
		// an existing domain, each to the campus and a subdomain.
		c := harness.DialFrom(t, outside, gw.SMTP)
		c.Expect("EHLO client.mx.net", "250")
		for _, from := range []string{"", "bob@mx.net"} {
			if r := c.Cmd("MAIL FROM:<" + from + ">"); r.Code != 250 {
				t.Errorf("cut after line %d: MAIL FROM:<%s> got %v, want 250", n, from, r)
			}
			for _, rcpt := range []string{"alice@campus.test", "carol@dept.campus.test"} {
				if r := c.Cmd("RCPT TO:<" + rcpt + ">"); r.Code != 250 {
					t.Errorf("cut after line %d: MAIL FROM:<%s> RCPT TO:<%s> got %v, want 250; the file was:\n%s", n, from, rcpt, r, prefix)
				}
			}
			c.Expect("RSET", "250")
		}
		c.Expect("QUIT", "221")
		want := errorsBefore
		if strings.Contains(line, "configuration reload refused") {
			want++
		}
		if got := countErrors(); got != want {
			t.Errorf("cut after line %d: %d new ERROR lines, want %d", n, got-errorsBefore, want-errorsBefore)
		}
	}
	if refused == 0 || accepted == 0 {
		t.Errorf("%d files refused, %d accepted: want both", refused, accepted)
	}
	t.Logf("%d prefixes refused, %d accepted", refused, accepted)
}

// TestReloadRevokesRelay: relay rights are those of the configuration in
// force at each transaction. A session opened from a trusted network relays
// to an outside domain; trusted_networks loses that network and SIGHUP puts
// the file in force; the same session, still open, is refused relaying at
// its next transaction (554 5.7.1) while its local recipients are still
// taken. An LMTP session is refused at its next MAIL: LMTP is only for
// trusted_networks.
func TestReloadRevokesRelay(t *testing.T) {
	campusHop := harness.StartNextHop(t, false)
	outHop := harness.StartNextHop(t, false)
	addr, lmtpAddr := testenv.FreePort(t), testenv.FreePort(t)
	config := func(trusted string) string {
		c := reloadConfig(addr, campusHop.Addr, "10")
		c = strings.Replace(c, "trusted_networks: [127.0.0.1/32]", "trusted_networks: ["+trusted+"]", 1)
		c = strings.Replace(c, "routes:\n", fmt.Sprintf("routes:\n  - {domains: [example.net], next_hops: [\"smtp://%s\"]}\n", outHop.Addr), 1)
		return strings.Replace(c, "listen:\n", fmt.Sprintf("listen:\n  lmtp: %q\n", lmtpAddr), 1)
	}
	gw := harness.Start(t, config("127.0.0.0/8, 10.0.0.0/8"))
	gw.WaitLog("msg=listening listener=lmtp", 10*time.Second)
	path := filepath.Join(gw.Dir, "sekisho.yaml")

	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<friend@example.net>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("before the reload") + "body\r\n.\r\n")
	expectReply(t, c, "relayed before the reload", c.Read(), "250 2.0.0")
	l := harness.Dial(t, lmtpAddr)
	l.Expect("LHLO mail.campus.test", "250")

	rewriteConfig(t, path, config("10.0.0.0/8"))
	reloadAndWait(t, gw, "configuration reloaded", 1)

	if r := l.Cmd("MAIL FROM:<alice@campus.test>"); !strings.HasPrefix(r.String(), "554 5.7.1") {
		t.Errorf("LMTP session of a network no longer trusted: MAIL got %q, want 554 5.7.1", r.String())
	}
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<friend@example.net>", "554 5.7.1")
	c.Expect("RCPT TO:<bob@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("after the reload") + "body\r\n.\r\n")
	expectReply(t, c, "local mail after the reload", c.Read(), "250 2.0.0")
	c.Expect("QUIT", "221")

	if got := delivered(outHop, "before the reload"); len(got) != 1 {
		t.Errorf("relayed before the reload: %v", got)
	}
	if got := delivered(outHop, "after the reload"); got != nil {
		t.Errorf("relayed after the network was removed: %v", got)
	}
	if got := delivered(campusHop, "after the reload"); len(got) != 1 || got[0] != "bob@campus.test" {
		t.Errorf("local recipient after the reload: %v", got)
	}
	gw.WaitLog("reason=\"recipient domain is not local and client may not relay\"", 5*time.Second)
}
