package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
	"sekisho/internal/testslapd"
)

// equivCase is one transaction run twice: through a real SMTP session
// against `sekisho serve`, and through `sekisho explain` with the same
// configuration. want holds a prefix of the expected reply to each command
// explain lists (MAIL, each RCPT, end of DATA), so that every case also pins
// the outcome it stands for, not only the agreement of the two.
type equivCase struct {
	name   string
	ip     string // the client's address: the session dials from it
	helo   string
	from   string
	rcpts  []string
	header string // a header section; "" for no DATA stage
	want   []string
	setup  func(t *testing.T) // changes the world before both runs
	// dataTextDiffers: explain says "would be relayed (explain sends no
	// mail)" where the session says "OK: accepted by next hop" to an
	// accepted DATA (gateway/engine.go, dryRun); code and enhanced code
	// must still agree.
	dataTextDiffers bool
}

// TestExplainMatchesSession: for each check and outcome (the greet pause is
// connect-only: explain assumes a client that waits, so it has no case),
// the reply to every command — code, enhanced code and text — is the same
// whether the transaction comes through a live session or through `sekisho
// explain`: both drive the one transaction engine (gateway/engine.go), with
// the real lookups and the real call-ahead.
//
// explain asks the running gateway on its control socket, which explains
// on its own store (Redis here; the embedded file works the same since the
// control socket, TestControlExplainIsTheGatewaysAnswer); and its exit code
// agrees with the replies (explainCLI). Greylisting: explain makes no
// entry and the session does, so explain runs first, and each case has its
// own sender (its own triplet); the delay is an hour, so a triplet never
// passes within the test.
func TestExplainMatchesSession(t *testing.T) {
	// SPF passes for every loopback client, except strict.exsender.org's,
	// which allows only 203.0.113.0/24.
	w := newChecksWorld(t, "v=spf1 ip4:127.0.0.0/8 -all")
	slapd, hop, dir := w.slapd, w.hop, w.dir
	redis := testredis.Start(t)
	w.dns.AddZone("net.", 60)
	w.dns.Add(
		// Recipient domains of the trusted client's outbound relay.
		"nullmx.net. 60 IN MX 0 .",
		"deadroute.net. 60 IN MX 10 mx.deadroute.net.",
		"mx.deadroute.net. 60 IN A 127.0.0.1",
		"outside.net. 60 IN MX 10 mx.outside.net.",
		"mx.outside.net. 60 IN A 127.0.0.1",
	)
	bad := filepath.Join(dir, "baddomains.txt")
	if err := os.WriteFile(bad, []byte("# known bad\nbaddomain.net\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ext := harness.StartNextHop(t, false) // everything else, for the trusted client
	dead := testenv.FreePort(t)           // deadroute.net: nothing listens
	s := &w.site
	s.routes = append(s.routes,
		routeTo([]string{"deadroute.net"}, "smtp://"+dead),
		routeTo([]string{"*"}, "smtp://"+ext.Addr))
	// 127.0.0.64/26 is exempt from greylisting, so its transactions reach
	// SPF, the call-ahead and DATA.
	s.checks = "account: {}\n" +
		"dnsbl: {zones: [dnsbl.test]}\n" +
		fmt.Sprintf("domain: {nxdomain: tempfail, bad_domains: %q}\n", bad) +
		"greylist: {delay: 1h, exempt: [127.0.0.64/26]}\n" +
		"spf: {fail: reject}"
	s.extra += fmt.Sprintf("store: {redis: {addrs: [%q]}}\n", redis.Addr())
	cfg, cfgYAML := w.writeConfig(t)
	gw := harness.Start(t, cfgYAML)

	good := "From: Bob <bob@exsender.org>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nSubject: equivalence\r\n"
	cases := []equivCase{
		{name: "dnsbl listed", ip: "127.0.0.9", helo: "spam.exsender.org", from: "dnsbl@exsender.org",
			rcpts: []string{"alice@campus.test"}, want: []string{"250 2.1.0", "554 5.7.1"}},
		{name: "bad-domain sender", ip: "127.0.0.10", helo: "mx.baddomain.net", from: "x@baddomain.net",
			rcpts: []string{"alice@campus.test"}, want: []string{"550 5.1.8"}},
		{name: "NXDOMAIN sender", ip: "127.0.0.11", helo: "mx.exsender.org", from: "x@nosuch.exsender.org",
			rcpts: []string{"alice@campus.test"}, want: []string{"450 4.1.8"}},
		{name: "null MX recipient", ip: "127.0.0.1", helo: "mail.campus.test", from: "alice@campus.test",
			rcpts: []string{"friend@nullmx.net"}, want: []string{"250 2.1.0", "556 5.1.10"}},
		{name: "unknown user", ip: "127.0.0.12", helo: "mx.exsender.org", from: "unknown@exsender.org",
			rcpts: []string{"nosuchuser@campus.test"}, want: []string{"250 2.1.0", "550 5.1.1"}},
		{name: "greylist first contact", ip: "127.0.0.13", helo: "mx.exsender.org", from: "greylist@exsender.org",
			rcpts: []string{"carol@campus.test"}, want: []string{"250 2.1.0", "451 4.7.1"}},
		{name: "SPF fail", ip: "127.0.0.65", helo: "mx.exsender.org", from: "x@strict.exsender.org",
			rcpts: []string{"alice@campus.test"}, want: []string{"250 2.1.0", "550 5.7.23"}},
		{name: "relay denied", ip: "127.0.0.14", helo: "mx.exsender.org", from: "relay@exsender.org",
			rcpts: []string{"victim@outside.net"}, want: []string{"250 2.1.0", "554 5.7.1"}},
		{name: "address literal", ip: "127.0.0.1", helo: "mail.campus.test", from: "alice@campus.test",
			rcpts: []string{"u@[192.0.2.1]"}, want: []string{"250 2.1.0", "550 5.1.2"}},
		{name: "header violation", ip: "127.0.0.66", helo: "mx.exsender.org", from: "header@exsender.org",
			rcpts:  []string{"alice@campus.test"},
			header: "Subject: no From here\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n",
			want:   []string{"250 2.1.0", "250 2.1.5", "550 5.6.0"}},
		{name: "next hop down", ip: "127.0.0.1", helo: "mail.campus.test", from: "alice@campus.test",
			rcpts: []string{"friend@deadroute.net"}, want: []string{"250 2.1.0", "451 4.4.1"}},
		{name: "accepted", ip: "127.0.0.67", helo: "mx.exsender.org", from: "ok@exsender.org",
			rcpts: []string{"alice@campus.test", "bob@campus.test", "nosuchuser@campus.test"}, header: good,
			want:            []string{"250 2.1.0", "250 2.1.5", "250 2.1.5", "550 5.1.1", "250 2.0.0"},
			dataTextDiffers: true},
		// These two change the directory, so they come last.
		{name: "canary missing", ip: "127.0.0.15", helo: "mx.exsender.org", from: "canary@exsender.org",
			rcpts: []string{"nosuchuser@campus.test"}, want: []string{"250 2.1.0", "451 4.3.0"},
			setup: func(t *testing.T) {
				slapd.DeleteEntry(testslapd.PersonByUID("canary").DN())
				t.Cleanup(func() { slapd.AddPerson(testslapd.PersonByUID("canary")) })
			}},
		{name: "LDAP down", ip: "127.0.0.16", helo: "mx.exsender.org", from: "ldapdown@exsender.org",
			rcpts: []string{"alice@campus.test"}, want: []string{"250 2.1.0", "451 4.4.3"},
			setup: func(t *testing.T) { slapd.Stop() }},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			// explain first: it makes no greylist entry, the session does.
			ex := runExplainFor(t, dir, cfg, tc)
			ses := runSessionFor(t, gw, tc)
			if len(ex) != len(tc.want) || len(ses) != len(tc.want) {
				t.Fatalf("explain told %d replies, the session got %d, want %d\nexplain:\n%s\nsession:\n%s",
					len(ex), len(ses), len(tc.want), fmtReplies(ex), fmtReplies(ses))
			}
			for i := range tc.want {
				e, s := ex[i], ses[i]
				if e.command != s.command {
					t.Errorf("command %d: explain %q, session %q", i, e.command, s.command)
				}
				if !strings.HasPrefix(s.reply, tc.want[i]) {
					t.Errorf("%s: session got %q, want %q", s.command, s.reply, tc.want[i])
				}
				if i == len(tc.want)-1 && tc.dataTextDiffers && s.command == "end of DATA" {
					if codes(e.reply) != codes(s.reply) {
						t.Errorf("%s: explain %q, session %q: codes differ", s.command, e.reply, s.reply)
					}
					continue
				}
				if e.reply != s.reply {
					t.Errorf("%s: explain told %q, the session got %q", s.command, e.reply, s.reply)
				}
			}
		})
	}
	if n := len(hop.Messages()) + len(ext.Messages()); n != 1 {
		t.Errorf("next hops hold %d messages, want 1 (the accepted session's; explain sends none)", n)
	}
}

