package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/config"
	"sekisho/greylist"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
	"sekisho/report"
)

// fillCounts records a week of traffic (2026-W45) into store.
func fillCounts(t *testing.T, store greylist.Counts) {
	t.Helper()
	c := report.NewCounter(store, report.CounterOptions{FlushInterval: -1, SweepInterval: -1, Keep: 100 * 365 * 24 * time.Hour})
	client := netip.MustParseAddr("192.0.2.10")
	mon := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 4; i++ { // one triplet, retried over four days
		c.Record(report.Event{Time: mon.Add(time.Duration(i) * 24 * time.Hour), Cause: report.Greylist, Listener: "smtp",
			Client: client, Sender: "bob@example.net", Recipient: "alice@campus.example"})
	}
	for i, d := range []string{"mailtypo.net", "mailtypo.net", "listed.net"} {
		c.Record(report.Event{Time: mon, Cause: report.NXDomain, Listener: "smtp", Client: client,
			Sender: fmt.Sprintf("s%d@%s", i, d), Recipient: "alice@campus.example", Domain: d})
	}
	// W47, the week of testenv.NewClock (Sunday 2026-11-22 10:00): an LDAP
	// outage on the Saturday, twice the same triplet.
	for i := 0; i < 2; i++ {
		c.Record(report.Event{Time: time.Date(2026, 11, 21, 9, i, 0, 0, time.UTC), Cause: report.LDAPTempfail, Listener: "smtp",
			Client: client, Sender: "bob@example.net", Recipient: "alice@campus.example"})
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func writeReportConfig(t *testing.T, store string) (config, badFile string) {
	t.Helper()
	dir := t.TempDir()
	badFile = filepath.Join(dir, "baddomains.txt")
	if err := os.WriteFile(badFile, []byte("# test\nlisted.net\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "sekisho.yaml")
	// A control socket of its own: no gateway of this host answers there.
	body := store + "checks:\n  domain:\n    bad_domains: " + badFile + "\ncontrol: {socket: " + filepath.Join(dir, "control.sock") + "}\n"
	if !strings.Contains(body, "hostname:") {
		body = "hostname: mx\n" + body + localSite
	}
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return config, badFile
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func boltWithCounts(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := greylist.OpenBolt(path, greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	fillCounts(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReportCommandEmbeddedJSONAndText(t *testing.T) {
	path := boltWithCounts(t)
	config, badFile := writeReportConfig(t, "store:\n  path: "+path+"\n")

	code, out, errs := runCmd("report", "-config", config, "-from", "2026-11-03", "-to", "2026-11-10", "-format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var j report.JSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Widened to whole weeks: W45 and W46.
	if j.From != "2026-11-02" || j.To != "2026-11-15" || len(j.Rows) != 2*len(report.Causes) {
		t.Fatalf("from %s to %s, %d rows", j.From, j.To, len(j.Rows))
	}
	got := map[string][2]int64{}
	for _, r := range j.Rows {
		got[r.Week+"/"+r.Cause] = [2]int64{r.Attempts, r.Distinct}
	}
	if got["2026-W45/greylist"] != [2]int64{4, 1} || got["2026-W45/nxdomain"] != [2]int64{3, 3} || got["2026-W46/greylist"] != [2]int64{0, 0} {
		t.Errorf("rows: %v", got)
	}

	code, out, errs = runCmd("report", "-config", config, "-from", "2026-11-02", "-to", "2026-11-08")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if want := "sekisho baddomains -file " + badFile + " add mailtypo.net\n"; !strings.Contains(out, want) {
		t.Errorf("text lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, "add listed.net") {
		t.Errorf("an add line for a listed domain:\n%s", out)
	}
}

func TestReportCommandDefaultWeeks(t *testing.T) {
	path := boltWithCounts(t)
	config, _ := writeReportConfig(t, "store:\n  path: "+path+"\n")
	defer func(f func() time.Time) { reportNow = f }(reportNow)
	reportNow = testenv.NewClock().Now // Sunday 2026-11-22: W47 is not complete
	code, out, errs := runCmd("report", "-config", config, "-format", "csv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Nine complete weeks, then the week in progress.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+10*len(report.Causes) || !strings.HasPrefix(lines[1], "2026-W38,") || !strings.HasPrefix(lines[len(lines)-1], "2026-W47,") {
		t.Errorf("csv: %d lines, first %q, last %q", len(lines), lines[1], lines[len(lines)-1])
	}
	for _, want := range []string{"2026-W45,2026-11-02,2026-11-08,greylist,4,1,no\n", "2026-W47,2026-11-16,2026-11-22,ldap_tempfail,2,1,yes\n",
		"2026-W46,2026-11-09,2026-11-15,ldap_tempfail,0,0,no\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("csv lacks %q:\n%s", want, out)
		}
	}
	// The text: the week so far first, headed so, with no change column.
	code, out, errs = runCmd("report", "-config", config)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	head := "\n== 2026-W47 (2026-11-16 to 2026-11-22), so far (until 2026-11-22 10:00 UTC) ==\n"
	if i, j := strings.Index(out, head), strings.Index(out, "== 2026-W46 (2026-11-09 to 2026-11-15) =="); i < 0 || j < i {
		t.Errorf("text lacks the week so far on top (%q):\n%s", head, out)
	}
	if !regexpLine(out, "ldap_tempfail", "2", "1") {
		t.Errorf("text lacks the week so far's ldap_tempfail line (2 attempts, 1 distinct, no change):\n%s", out)
	}
	// JSON: each row says whether its week is the one so far.
	code, out, errs = runCmd("report", "-config", config, "-format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var j report.JSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	soFar := map[string]bool{}
	for _, r := range j.Rows {
		soFar[r.Week] = r.SoFar
		if r.Week == "2026-W47" && r.Cause == report.LDAPTempfail && (r.Attempts != 2 || !r.SoFar) {
			t.Errorf("JSON row %+v, want 2 attempts so far", r)
		}
	}
	if !soFar["2026-W47"] || soFar["2026-W46"] || j.Generated != "2026-11-22T10:00:00Z" {
		t.Errorf("JSON so_far by week %v, generated %q", soFar, j.Generated)
	}
}

// regexpLine reports whether text has a line of exactly these fields.
func regexpLine(text string, fields ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.Join(strings.Fields(l), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestReportCommandRedis(t *testing.T) {
	srv := testredis.Start(t)
	s := greylist.NewRedisStore(&redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	defer s.Close()
	fillCounts(t, s)
	config, _ := writeReportConfig(t, "store:\n  redis:\n    addrs: ["+srv.Addr()+"]\n")
	code, out, errs := runCmd("report", "-config", config, "-from", "2026-11-02", "-to", "2026-11-08", "-format", "csv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "2026-W45,2026-11-02,2026-11-08,greylist,4,1,no\n") {
		t.Errorf("csv lacks W45 greylist:\n%s", out)
	}

	srv.Stop()
	code, out, errs = runCmd("report", "-config", config, "-format", "json")
	if code != 1 || out != "" || !strings.Contains(errs, "the state store cannot be read, no report made") {
		t.Errorf("store down: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestReportCommandUnreadableStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing.db")
	config, _ := writeReportConfig(t, "store:\n  path: "+missing+"\n")
	code, out, errs := runCmd("report", "-config", config)
	if code != 1 || out != "" || !strings.Contains(errs, "does not exist") {
		t.Errorf("missing file: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("report created the store file")
	}

	// The file held by a running gateway.
	path := boltWithCounts(t)
	held, err := greylist.OpenBolt(path, greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	config, _ = writeReportConfig(t, "store:\n  path: "+path+"\n")
	code, out, errs = runCmd("report", "-config", config)
	if code != 1 || out != "" || !strings.Contains(errs, "cannot be read while sekisho serve runs on it") {
		t.Errorf("locked file: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestReportCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-format", "xml"},
		{"-from", "2026-11-02"},
		{"-from", "2026-11-09", "-to", "2026-11-02"},
		{"-from", "2 Nov", "-to", "2026-11-02"},
		{"-weeks", "0"},
		{"extra"},
	} {
		code, _, errs := runCmd(append([]string{"report"}, args...)...)
		if code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, code, errs)
		}
	}
}

func TestNewCounterCountsByConfiguredNetworks(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("hostname: mx\nchecks:\n  greylist:\n    ipv4_prefix: 32\n"+localSite))
	if err != nil {
		t.Fatal(err)
	}
	s, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newCounter(&cfg, s, slog.New(slog.DiscardHandler))
	mon := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	for _, ip := range []string{"192.0.2.1", "192.0.2.2"} { // one /24, two /32
		c.Record(report.Event{Time: mon, Cause: report.Greylist, Listener: "smtp", Client: netip.MustParseAddr(ip),
			Sender: "bob@example.net", Recipient: "alice@campus.example"})
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	w, err := s.ReadCounts(context.Background(), "2026-W45", 10)
	if err != nil || w.Causes[report.Greylist].Distinct != 2 {
		t.Errorf("distinct with ipv4_prefix 32 = %+v, %v; want 2", w.Causes[report.Greylist], err)
	}
}
