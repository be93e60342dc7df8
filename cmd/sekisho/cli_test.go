package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHelpOfEveryCommand: `sekisho help CMD`, `CMD -h`, `CMD -help` and
// `CMD --help` print the command's help on stdout, the same text, and
// exit 0; the help names the command and lists its flags.
func TestHelpOfEveryCommand(t *testing.T) {
	for name := range commands {
		code, want, errs := runCmd("help", name)
		if code != 0 || errs != "" || !strings.HasPrefix(want, "usage: sekisho "+name) {
			t.Errorf("help %s: exit %d, stderr %q, stdout %q", name, code, errs, want)
			continue
		}
		for _, h := range []string{"-h", "-help", "--help"} {
			code, out, errs := runCmd(name, h)
			if code != 0 || errs != "" || out != want {
				t.Errorf("%s %s: exit %d, stderr %q, stdout differs from help %s:\n%s", name, h, code, errs, name, out)
			}
		}
	}
	// A flag of each command with flags is in its help.
	for name, flag := range map[string]string{"serve": "-config", "check-config": "-changed", "explain": "-rcpt",
		"baddomains": "-file", "dkim": "-selector", "report": "-weeks", "status": "-format",
		"autoconfig": "-dns"} {
		if _, out, _ := runCmd("help", name); !strings.Contains(out, "\n  "+flag+" ") && !strings.Contains(out, "\n  "+flag+"\n") {
			t.Errorf("help %s does not list %s:\n%s", name, flag, out)
		}
	}
	if code, out, _ := runCmd("help"); code != 0 || !strings.Contains(out, "sekisho status") || !strings.Contains(out, "sekisho help [COMMAND]") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	if code, _, errs := runCmd("help", "nosuch"); code != 2 || !strings.Contains(errs, `unknown command "nosuch"`) {
		t.Errorf("help nosuch: exit %d, %q", code, errs)
	}
}

// TestUsageErrorsExit2: an unknown flag, a missing or extra argument is a
// usage error: the message and the help on stderr, exit 2 — explain's 64,
// its 2 being a temporary refusal.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"serve", "-nosuch"},
		{"serve", "extra"},
		{"check-config", "-nosuch"},
		{"check-config", "extra"},
		{"check-config", "-changed", "-defaults"},
		{"baddomains"},
		{"baddomains", "frobnicate", "spam-x.net"},
		{"baddomains", "add"},
		{"baddomains", "list", "extra"},
		{"dkim"},
		{"dkim", "keygen", "-domain", "campus.test"},
		{"report", "-nosuch"},
		{"status", "-nosuch"},
		{"history", "-nosuch"},
		{"history", "extra"},
		{"history", "-outcome", "bounced"},
		{"history", "-client", "not-a-network"},
		{"history", "-since", "-1h"},
		{"history", "-format", "csv"},
		{"history", "-limit", "0"},
		{"status", "extra"},
		{"version", "extra"},
		{"version", "-nosuch"},
		{"autoconfig"},
		{"autoconfig", "-nosuch"},
		{"autoconfig", "-dns", "extra"},
	} {
		code, out, errs := runCmd(args...)
		if code != 2 || out != "" || !strings.Contains(errs, "usage: sekisho") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and the help on stderr", args, code, out, errs)
		}
	}
	for _, args := range [][]string{
		{"-nosuch"},
		{"-ip", "192.0.2.7"},
		{"-rcpt", "a@campus.test"},
		{"-ip", "not an address", "-rcpt", "a@campus.test"},
		{"-ip", "192.0.2.7", "-rcpt", "a@campus.test", "extra"},
		{"-ip", "192.0.2.7", "-rcpt", "a@campus.test", "-header-file", filepath.Join(t.TempDir(), "missing")},
		// A message that cannot be read, or given with -header-file: a
		// usage error, never 2 (explain's "deferred").
		{"-ip", "192.0.2.7", "-rcpt", "a@campus.test", "-message", filepath.Join(t.TempDir(), "missing")},
		{"-ip", "192.0.2.7", "-rcpt", "a@campus.test", "-message", "cli_test.go", "-header-file", "cli_test.go"},
	} {
		code, out, errs := runCmd(append([]string{"explain"}, args...)...)
		if code != 64 || out != "" || !strings.Contains(errs, "usage: sekisho explain") {
			t.Errorf("explain %q: exit %d, stdout %q, stderr %q; want 64 and the help on stderr", args, code, out, errs)
		}
	}
}

