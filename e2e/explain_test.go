package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testslapd"
)

// checksWorld is the world in which explain is compared with what a
// client is told: every check can be on, over a real slapd and the test DNS
// server, and campus.test is delivered to a next hop. The DNS knows
// campus.test, the sender domain exsender.org (MX mx.exsender.org,
// 192.0.2.25; its SPF record is the test's) and strict.exsender.org (SPF:
// 203.0.113.0/24 only), and lists 127.0.0.9 in dnsbl.test. A test adds its
// zones, routes, checks and store, then writes the configuration.
type checksWorld struct {
	slapd *testslapd.Server
	dns   *testdns.Server
	hop   *harness.NextHop // campus.test's
	site  site             // ldapSite towards hop, resolving through dns
	dir   string           // the configuration's directory
}

func newChecksWorld(t *testing.T, exsenderSPF string) *checksWorld {
	t.Helper()
	w := &checksWorld{slapd: testslapd.Start(t), dns: testdns.Start(t), hop: harness.StartNextHop(t, false), dir: t.TempDir()}
	w.dns.AddZone("campus.test.", 60)
	w.dns.AddZone("exsender.org.", 60)
	w.dns.AddZone("dnsbl.test.", 60)
	w.dns.Add(
		"campus.test. 60 IN MX 10 mx.campus.test.",
		"mx.campus.test. 60 IN A 127.0.0.1",
		"exsender.org. 60 IN MX 10 mx.exsender.org.",
		"mx.exsender.org. 60 IN A 192.0.2.25",
		fmt.Sprintf("exsender.org. 60 IN TXT %q", exsenderSPF),
		"strict.exsender.org. 60 IN MX 10 mx.exsender.org.",
		`strict.exsender.org. 60 IN TXT "v=spf1 ip4:203.0.113.0/24 -all"`,
		"9.0.0.127.dnsbl.test. 60 IN A 127.0.0.2",
		`9.0.0.127.dnsbl.test. 60 IN TXT "listed: see https://dnsbl.test/9"`,
	)
	// No positive cache: `sekisho explain` runs in a process of its own
	// and cannot see the gateway's, so with slapd stopped a session could
	// accept a recipient found a moment before where explain defers
	// (docs/checks-account.md).
	w.site = withoutLDAPCache(ldapSite(t, w.slapd.URL(), "smtp://"+w.hop.Addr))
	w.site.extra += fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 1, canary: campus.test}\n", w.dns.Addr())
	return w
}

// writeConfig writes the site's configuration as sekisho.yaml in the
// world's directory and returns its path and its text.
func (w *checksWorld) writeConfig(t *testing.T) (path, yaml string) {
	t.Helper()
	yaml = w.site.yaml(t)
	path = filepath.Join(w.dir, "sekisho.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, yaml
}

// explainWorld is a checksWorld with every check on, and a sekisho explain
// runner for it.
type explainWorld struct {
	t      *testing.T
	config string
	dir    string
}

func newExplainWorld(t *testing.T) *explainWorld {
	t.Helper()
	w := newChecksWorld(t, "v=spf1 ip4:192.0.2.0/24 -all")
	w.dns.AddZone("2.0.192.in-addr.arpa.", 60)
	w.dns.AddZone("100.51.198.in-addr.arpa.", 60)
	// A sender domain without SPF: its mail from anywhere reaches
	// greylisting (SPF runs first, and refuses exsender.org's from outside
	// 192.0.2.0/24).
	w.dns.Add("open.exsender.org. 60 IN MX 10 mx.exsender.org.")
	// explain makes the call-ahead (MAIL and RCPT) for real, then abandons
	// it: the next hop is up, and must never receive a message.
	t.Cleanup(func() {
		if n := len(w.hop.Messages()); n != 0 {
			t.Errorf("explain sent %d messages to the next hop, want 0", n)
		}
	})
	w.site.checks = "account: {}\n" +
		"dnsbl: {zones: [dnsbl.test]}\n" +
		"domain: {nxdomain: tempfail}\n" +
		"greylist: {delay: 1s, exempt: [192.0.2.0/24]}\n" +
		"spf: {fail: reject}"
	w.site.greet = "5s"
	w.site.extra += fmt.Sprintf("store: {path: %q}\n", filepath.Join(w.dir, "state.db"))
	cfg, _ := w.writeConfig(t)
	return &explainWorld{t: t, config: cfg, dir: w.dir}
}

func (w *explainWorld) explain(args ...string) string {
	w.t.Helper()
	out, _ := explainCLI(w.t, w.dir, append([]string{"-config", w.config}, args...)...)
	return out
}

// tell is an expected line of the summary "what the client would be told":
// the command, then the reply.
type tellLine struct{ command, reply string }

func tell(command, reply string) tellLine { return tellLine{command, reply} }

func mustContain(t *testing.T, out string, wants ...any) {
	t.Helper()
	for _, want := range wants {
		switch w := want.(type) {
		case string:
			if !strings.Contains(out, w) {
				t.Errorf("explain output lacks %q:\n%s", w, out)
			}
		case tellLine:
			found := false
			for _, line := range strings.Split(out, "\n") {
				f := strings.TrimSpace(line)
				if strings.HasPrefix(f, w.command) && strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(f, w.command)), w.reply) {
					found = true
				}
			}
			if !found {
				t.Errorf("explain output does not tell %s %q:\n%s", w.command, w.reply, out)
			}
		}
	}
}

