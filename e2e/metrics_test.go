package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

// scrape fetches /metrics and parses it.
func scrape(t *testing.T, httpAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mfs
}

// series returns a family's samples as "label=value,…" → value, labels
// sorted by name (counters, gauges and untyped).
func series(mfs map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	mf := mfs[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Untyped != nil:
			v = m.Untyped.GetValue()
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}

// readyz returns /readyz's status code and body.
func readyz(t *testing.T, httpAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pollUntil polls cond (an outside process's state, which sends no
// signal) every 50 ms until it holds or timeout passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, got := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, timeout, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsExposition: after mail with known outcomes, /metrics has
// exactly those decisions with their labels, the lookup histograms of DNS,
// LDAP, the dependencies' health, the connections by state, the alarm, the
// DNSBL counters and the Go and process collectors.
func TestMetricsExposition(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	httpAddr := testenv.FreePort(t)
	s := ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)
	s.http = httpAddr
	s.checks += "\ndnsbl: {zones: [dnsbl.test]}"
	s.extra += fmt.Sprintf("dns: {resolvers: [%q], timeout: 200ms, attempts: 1}\nhealth: {interval: 200ms}\n", testenv.FreePort(t))
	s.limits = "max_errors: 3"
	gw := harness.Start(t, s.yaml(t))

	// The error limit: three unknown commands, then 421 and the end.
	e := harness.DialFrom(t, "127.0.0.31", gw.SMTP)
	for _, cmd := range []string{"XA", "XB", "XC"} {
		e.Expect(cmd, "500 5.5.2")
	}
	if r := e.Read(); !strings.HasPrefix(r.String(), "421 4.7.0") || !e.Closed(10*time.Second) {
		t.Fatalf("after 3 errors: %v\n%s", r, e.Transcript())
	}

	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("metrics") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatal(r)
	}
	c.Expect("QUIT", "221")

	open := harness.DialFrom(t, outside, gw.SMTP) // stays open: one session
	open.Expect("EHLO client.example.org", "250")
	open.Expect("MAIL FROM:<bob@example.org>", "250")
	open.Expect("RCPT TO:<victim@example.com>", "554 5.7.1")

	var mfs map[string]*dto.MetricFamily
	pollUntil(t, 10*time.Second, "every dependency probed, one session open", func() (bool, string) {
		mfs = scrape(t, httpAddr)
		up, conns := series(mfs, "sekisho_up"), series(mfs, "sekisho_connections")
		_, ldap := up["dependency=ldap_canary"]
		return ldap && conns["state=session"] == 1, fmt.Sprint(up, conns)
	})

	wantDecisions := map[string]float64{
		"check=,listener=smtp,outcome=accepted,stage=mail":        2,
		"check=,listener=smtp,outcome=accepted,stage=rcpt":        1,
		"check=account,listener=smtp,outcome=rejected,stage=rcpt": 1,
		"check=relay,listener=smtp,outcome=rejected,stage=rcpt":   1,
		"check=,listener=smtp,outcome=accepted,stage=data":        1,
		// The error limit's disconnection, with its listener (docs/metrics.md).
		"check=error_limit,listener=smtp,outcome=disconnected,stage=session": 1,
	}
	if got := series(mfs, "sekisho_decisions_total"); fmt.Sprint(got) != fmt.Sprint(wantDecisions) {
		t.Errorf("sekisho_decisions_total:\n got %v\nwant %v", got, wantDecisions)
	}
	// The state store is up too when something opened it (the report
	// counter does, greylisting being off here).
	wantUp := map[string]float64{"dependency=dns_canary": 1, "dependency=ldap_canary": 1, "dependency=next_hop": 1}
	gotUp := series(mfs, "sekisho_up")
	if v, ok := gotUp["dependency=store"]; ok {
		if v != 1 {
			t.Errorf("sekisho_up{dependency=store} %v", v)
		}
		delete(gotUp, "dependency=store")
	}
	if fmt.Sprint(gotUp) != fmt.Sprint(wantUp) {
		t.Errorf("sekisho_up: got %v, want %v", gotUp, wantUp)
	}
	if got := series(mfs, "sekisho_next_hop_up"); got["route=campus.test"] != 1 || len(got) != 1 {
		t.Errorf("sekisho_next_hop_up: %v, want route=campus.test 1", got)
	}
	if got := series(mfs, "sekisho_connections"); got["state=greet_pause"] != 0 || got["state=session"] != 1 {
		t.Errorf("sekisho_connections: %v", got)
	}
	if got := series(mfs, "sekisho_alarm"); len(got) != 1 || got["kind=tempfail"] != 0 {
		t.Errorf("sekisho_alarm: %v", got)
	}
	if got := series(mfs, "sekisho_ready"); got[""] != 1 {
		t.Errorf("sekisho_ready: %v", got)
	}
	// The resolver's port is closed: the list could not tell (for the
	// first session, whose RCPT reached the check), and mail flowed.
	if got := series(mfs, "sekisho_dnsbl_answers_total"); got["answer=could_not_tell,zone=dnsbl.test"] < 1 || len(got) != 4 {
		t.Errorf("sekisho_dnsbl_answers_total: %v", got)
	}
	if got := series(mfs, "sekisho_relay_tls_total"); len(got) != 6 || got["outcome=encrypted"] != 0 {
		t.Errorf("sekisho_relay_tls_total: %v", got)
	}
	if got := series(mfs, "sekisho_relay_connection_cache_total"); len(got) != 2 || got["outcome=dead"] != 0 {
		t.Errorf("sekisho_relay_connection_cache_total: %v", got)
	}

	// The lookup histograms: DNS could not tell (closed port), LDAP found
	// alice and not nosuchuser.
	h := mfs["sekisho_lookup_duration_seconds"]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("sekisho_lookup_duration_seconds is not a histogram: %v", h)
	}
	seen := map[string]uint64{}
	for _, m := range h.Metric {
		var kind, outcome string
		for _, l := range m.Label {
			switch l.GetName() {
			case "kind":
				kind = l.GetValue()
			case "outcome":
				outcome = l.GetValue()
			default:
				t.Errorf("unexpected label %s", l.GetName())
			}
		}
		seen[kind+"/"+outcome] = m.Histogram.GetSampleCount()
	}
	for _, want := range []string{"dns/could_not_tell", "ldap/found", "ldap/not_found"} {
		if seen[want] < 1 {
			t.Errorf("no lookup observed as %s: %v", want, seen)
		}
	}

	if got := series(mfs, "sekisho_report_dropped_total"); len(got) != 1 || got[""] != 0 {
		t.Errorf("sekisho_report_dropped_total: %v, want 0", got)
	}
	for _, fam := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_open_fds"} {
		if mfs[fam] == nil {
			t.Errorf("/metrics lacks %s (Go and process collectors)", fam)
		}
	}
	open.Expect("QUIT", "221")
}

