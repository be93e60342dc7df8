package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/report"
)

// TestReportCountsDecisions: the decisions of real sessions through the
// built binary are counted by cause, attempts and distinct triplets apart
// (a retry is one more attempt, not one more triplet), with the refused
// domain among the week's top domains; at SIGTERM the counts in memory reach
// the store, and `sekisho report -format json` reads them back.
func TestReportCountsDecisions(t *testing.T) {
	gw, hop := campus(t, func(s *site) { s.checks = "domain: {}" })

	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	for i := 0; i < 2; i++ { // a special-use sender domain, twice
		c.Expect("MAIL FROM:<x@spammer.test>", "550 5.1.8")
	}
	c.Expect("MAIL FROM:<bob@campus.test>", "250 2.1.0")
	for i := 0; i < 3; i++ { // the same refused recipient, three times
		c.Expect("RCPT TO:<victim@example.net>", "554 5.7.1")
	}
	c.Expect("RCPT TO:<alice@campus.test>", "250 2.1.5")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("counted") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	c.Expect("QUIT", "221")
	if n := len(hop.Messages()); n != 1 {
		t.Fatalf("next hop holds %d messages", n)
	}

	gw.Signal(syscall.SIGTERM)
	if err := gw.Wait(30 * time.Second); err != nil {
		t.Fatalf("sekisho did not stop: %v", err)
	}
	today := time.Now().UTC().Format("2006-01-02")
	cmd := exec.Command(harness.Binary(t), "report", "-config", "sekisho.yaml", "-from", today, "-to", today, "-format", "json")
	cmd.Dir = gw.Dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sekisho report: %v\n%s", err, out)
	}
	var rep struct {
		Rows []struct {
			Cause              string
			Attempts, Distinct int64
			Listeners          map[string]int64
		}
		TopDomains []struct {
			Cause, Domain     string
			Attempts, Senders int64
			Listed            bool
		} `json:"top_domains"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, out)
	}
	got := map[string][2]int64{}
	for _, r := range rep.Rows {
		got[r.Cause] = [2]int64{r.Attempts, r.Distinct}
	}
	want := map[string][2]int64{"accepted": {1, 1}, "relay_denied": {3, 1}, "bad_domain": {2, 1}, "greylist": {0, 0}}
	for cause, w := range want {
		if got[cause] != w {
			t.Errorf("%s: attempts/distinct %v, want %v\n%s", cause, got[cause], w, out)
		}
	}
	found := false
	for _, d := range rep.TopDomains {
		if d.Cause == "bad_domain" && d.Domain == "spammer.test" {
			found = d.Attempts == 2 && d.Senders == 1 && d.Listed
		}
	}
	if !found {
		t.Errorf("spammer.test is not the week's bad_domain with 2 attempts, 1 sender, listed:\n%s", out)
	}
	for _, r := range rep.Rows {
		if r.Cause == "relay_denied" && r.Listeners["smtp"] != 3 {
			t.Errorf("relay_denied per listener: %v, want smtp: 3", r.Listeners)
		}
	}
}

// TestReportWhileServing: the running gateway holds the embedded store
// (bbolt locks it), so `sekisho report` asks the gateway's http listener for
// the counts instead, and prints the same report.
func TestReportWhileServing(t *testing.T) {
	httpAddr := testenv.FreePort(t)
	gw, _ := campus(t, func(s *site) {
		s.http = httpAddr
		s.extra += "report: {flush_interval: 100ms}\n"
	})
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@campus.test>", "250 2.1.0")
	for i := 0; i < 4; i++ {
		c.Expect("RCPT TO:<victim@example.net>", "554 5.7.1")
	}
	c.Expect("QUIT", "221")

	today := time.Now().UTC().Format("2006-01-02")
	deadline := time.Now().Add(20 * time.Second)
	for {
		cmd := exec.Command(harness.Binary(t), "report", "-config", "sekisho.yaml", "-from", today, "-to", today, "-format", "csv")
		cmd.Dir = gw.Dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sekisho report while serving: %v\n%s", err, out)
		}
		if strings.Contains(string(out), ",relay_denied,4,1") {
			break // counted, flushed, and read through the gateway
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counts never showed:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond) // the counter flushes every 100 ms
	}

	// Without -from and -to: nine complete weeks and this week, whose
	// refusals are there, so far (issue 17); the /report page says so too.
	cmd := exec.Command(harness.Binary(t), "report", "-config", "sekisho.yaml", "-format", "csv")
	cmd.Dir = gw.Dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), ",relay_denied,4,1,yes\n") || strings.Count(string(out), ",yes\n") != len(report.Causes) {
		t.Errorf("sekisho report (default weeks) while serving: %v\n%s", err, out)
	}
	resp, err := http.Get("http://" + httpAddr + "/report")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<span class="so-far">so far</span>`) {
		t.Errorf("/report: %s, no week so far:\n%s", resp.Status, page)
	}
}
