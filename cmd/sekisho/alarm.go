package main

// The tempfail alarm (docs/metrics.md): when the gateway defers much of its
// mail because of its own infrastructure (LDAP, DNS, the next hops, the
// store), mail is piling up in other people's queues and an admin must
// know, whatever the reason.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"sekisho/config"
	"sekisho/report"
)

// infraCauses are the decisions that say our infrastructure could not
// answer. other_tempfail is chiefly the greylist store's errors (with
// on_store_error: tempfail). ldap_stale is no deferral: the recipient was
// accepted from the account memory; but the directory was down all the
// same, and for the admin the outage is still an outage. The alarm names
// it "served stale".
var infraCauses = [...]string{report.LDAPTempfail, report.DNSTempfail, report.NexthopTempfail, report.OtherTempfail, report.LDAPStale}

// alarmCauseName is how the alarm's line and mail name a cause.
func alarmCauseName(c string) string {
	if c == report.LDAPStale {
		return "served stale (" + c + ")"
	}
	return c
}

// Checks (report.Event.Check) whose decisions the alarm reads otherwise
// than by their cause.
const (
	// alarmAuthCheck is SMTP AUTH: not about mail, whatever its cause (a
	// 454 because LDAP could not tell is ldap_tempfail in the report; the
	// directory's trouble shows in the account check's deferrals and in
	// sekisho_up).
	alarmAuthCheck = "auth"
	// alarmUserPolicyCheck is an authenticated user's hourly limits (450
	// 4.7.1, other_tempfail in the report): a mail decision, but the
	// user's own policy, not our infrastructure.
	alarmUserPolicyCheck = "submission"
)

// alarmBuckets is how many slices the window is cut into: the window slides
// by a 60th of its length.
const alarmBuckets = 60

type alarmBucket struct {
	slot  int64 // which slice of time (now / width) the counts belong to
	total int
	infra [len(infraCauses)]int // by infraCauses
}

// tempfailAlarm is a report.Recorder that watches the share of
// infrastructure deferrals among the mail decisions (MAIL, RCPT and the
// per-recipient outcomes of the data; pregreet and AUTH are not about mail
// and are left out; a user's hourly limits are mail decisions but not
// infrastructure deferrals). It fires when, over the window, there are
// at least minEvents decisions and the share is above ratio, and ends when
// that is no longer so: one ERROR line at the start, one INFO line at the
// end, sekisho_alarm{kind="tempfail"} 1 meanwhile, and optionally a mail.
type tempfailAlarm struct {
	ratio     float64
	window    time.Duration
	minEvents int
	now       func() time.Time
	log       *slog.Logger
	// notices go, in order, to the function given to setNotify; a notice
	// that finds the queue full is dropped (the log lines remain).
	notices chan [2]string

	mu      sync.Mutex
	buckets [alarmBuckets]alarmBucket
	firing  bool
	since   time.Time
}

func newTempfailAlarm(c config.AlarmConfig, log *slog.Logger, now func() time.Time) *tempfailAlarm {
	if now == nil {
		now = time.Now
	}
	return &tempfailAlarm{ratio: c.TempfailRatio, window: c.Window, minEvents: c.MinEvents, now: now, log: log}
}

func (a *tempfailAlarm) width() time.Duration { return max(a.window/alarmBuckets, time.Nanosecond) }

// Record implements report.Recorder; it never blocks beyond a mutex.
func (a *tempfailAlarm) Record(e report.Event) {
	if e.Cause == report.Pregreet || e.Cause == report.AuthFailure || e.Check == alarmAuthCheck {
		return
	}
	infra := e.Check != alarmUserPolicyCheck
	now := a.now()
	slot := now.UnixNano() / int64(a.width())
	a.mu.Lock()
	b := &a.buckets[slot%alarmBuckets]
	if b.slot != slot {
		*b = alarmBucket{slot: slot}
	}
	b.total++
	for i, c := range infraCauses {
		if infra && e.Cause == c {
			b.infra[i]++
		}
	}
	a.mu.Unlock()
	a.evaluate()
}

// counts sums the buckets of the last window; a.mu held.
func (a *tempfailAlarm) counts(now time.Time) (total int, infra [len(infraCauses)]int) {
	slot := now.UnixNano() / int64(a.width())
	for _, b := range a.buckets {
		if b.slot > slot-alarmBuckets && b.slot <= slot {
			total += b.total
			for i, n := range b.infra {
				infra[i] += n
			}
		}
	}
	return total, infra
}

// evaluate starts or ends an episode; Record calls it, and so does run as
// time passes (an episode ends when its deferrals leave the window, even
// with no new mail).
func (a *tempfailAlarm) evaluate() {
	now := a.now()
	a.mu.Lock()
	total, infra := a.counts(now)
	sum := 0
	for _, n := range infra {
		sum += n
	}
	over := total >= a.minEvents && float64(sum) > a.ratio*float64(total)
	if over == a.firing {
		a.mu.Unlock()
		return
	}
	a.firing = over
	since := a.since
	if over {
		a.since = now
	}
	a.mu.Unlock()

	var causes []string
	var args []any
	for i, c := range infraCauses {
		if infra[i] > 0 {
			causes = append(causes, fmt.Sprintf("%s:%d", alarmCauseName(c), infra[i]))
		}
	}
	share := 0.0
	if total > 0 {
		share = float64(sum) / float64(total)
	}
	args = append(args, "kind", "tempfail", "deferred", sum, "decisions", total,
		"ratio", fmt.Sprintf("%.2f", share), "threshold", a.ratio, "window", a.window.String(), "causes", strings.Join(causes, " "))
	var subject, body string
	if over {
		a.log.Error("alarm: infrastructure deferrals above threshold, mail is waiting in senders' queues", args...)
		subject = "sekisho alarm: infrastructure deferrals above threshold"
		body = fmt.Sprintf("%d of the last %d mail decisions in %v were deferred for infrastructure reasons, or accepted only from the account memory (served stale) (%.0f%%, threshold %.0f%%): %s.\n"+
			"The gateway's log names the failing lookups; /readyz and sekisho_up tell the config.Dependencies' state.\n",
			sum, total, a.window, 100*share, 100*a.ratio, strings.Join(causes, ", "))
	} else {
		args = append(args, "lasted", now.Sub(since).Round(time.Second).String())
		a.log.Info("alarm over: infrastructure deferrals back under threshold", args...)
		subject = "sekisho alarm over: infrastructure deferrals back under threshold"
		body = fmt.Sprintf("The episode that began at %s is over after %v: %d of the last %d mail decisions in %v were infrastructure deferrals.\n",
			since.Format(time.RFC3339), now.Sub(since).Round(time.Second), sum, total, a.window)
	}
	if a.notices != nil {
		select {
		case a.notices <- [2]string{subject, body}:
		default:
			a.log.Warn("alarm notice dropped: earlier ones are still being sent", "subject", subject)
		}
	}
}

// setNotify has f called, from a goroutine of its own and in order, with a
// subject and a body at the start and the end of each episode. Call it
// before the first Record.
func (a *tempfailAlarm) setNotify(f func(subject, body string)) {
	a.notices = make(chan [2]string, 8)
	go func() {
		for n := range a.notices {
			f(n[0], n[1])
		}
	}()
}

// Firing reports whether an episode is on (sekisho_alarm).
func (a *tempfailAlarm) Firing() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.firing
}

// run re-evaluates as the window slides, until ctx ends.
func (a *tempfailAlarm) run(ctx context.Context) {
	t := time.NewTicker(max(a.width(), 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.evaluate()
		}
	}
}