// TestReadyzDuringDrain: /readyz is 200, then 503 ("draining") from SIGTERM
// until the message in flight is done, and /healthz stays 200 meanwhile.
func TestReadyzDuringDrain(t *testing.T) {
	httpAddr := testenv.FreePort(t)
	gw, hop := campus(t, func(s *site) { s.http = httpAddr })
	if code, body := readyz(t, httpAddr); code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz before: %d %s", code, body)
	}
	inFlight := dataSession(t, gw, "alice@campus.test")
	inFlight.SendRaw(hdr("in flight") + "first half\r\n")
	gw.Signal(syscall.SIGTERM)
	gw.WaitLog("shutting down", 10*time.Second)

	code, body := readyz(t, httpAddr)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q, want 503 draining", code, body)
	}
	if !strings.Contains(get(t, "http://"+httpAddr+"/healthz"), "ok") {
		t.Error("/healthz while draining")
	}
	if got := series(scrape(t, httpAddr), "sekisho_ready"); got[""] != 0 {
		t.Errorf("sekisho_ready while draining: %v", got)
	}
	inFlight.SendRaw("second half\r\n.\r\n")
	if r := inFlight.Read(); r.Code != 250 {
		t.Fatalf("message in flight: %v", r)
	}
	if err := gw.Wait(15 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop has %d messages", n)
	}
	if _, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
		t.Error("the http listener still answers after the process exited")
	}
}