// TestFlagsAfterArguments: flags may follow the arguments (`sekisho
// baddomains add spam-x.net -file f`), and -- ends the flags.
func TestFlagsAfterArguments(t *testing.T) {
	f := filepath.Join(t.TempDir(), "baddomains.txt")
	if err := os.WriteFile(f, []byte("# ours\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCmd("baddomains", "add", "spam-x.net", "-file", f); code != 0 || !strings.Contains(out, "added spam-x.net to "+f) {
		t.Fatalf("baddomains add spam-x.net -file f: exit %d, %q %q", code, out, errs)
	}
	if code, out, _ := runCmd("baddomains", "test", "-file", f, "sub.spam-x.net"); code != 1 || !strings.Contains(out, "not bad") {
		t.Errorf("baddomains test -file f sub.spam-x.net: exit %d, %q", code, out)
	}
	if code, out, _ := runCmd("baddomains", "test", "spam-x.net", "-file", f); code != 0 || !strings.Contains(out, "spam-x.net is bad") {
		t.Errorf("baddomains test spam-x.net -file f: exit %d, %q", code, out)
	}
	if code, out, _ := runCmd("baddomains", "list", "-file="+f); code != 0 || out != "spam-x.net\n" {
		t.Errorf("baddomains list -file=f: exit %d, %q", code, out)
	}
	// After --, "-file" is an argument: one too many for test.
	if code, _, errs := runCmd("baddomains", "test", "-file", f, "--", "spam-x.net", "-file"); code != 2 || !strings.Contains(errs, "want 1 argument(s), got 2") {
		t.Errorf("baddomains test -- spam-x.net -file: exit %d, %q", code, errs)
	}
	b, _ := os.ReadFile(f)
	if string(b) != "# ours\nspam-x.net\n" {
		t.Errorf("the list: %q", b)
	}
	// check-config's flags in any order.
	if code, out, errs := runCmd("check-config", "-defaults"); code != 0 || !strings.Contains(out, "control:\n  socket: var/control.sock") {
		t.Errorf("check-config -defaults: exit %d, %q", code, errs)
	}
}

// TestExplainExitCodes: explain exits with its verdict, here on its own
// (no gateway answers on the configuration's control socket): 1 for a
// permanent refusal, 0 when the mail would be accepted; and it says who
// explained.
func TestExplainExitCodes(t *testing.T) {
	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail")
	cfg := filepath.Join(dir, "sekisho.yaml")
	body := "hostname: mx.campus.test\nlocal_domains: [campus.test]\n" +
		"routes:\n  - {domains: [campus.test], next_hops: [\"maildir:" + maildir + "\"]}\n" +
		"checks: {greylist: {off: true}, domain: {off: true}, spf: {off: true}, dnsbl: {off: true}}\n" +
		"store: {path: " + filepath.Join(dir, "state.db") + "}\n" +
		"control: {socket: " + filepath.Join(dir, "control.sock") + "}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rcpt  string
		code  int
		reply string
	}{
		{"alice@campus.test", 0, "250 "},
		{"someone@elsewhere.example", 1, "554 5.7.1"},
	} {
		code, out, errs := runCmd("explain", "-config", cfg, "-ip", "192.0.2.7", "-rcpt", c.rcpt, "-from", "bob@campus.test")
		if code != c.code || !strings.Contains(out, "RCPT TO:<"+c.rcpt+">") || !strings.Contains(out, c.reply) ||
			!strings.Contains(out, "(explained by this process (no gateway answers on "+filepath.Join(dir, "control.sock")+")") {
			t.Errorf("explain -rcpt %s: exit %d, want %d with %q\n%s%s", c.rcpt, code, c.code, c.reply, out, errs)
		}
	}
	if n, _ := os.ReadDir(filepath.Join(maildir, "new")); len(n) != 0 {
		t.Errorf("explain delivered: %v", n)
	}
}

// TestStatusWithoutGateway: status with no gateway answering says so and
// exits 1.
func TestStatusWithoutGateway(t *testing.T) {
	cfg, _ := writeReportConfig(t, "")
	code, out, errs := runCmd("status", "-config", cfg)
	if code != 1 || out != "" || !strings.Contains(errs, "no gateway answers on the control socket") {
		t.Errorf("status: exit %d, %q, %q", code, out, errs)
	}
}

// TestEveryCommandIsInTheUsage: the list `sekisho help` prints names every
// command.
func TestEveryCommandIsInTheUsage(t *testing.T) {
	_, out, _ := runCmd("help")
	var missing []string
	for name := range commands {
		if !strings.Contains(out, "sekisho "+name) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("sekisho help does not name %v", missing)
	}
}