// cmdReply is a command and the reply to it, as "550 5.1.1 text".
type cmdReply struct{ command, reply string }

func fmtReplies(rs []cmdReply) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %-40s %s\n", r.command, r.reply)
	}
	return b.String()
}

var codesRE = regexp.MustCompile(`^\d{3}( \d\.\d{1,3}\.\d{1,3})?`)

func codes(reply string) string { return codesRE.FindString(reply) }

// explainReplyRE is a line of explain's "what the client would be told:"
// section: the command, padded, then the reply (cmd/sekisho/explain.go).
var explainReplyRE = regexp.MustCompile(`^  (.+?)\s+(\d{3} .*)$`)

// runExplainFor runs `sekisho explain` for the case and returns the replies
// of its summary section.
func runExplainFor(t *testing.T, dir, cfg string, tc equivCase) []cmdReply {
	t.Helper()
	args := []string{"explain", "-config", cfg, "-ip", tc.ip, "-helo", tc.helo, "-from", tc.from}
	for _, r := range tc.rcpts {
		args = append(args, "-rcpt", r)
	}
	if tc.header != "" {
		f := filepath.Join(t.TempDir(), "header.txt")
		if err := os.WriteFile(f, []byte(tc.header+"\r\nbody\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-header-file", f)
	}
	out, _ := explainCLI(t, dir, args[1:]...) // its exit code agrees with the replies
	t.Logf("sekisho %s\n%s", strings.Join(args, " "), out)
	_, summary, ok := strings.Cut(out, "\nwhat the client would be told:\n")
	if !ok {
		t.Fatalf("explain printed no summary:\n%s", out)
	}
	summary, _, _ = strings.Cut(summary, "\nverdict: ")
	var rs []cmdReply
	for _, line := range strings.Split(summary, "\n") {
		if line == "" {
			continue
		}
		m := explainReplyRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("explain summary line %q does not parse:\n%s", line, out)
		}
		rs = append(rs, cmdReply{m[1], m[2]})
	}
	return rs
}

