package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"sekisho/config"
	"sekisho/internal/testenv"
	"sekisho/report"
)

func newTestAlarm(t *testing.T) (*tempfailAlarm, *testenv.Clock, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	clock := testenv.NewClock()
	a := newTempfailAlarm(config.AlarmConfig{TempfailRatio: 0.2, Window: 10 * time.Minute, MinEvents: 20}, log, clock.Now)
	return a, clock, &buf
}

func record(a *tempfailAlarm, cause string, n int) {
	for range n {
		a.Record(report.Event{Cause: cause, Recipient: "alice@campus.test"})
	}
}

func countLines(buf *bytes.Buffer, substr string) int {
	return strings.Count(buf.String(), substr)
}

// TestAlarmNeedsMinEvents: however bad the ratio, fewer decisions than
// min_events in the window never fire; the min_events-th does.
func TestAlarmNeedsMinEvents(t *testing.T) {
	a, _, buf := newTestAlarm(t)
	record(a, report.LDAPTempfail, 19)
	if a.Firing() {
		t.Fatal("fired with 19 decisions, min_events 20")
	}
	record(a, report.LDAPTempfail, 1)
	if !a.Firing() {
		t.Fatal("20 LDAP deferrals of 20: not firing")
	}
	if n := countLines(buf, "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", n, buf)
	}
	if !strings.Contains(buf.String(), "causes=ldap_tempfail:20") || !strings.Contains(buf.String(), "ratio=1.00") {
		t.Errorf("ERROR line lacks the causes or the ratio:\n%s", buf)
	}
	record(a, report.LDAPTempfail, 10)
	if n := countLines(buf, "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines after more deferrals in the same episode, want still 1", n)
	}
}

// TestAlarmRatioStrictlyAbove: a share equal to tempfail_ratio does not
// fire; just above does. Every infrastructure cause counts; pregreet and
// AUTH failures are not mail decisions and do not dilute the ratio.
func TestAlarmRatioStrictlyAbove(t *testing.T) {
	a, _, _ := newTestAlarm(t)
	record(a, report.Accepted, 10)
	record(a, report.UnknownUser, 6)
	record(a, report.Pregreet, 50)
	record(a, report.AuthFailure, 50)
	record(a, report.DNSTempfail, 1)
	record(a, report.NexthopTempfail, 1)
	record(a, report.OtherTempfail, 1)
	record(a, report.LDAPTempfail, 1) // 4 of 20: exactly 0.2
	if a.Firing() {
		t.Fatal("fired at a ratio of exactly 0.2")
	}
	record(a, report.Greylist, 1) // 4 of 21: greylisting is no infrastructure failure
	if a.Firing() {
		t.Fatal("fired at 4 of 21")
	}
	record(a, report.DNSTempfail, 1) // 5 of 22 > 0.2
	if !a.Firing() {
		t.Fatal("5 infrastructure deferrals of 22 decisions: not firing")
	}
}

// TestAlarmOnlyInfrastructure: a user's hourly limits (450 4.7.1 from the
// "submission" rule, other_tempfail in the report) are mail decisions but no
// infrastructure deferrals; AUTH replies, a 454 because the directory could
// not tell included (ldap_tempfail from "auth"), are not mail decisions.
// Neither fires the alarm however many; the same causes from the checks
// that do depend on infrastructure do, and the ERROR line counts only them.
func TestAlarmOnlyInfrastructure(t *testing.T) {
	a, _, buf := newTestAlarm(t)
	recordCheck := func(cause, check string, n int) {
		for range n {
			a.Record(report.Event{Cause: cause, Check: check, Recipient: "friend@example.net"})
		}
	}
	recordCheck(report.Accepted, "", 20)
	recordCheck(report.OtherTempfail, "submission", 100) // the hourly limits
	recordCheck(report.LDAPTempfail, "auth", 100)        // AUTH 454: LDAP down, no slot, two entries
	recordCheck(report.AuthFailure, "auth", 100)
	if a.Firing() {
		t.Fatalf("fired on user policy and AUTH:\n%s", buf)
	}
	// 120 mail decisions so far; 31 deferrals by the account check and the
	// greylist store make 31 of 151 > 0.2.
	recordCheck(report.LDAPTempfail, "account", 30)
	if a.Firing() {
		t.Fatal("fired at 30 of 150")
	}
	recordCheck(report.OtherTempfail, "greylist", 1)
	if !a.Firing() {
		t.Fatal("31 infrastructure deferrals of 151 decisions: not firing")
	}
	if !strings.Contains(buf.String(), "deferred=31 decisions=151") || !strings.Contains(buf.String(), `causes="ldap_tempfail:30 other_tempfail:1"`) {
		t.Errorf("ERROR line does not count only the infrastructure:\n%s", buf)
	}
}

// TestAlarmWindowSlides: an episode ends once its deferrals leave the
// window, with no new mail needed (the periodic evaluate); one INFO line
// says so and how long it lasted. Decisions older than the window do not
// count towards a new episode.
func TestAlarmWindowSlides(t *testing.T) {
	a, clock, buf := newTestAlarm(t)
	var mu sync.Mutex
	var subjects []string
	notified := make(chan struct{}, 4)
	a.setNotify(func(subject, body string) {
		mu.Lock()
		subjects = append(subjects, subject)
		mu.Unlock()
		notified <- struct{}{}
	})
	record(a, report.LDAPTempfail, 20)
	if !a.Firing() {
		t.Fatal("not firing")
	}
	clock.Advance(5 * time.Minute)
	a.evaluate()
	if !a.Firing() {
		t.Fatal("ended after half the window")
	}
	clock.Advance(5*time.Minute + a.width())
	a.evaluate()
	if a.Firing() {
		t.Fatal("still firing once the deferrals left the window")
	}
	if n := countLines(buf, "level=INFO"); n != 1 || !strings.Contains(buf.String(), "lasted=10m") {
		t.Errorf("want one INFO line with lasted=10m…:\n%s", buf)
	}
	for range 2 {
		select {
		case <-notified:
		case <-time.After(5 * time.Second):
			t.Fatal("mail_to not notified")
		}
	}
	mu.Lock()
	if len(subjects) != 2 || !strings.Contains(subjects[0], "above threshold") || !strings.Contains(subjects[1], "alarm over") {
		t.Errorf("notices: %q", subjects)
	}
	mu.Unlock()

	// 19 old deferrals, then the window moves on: 19 fresh accepted and
	// 1 fresh deferral are 1 of 20, no episode.
	record(a, report.LDAPTempfail, 19)
	clock.Advance(11 * time.Minute)
	record(a, report.Accepted, 19)
	record(a, report.LDAPTempfail, 1)
	if a.Firing() {
		t.Fatal("deferrals older than the window counted")
	}
}

// TestAlarmNamesServedStale: recipients accepted from the account memory
// while the directory could not tell count as infrastructure decisions
// (the outage is an outage), and the alarm names them "served stale".
func TestAlarmNamesServedStale(t *testing.T) {
	a, _, buf := newTestAlarm(t)
	record(a, report.Accepted, 10)
	record(a, report.LDAPStale, 10)
	if !a.Firing() {
		t.Fatalf("10 served stale of 20 decisions (ratio 0.2): not firing:\n%s", buf)
	}
	if !strings.Contains(buf.String(), `causes="served stale (ldap_stale):10"`) {
		t.Errorf("the ERROR line does not name served stale:\n%s", buf)
	}
}