// TestReadyzRequiredDependencyDown: with health.required [ldap_canary],
// stopping slapd turns /readyz to 503 naming the directory, sekisho_up to
// 0; restarting it turns both back.
func TestReadyzRequiredDependencyDown(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	httpAddr := testenv.FreePort(t)
	s := ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)
	s.http = httpAddr
	s.extra += "health: {required: [ldap_canary], interval: 200ms}\n"
	harness.Start(t, s.yaml(t))

	status := func(want int, substr string) func() (bool, string) {
		return func() (bool, string) {
			code, body := readyz(t, httpAddr)
			return code == want && strings.Contains(body, substr), fmt.Sprintf("%d %s", code, body)
		}
	}
	pollUntil(t, 10*time.Second, "/readyz 200", status(200, "ready: ldap_canary up"))
	slapd.Stop()
	pollUntil(t, 10*time.Second, "/readyz 503 with slapd stopped", status(503, "ldap_canary down"))
	if got := series(scrape(t, httpAddr), "sekisho_up"); got["dependency=ldap_canary"] != 0 {
		t.Errorf("sekisho_up with slapd stopped: %v", got)
	}
	slapd.Restart()
	pollUntil(t, 15*time.Second, "/readyz 200 with slapd back", status(200, "ready"))
	if got := series(scrape(t, httpAddr), "sekisho_up"); got["dependency=ldap_canary"] != 1 {
		t.Errorf("sekisho_up with slapd back: %v", got)
	}
}

// TestTempfailAlarm: with slapd stopped, recipients are deferred
// (ldap_tempfail); past alarm.min_events and alarm.tempfail_ratio one ERROR
// line starts the episode and sekisho_alarm is 1; with slapd back and the
// deferrals out of the window, one INFO line ends it and sekisho_alarm is 0.
func TestTempfailAlarm(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	httpAddr := testenv.FreePort(t)
	s := ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)
	s.http = httpAddr
	s.extra += "alarm: {window: 3s, min_events: 3, tempfail_ratio: 0.5, mail_to: alarms@campus.test}\n"
	gw := harness.Start(t, s.yaml(t))
	const fired, over = "alarm: infrastructure deferrals above threshold", "alarm over: infrastructure deferrals back under threshold"

	c := rcptSession(t, gw)
	c.Expect("RCPT TO:<alice@campus.test>", "250") // the pool is warm
	slapd.Stop()
	c.Expect("RCPT TO:<carol@campus.test>", "451 4.4.3")
	c.Expect("RCPT TO:<bob@campus.test>", "451 4.4.3")
	if strings.Contains(gw.Log(), fired) {
		t.Fatal("alarm fired below min_events")
	}
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "451 4.4.3")
	line := gw.WaitLog(fired, 5*time.Second)
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "ldap_tempfail:3") {
		t.Errorf("alarm line: %s", line)
	}
	if got := series(scrape(t, httpAddr), "sekisho_alarm"); got["kind=tempfail"] != 1 {
		t.Errorf("sekisho_alarm during the episode: %v", got)
	}
	gw.WaitLog("alarm mail sent", 10*time.Second)
	slapd.Restart()
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	line = gw.WaitLog(over, 15*time.Second)
	if !strings.Contains(line, "level=INFO") {
		t.Errorf("end line: %s", line)
	}
	if got := series(scrape(t, httpAddr), "sekisho_alarm"); got["kind=tempfail"] != 0 {
		t.Errorf("sekisho_alarm after the episode: %v", got)
	}
	errorLines := 0
	for _, l := range strings.Split(gw.Log(), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, fired) {
			errorLines++
		}
	}
	if errorLines != 1 {
		t.Errorf("%d ERROR lines for one episode", errorLines)
	}
	// Both notices reached alarm.mail_to through the route's next hop, from
	// the null sender.
	pollUntil(t, 10*time.Second, "two alarm mails at the next hop", func() (bool, string) {
		var subjects []string
		for _, m := range hop.Messages() {
			if len(m.To) == 1 && m.To[0] == "alarms@campus.test" && m.From == "" {
				subjects = append(subjects, string(m.Data))
			}
		}
		return len(subjects) == 2 && strings.Contains(subjects[0], "Subject: sekisho alarm: infrastructure") &&
			strings.Contains(subjects[1], "Subject: sekisho alarm over"), strings.Join(subjects, "\n---\n")
	})
	c.Expect("QUIT", "221")
}