// runSessionFor sends the case's transaction through a real session and
// returns the reply to each command explain would list: MAIL, each RCPT
// (unless MAIL was refused), and the end of DATA (when a header is given and
// a recipient was accepted). DATA's 354 is the session's own step and has no
// counterpart in explain.
func runSessionFor(t *testing.T, gw *harness.Gateway, tc equivCase) []cmdReply {
	t.Helper()
	c := harness.DialFrom(t, tc.ip, gw.SMTP)
	defer c.Close()
	c.Expect("EHLO "+tc.helo, "250")
	var rs []cmdReply
	add := func(cmd string, r harness.Reply) harness.Reply {
		if strings.Contains(r.Text, "\n") {
			t.Errorf("%s: multi-line reply %q", cmd, r)
		}
		rs = append(rs, cmdReply{cmd, r.String()})
		return r
	}
	mail := "MAIL FROM:<" + tc.from + ">"
	if add(mail, c.Cmd(mail)).Code != 250 {
		return rs
	}
	accepted := 0
	for _, rcpt := range tc.rcpts {
		cmd := "RCPT TO:<" + rcpt + ">"
		if add(cmd, c.Cmd(cmd)).Code == 250 {
			accepted++
		}
	}
	if tc.header != "" && accepted > 0 {
		c.Expect("DATA", "354")
		c.SendRaw(tc.header + "\r\nbody\r\n.\r\n")
		add("end of DATA", c.Read())
	}
	c.Cmd("QUIT")
	return rs
}
