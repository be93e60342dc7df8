package report

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sekisho/greylist"
)

// DefaultWeeks is how many complete weeks `sekisho report` and /report
// show by default: the last complete week and the 8 before it, for trends;
// the week in progress comes after them, "so far" (RecentWeeks).
const DefaultWeeks = 9

// DefaultTop is how many refused domains a week lists per cause.
const DefaultTop = 10

// DomainCauses are the causes whose refused domains are counted, in the
// order reports show them.
var DomainCauses = []string{NXDomain, BadDomain, DMARC}

// Options says what Build reads.
type Options struct {
	// Weeks are the Mondays (00:00 UTC) of the weeks to report, oldest
	// first: LastWeeks or WeeksBetween.
	Weeks []time.Time
	// Top is how many refused domains per cause and week; default
	// DefaultTop.
	Top int
	// Listed reports whether a domain is already on the bad list (nil:
	// none is). The text report prints `sekisho baddomains add` lines for
	// the NXDOMAIN domains that are not.
	Listed func(domain string) bool
	// BadDomainsFile is the list those lines add to ("": the command's
	// default, ./baddomains.txt).
	BadDomainsFile string
	// Now is when the report is made: the week that holds it is the week
	// in progress, its counts "so far" (Week.SoFar). Zero: no week is.
	Now time.Time
}

// Report is the data model of every output: text, CSV, JSON, and (other
// files) the SVG chart and the /report page. See README.md.
type Report struct {
	From     string   // Monday of the first week, "2026-09-21"
	To       string   // Sunday of the last week, "2026-11-22"
	TimeZone string   // "UTC"
	Distinct string   // "exact" or "hyperloglog"
	Causes   []string // Causes: the order of every Week.Causes
	Weeks    []Week   // oldest first, empty weeks included

	// BadDomainsFile is Options.BadDomainsFile, for the add lines.
	BadDomainsFile string
	// Generated is Options.Now (RFC 3339, UTC, to the second): how far
	// the week so far goes. "" when Now was not given.
	Generated string
}

// Week is one ISO week of a Report.
type Week struct {
	Week  string // "2026-W47"
	Start string // its Monday
	End   string // its Sunday
	// SoFar marks the week in progress (it holds Report.Generated): its
	// counts are those of its days so far, not of a whole week.
	SoFar  bool
	Causes []CauseCount // one per Report.Causes, same order
	Top    []TopDomains // one per DomainCauses, same order
}

// CauseCount is one cause in one week.
type CauseCount struct {
	Cause     string
	Attempts  int64            // every decision, retries included
	Distinct  int64            // distinct (client network, sender, recipient) triplets
	Listeners map[string]int64 // attempts per listener
}

// TopDomains is a week's most refused domains of one cause.
type TopDomains struct {
	Cause   string
	Domains []DomainCount // most attempts first
}

// DomainCount is one refused domain in one week.
type DomainCount struct {
	Domain   string
	Attempts int64
	Senders  int64 // distinct envelope senders
	Listed   bool  // already bad (the list or a special-use name)
}

// ErrNoWeeks is Build's error for an empty Options.Weeks.
var ErrNoWeeks = errors.New("report: no weeks to report")

// Build reads the weeks of o from the store. A store that cannot be read is
// an error: a report never shows zeros it did not read.
func Build(ctx context.Context, store greylist.Counts, o Options) (*Report, error) {
	if len(o.Weeks) == 0 {
		return nil, ErrNoWeeks
	}
	if o.Top <= 0 {
		o.Top = DefaultTop
	}
	r := &Report{
		From:           DateString(o.Weeks[0]),
		To:             DateString(o.Weeks[len(o.Weeks)-1].Add(6 * day)),
		TimeZone:       "UTC",
		Distinct:       "hyperloglog",
		Causes:         Causes,
		BadDomainsFile: o.BadDomainsFile,
	}
	if store.CountsExact() {
		r.Distinct = "exact"
	}
	if !o.Now.IsZero() {
		r.Generated = o.Now.UTC().Format(time.RFC3339)
	}
	for _, m := range o.Weeks {
		name := WeekName(m)
		wc, err := store.ReadCounts(ctx, name, o.Top)
		if err != nil {
			return nil, fmt.Errorf("report: reading week %s: %w", name, err)
		}
		w := Week{Week: name, Start: DateString(m), End: DateString(m.Add(6 * day)),
			SoFar: !o.Now.IsZero() && !o.Now.Before(m) && o.Now.Before(m.Add(7*day))}
		for _, cause := range Causes {
			cc := wc.Causes[cause]
			l := cc.Listeners
			if l == nil {
				l = map[string]int64{}
			}
			w.Causes = append(w.Causes, CauseCount{Cause: cause, Attempts: cc.Attempts, Distinct: cc.Distinct, Listeners: l})
		}
		for _, cause := range DomainCauses {
			t := TopDomains{Cause: cause, Domains: []DomainCount{}}
			for _, d := range wc.Domains[cause] {
				listed := cause == BadDomain // it was bad when refused
				if o.Listed != nil {
					listed = o.Listed(d.Domain) // the list in force now
				}
				t.Domains = append(t.Domains, DomainCount{Domain: d.Domain, Attempts: d.Attempts, Senders: d.Senders, Listed: listed})
			}
			w.Top = append(w.Top, t)
		}
		r.Weeks = append(r.Weeks, w)
	}
	return r, nil
}