// TestExplainEachCheck: `sekisho explain` shows, for a case of each check,
// the check's outcome, the lookups it made and the reply a client would get.
func TestExplainEachCheck(t *testing.T) {
	w := newExplainWorld(t)

	t.Run("greet_pause and dnsbl", func(t *testing.T) {
		out := w.explain("-ip", "127.0.0.9", "-helo", "spam.exsender.org", "-from", "x@exsender.org", "-rcpt", "alice@campus.test")
		mustContain(t, out,
			"the banner would be held 5s",
			"dns     9.0.0.127.dnsbl.test A → found: 127.0.0.2",
			"dnsbl          reject",
			tell("RCPT TO:<alice@campus.test>", "554 5.7.1"))
	})
	t.Run("domain", func(t *testing.T) {
		out := w.explain("-ip", "192.0.2.25", "-helo", "mx.exsender.org", "-from", "x@nosuch.exsender.org", "-rcpt", "alice@campus.test")
		mustContain(t, out,
			"nosuch.exsender.org MX → NXDOMAIN",
			tell("MAIL FROM:<x@nosuch.exsender.org>", "450 4.1.8"))
	})
	t.Run("account", func(t *testing.T) {
		out := w.explain("-ip", "192.0.2.25", "-helo", "mx.exsender.org", "-from", "x@exsender.org", "-rcpt", "nosuchuser@campus.test")
		mustContain(t, out,
			"ldap    account nosuchuser@campus.test (with canary canary@campus.test) → not found",
			tell("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1"))
	})
	t.Run("greylist creates no entry", func(t *testing.T) {
		args := []string{"-ip", "198.51.100.7", "-helo", "mx.exsender.org", "-from", "x@open.exsender.org", "-rcpt", "alice@campus.test"}
		first := w.explain(args...)
		mustContain(t, first, "greylist       defer", "451 4.7.1")
		// Had explain made an entry, the same triplet would pass once the
		// 1 s delay is over. It is still new.
		time.Sleep(1500 * time.Millisecond)
		mustContain(t, w.explain(args...), "greylist       defer", tell("RCPT TO:<alice@campus.test>", "451 4.7.1"))
	})
	t.Run("spf", func(t *testing.T) {
		// SPF runs before greylisting: a fail is refused at the first
		// attempt, whatever greylisting would say.
		out := w.explain("-ip", "192.0.2.99", "-helo", "mx.exsender.org", "-from", "x@strict.exsender.org", "-rcpt", "alice@campus.test")
		mustContain(t, out,
			"strict.exsender.org TXT → found",
			"spf            reject",
			tell("RCPT TO:<alice@campus.test>", "550 5.7.23"))
	})
	t.Run("header", func(t *testing.T) {
		hdrFile := filepath.Join(w.dir, "header.txt")
		os.WriteFile(hdrFile, []byte("Subject: no From here\nDate: Sun, 22 Nov 2026 10:00:00 +0000\n\nbody\n"), 0o600)
		out := w.explain("-ip", "192.0.2.25", "-helo", "mx.exsender.org", "-from", "x@exsender.org", "-rcpt", "alice@campus.test", "-header-file", hdrFile)
		mustContain(t, out, "spf            pass", "header         reject", tell("end of DATA", "550 5.6.0"))
	})
}
