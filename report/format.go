package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Formats are the outputs of `sekisho report -format`.
var Formats = []string{"text", "csv", "json"}

// Write writes r in format (one of Formats).
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "text":
		return r.WriteText(w)
	case "csv":
		return r.WriteCSV(w)
	case "json":
		return r.WriteJSON(w)
	}
	return fmt.Errorf("report: unknown format %q (want text, csv or json)", format)
}

// JSONVersion is the version of the JSON shape (docs/report.md); a change
// that is not an added field gets a new version.
const JSONVersion = 1

// JSON is the JSON document of a report (docs/report.md): one row per week
// and cause, oldest week first and causes in Causes order, and the top
// refused domains.
type JSON struct {
	Version    int       `json:"version"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	TimeZone   string    `json:"time_zone"`
	Distinct   string    `json:"distinct"`
	Generated  string    `json:"generated,omitempty"`
	Causes     []string  `json:"causes"`
	Rows       []JSONRow `json:"rows"`
	TopDomains []JSONTop `json:"top_domains"`
}

// JSONRow is one (week, cause).
type JSONRow struct {
	Week      string           `json:"week"`
	Start     string           `json:"start"`
	End       string           `json:"end"`
	SoFar     bool             `json:"so_far"`
	Cause     string           `json:"cause"`
	Attempts  int64            `json:"attempts"`
	Distinct  int64            `json:"distinct"`
	Listeners map[string]int64 `json:"listeners"`
}

// JSONTop is one refused domain of a week's top list.
type JSONTop struct {
	Week     string `json:"week"`
	Cause    string `json:"cause"`
	Rank     int    `json:"rank"`
	Domain   string `json:"domain"`
	Attempts int64  `json:"attempts"`
	Senders  int64  `json:"senders"`
	Listed   bool   `json:"listed"`
}

// JSON returns the JSON document of r.
func (r *Report) JSON() JSON {
	j := JSON{Version: JSONVersion, From: r.From, To: r.To, TimeZone: r.TimeZone, Distinct: r.Distinct,
		Generated: r.Generated, Causes: r.Causes, Rows: []JSONRow{}, TopDomains: []JSONTop{}}
	for _, w := range r.Weeks {
		for _, c := range w.Causes {
			j.Rows = append(j.Rows, JSONRow{Week: w.Week, Start: w.Start, End: w.End, SoFar: w.SoFar, Cause: c.Cause,
				Attempts: c.Attempts, Distinct: c.Distinct, Listeners: c.Listeners})
		}
		for _, t := range w.Top {
			for i, d := range t.Domains {
				j.TopDomains = append(j.TopDomains, JSONTop{Week: w.Week, Cause: t.Cause, Rank: i + 1,
					Domain: d.Domain, Attempts: d.Attempts, Senders: d.Senders, Listed: d.Listed})
			}
		}
	}
	return j
}

// WriteJSON writes the JSON document, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSON())
}

// WriteCSV writes a header and one row per (week, cause): week, start, end,
// cause, attempts, distinct, so_far ("yes" for the week in progress, "no"
// for a complete one; the last column, so that tools reading the first six
// by position read what they did).
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"week", "start", "end", "cause", "attempts", "distinct", "so_far"})
	for _, wk := range r.Weeks {
		soFar := "no"
		if wk.SoFar {
			soFar = "yes"
		}
		for _, c := range wk.Causes {
			cw.Write([]string{wk.Week, wk.Start, wk.End, c.Cause,
				strconv.FormatInt(c.Attempts, 10), strconv.FormatInt(c.Distinct, 10), soFar})
		}
	}
	cw.Flush()
	return cw.Error()
}

// change is cur against prev for the text report.
func change(cur, prev int64, hasPrev bool) string {
	switch {
	case !hasPrev:
		return ""
	case prev == 0 && cur == 0:
		return "="
	case prev == 0:
		return "new"
	}
	pct := float64(cur-prev) * 100 / float64(prev)
	return fmt.Sprintf("%+.0f%%", pct)
}

var domainTitles = map[string]string{
	NXDomain:  "Top NXDOMAIN domains",
	BadDomain: "Top bad-list domains",
	DMARC:     "Top spoofed From domains (refused by DMARC)",
}

// WriteText writes the report for people (the Monday mail): newest week
// first, every cause with attempts and distinct triplets and the change
// from the week before, the top refused domains, and a ready
// `sekisho baddomains add` line for each NXDOMAIN domain not on the list.
// The week in progress is headed "so far", with no change column: a part
// of a week against a whole one would read as a fall.
func (r *Report) WriteText(out io.Writer) error {
	w := bufio.NewWriter(out)
	distinct := "exact"
	if r.Distinct != "exact" {
		distinct = "estimated (HyperLogLog, about 1% error)"
	}
	fmt.Fprintf(w, "sekisho report %s to %s (ISO weeks, Monday to Sunday, UTC)\n", r.From, r.To)
	fmt.Fprintf(w, "attempts: every decision, retries included; distinct: (client network, sender, recipient), %s\n", distinct)
	add := "sekisho baddomains add "
	if r.BadDomainsFile != "" {
		add = "sekisho baddomains -file " + r.BadDomainsFile + " add "
	}
	for i := len(r.Weeks) - 1; i >= 0; i-- {
		wk := r.Weeks[i]
		if wk.SoFar {
			fmt.Fprintf(w, "\n== %s (%s to %s), so far%s ==\n\n", wk.Week, wk.Start, wk.End, r.soFarUntil())
		} else {
			fmt.Fprintf(w, "\n== %s (%s to %s) ==\n\n", wk.Week, wk.Start, wk.End)
		}
		fmt.Fprintf(w, "%-18s %10s %8s %10s %8s\n", "cause", "attempts", "change", "distinct", "change")
		for j, c := range wk.Causes {
			var prev CauseCount
			hasPrev := i > 0 && !wk.SoFar
			if hasPrev {
				prev = r.Weeks[i-1].Causes[j]
			}
			line := fmt.Sprintf("%-18s %10d %8s %10d %8s", c.Cause, c.Attempts, change(c.Attempts, prev.Attempts, hasPrev),
				c.Distinct, change(c.Distinct, prev.Distinct, hasPrev))
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
		var adds []string
		for _, t := range wk.Top {
			fmt.Fprintf(w, "\n%s (attempts, distinct senders):\n", domainTitles[t.Cause])
			if len(t.Domains) == 0 {
				fmt.Fprintln(w, "  (none)")
			}
			for k, d := range t.Domains {
				mark := ""
				if t.Cause == NXDomain && d.Listed {
					mark = "  (on the bad list)"
				}
				fmt.Fprintf(w, "  %2d. %-40s %8d %6d%s\n", k+1, d.Domain, d.Attempts, d.Senders, mark)
				if t.Cause == NXDomain && !d.Listed {
					adds = append(adds, add+d.Domain)
				}
			}
		}
		if len(adds) > 0 {
			fmt.Fprintln(w, "\nNXDOMAIN domains not on the bad list yet (check, then paste):")
			for _, a := range adds {
				fmt.Fprintln(w, "  "+a)
			}
		}
	}
	return w.Flush()
}

// soFarUntil is how far the week so far goes, for its heading: " (until
// 2026-12-07 09:14 UTC)", or "" when the report does not say.
func (r *Report) soFarUntil() string {
	t, err := time.Parse(time.RFC3339, r.Generated)
	if err != nil {
		return ""
	}
	return " (until " + t.UTC().Format("2006-01-02 15:04") + " UTC)"
}

// LastComplete returns the newest week of r that is complete (not the week
// so far), nil when there is none.
func (r *Report) LastComplete() *Week {
	for i := len(r.Weeks) - 1; i >= 0; i-- {
		if !r.Weeks[i].SoFar {
			return &r.Weeks[i]
		}
	}
	return nil
}

// FromJSON rebuilds a Report from its JSON document (version 1): what
// `sekisho report` does with a running gateway's /report.json when it
// cannot open the embedded store itself.
func FromJSON(j JSON) (*Report, error) {
	if j.Version != JSONVersion {
		return nil, fmt.Errorf("report JSON version %d, want %d", j.Version, JSONVersion)
	}
	r := &Report{From: j.From, To: j.To, TimeZone: j.TimeZone, Distinct: j.Distinct, Generated: j.Generated, Causes: j.Causes}
	index := map[string]int{}
	for _, row := range j.Rows {
		i, ok := index[row.Week]
		if !ok {
			i = len(r.Weeks)
			index[row.Week] = i
			r.Weeks = append(r.Weeks, Week{Week: row.Week, Start: row.Start, End: row.End, SoFar: row.SoFar})
			for _, c := range DomainCauses {
				r.Weeks[i].Top = append(r.Weeks[i].Top, TopDomains{Cause: c})
			}
		}
		r.Weeks[i].Causes = append(r.Weeks[i].Causes, CauseCount{Cause: row.Cause, Attempts: row.Attempts,
			Distinct: row.Distinct, Listeners: row.Listeners})
	}
	for _, w := range r.Weeks {
		if len(w.Causes) != len(r.Causes) {
			return nil, fmt.Errorf("report JSON: week %s has %d causes, want %d", w.Week, len(w.Causes), len(r.Causes))
		}
	}
	for _, t := range j.TopDomains {
		i, ok := index[t.Week]
		if !ok {
			return nil, fmt.Errorf("report JSON: top domain of unknown week %s", t.Week)
		}
		for k := range r.Weeks[i].Top {
			if r.Weeks[i].Top[k].Cause == t.Cause {
				r.Weeks[i].Top[k].Domains = append(r.Weeks[i].Top[k].Domains,
					DomainCount{Domain: t.Domain, Attempts: t.Attempts, Senders: t.Senders, Listed: t.Listed})
			}
		}
	}
	return r, nil
}
