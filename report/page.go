package report

// The /report pages on the http listener: the report for people in a
// browser (server-rendered HTML, the SVG chart inline, no scripts, no
// forms, nothing that changes anything), and the same report as SVG, CSV
// and JSON for tools. The http listener is for admins and monitoring only
// (docs/report.md): it must not face the Internet.

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"sekisho/internal/mailaddr"
)

// Paths are the paths Handler serves; register each of them on the mux.
var Paths = []string{"/report", "/report.svg", "/report.csv", "/report.json"}

// Handler serves the report that load returns, read anew at each request:
// /report (HTML), /report.svg, /report.csv and /report.json; other paths
// are 404, methods other than GET and HEAD 405. When load fails (the store
// cannot be read) every path answers 503 with the reason in plain text,
// never a report of zeros.
//
// A request may name the weeks with from and to (dates, YYYY-MM-DD): load
// gets their Mondays, or nil for its default weeks. (`sekisho report` asks
// a running gateway on its control socket instead: cmd/sekisho/control.go.)
func Handler(load func(ctx context.Context, weeks []time.Time) (*Report, error)) http.Handler {
	return &handler{load: load}
}

type handler struct {
	load func(context.Context, []time.Time) (*Report, error)
}

// queryWeeks reads from and to of a request: the Mondays of the weeks they
// span, nil when neither is given.
func queryWeeks(req *http.Request) ([]time.Time, error) {
	q := req.URL.Query()
	from, to := q.Get("from"), q.Get("to")
	if from == "" && to == "" {
		return nil, nil
	}
	f, err1 := time.Parse(time.DateOnly, from)
	t, err2 := time.Parse(time.DateOnly, to)
	switch {
	case err1 != nil || err2 != nil:
		return nil, fmt.Errorf("from and to are dates, YYYY-MM-DD")
	case t.Before(f), t.Sub(f) > 10*366*24*time.Hour:
		return nil, fmt.Errorf("from and to do not make a period of at most 10 years")
	}
	return WeeksBetween(f, t), nil
}

// securityHeaders are set on every answer: no script may run, nothing may
// be framed or submitted, and browsers must not guess content types.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	securityHeaders(w.Header())
	var (
		contentType string
		render      func(*Report, *bytes.Buffer) error
	)
	switch req.URL.Path {
	case "/report":
		contentType, render = "text/html; charset=utf-8", writePage
	case "/report.svg":
		contentType, render = "image/svg+xml; charset=utf-8", func(r *Report, b *bytes.Buffer) error { return r.WriteSVG(b) }
	case "/report.csv":
		contentType, render = "text/csv; charset=utf-8", func(r *Report, b *bytes.Buffer) error { return r.WriteCSV(b) }
	case "/report.json":
		contentType, render = "application/json", func(r *Report, b *bytes.Buffer) error { return r.WriteJSON(b) }
	default:
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed: the report is read-only (GET)", http.StatusMethodNotAllowed)
		return
	}
	weeks, err := queryWeeks(req)
	if err != nil {
		http.Error(w, "400 "+err.Error(), http.StatusBadRequest)
		return
	}
	r, err := h.load(req.Context(), weeks)
	if err == nil && r == nil {
		err = fmt.Errorf("no report")
	}
	if err != nil {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "503 report unavailable: the counts could not be read from the state store, "+
			"so there is nothing to show (a report of zeros would be wrong).\n"+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var b bytes.Buffer
	if err := render(r, &b); err != nil {
		http.Error(w, "500 cannot render the report: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	if req.URL.Path == "/report.csv" {
		w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="sekisho-report-%s-%s.csv"`, safeName(r.From), safeName(r.To)))
	}
	w.Write(b.Bytes())
}

// safeName keeps what may go in a file name in a header.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r == '-' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' {
			return r
		}
		return -1
	}, s)
}

// pageData is what the page template renders.
type pageData struct {
	R          *Report
	FirstWeek  string
	LastWeek   string
	Estimated  bool
	SVG        template.HTML
	Candidates []candidate
	Weeks      []pageWeek // newest first
	SoFarUntil string     // "(until 2026-12-07 09:14 UTC)", or ""
}

// candidate is an NXDOMAIN domain not on the bad list, over the period.
type candidate struct {
	Domain   string
	Attempts int64
	Weeks    int
	LastWeek string
	// Line is the `sekisho baddomains add` command; empty when the domain
	// is not a valid host name (then it is shown, never offered to paste).
	Line string
}

type pageWeek struct {
	Week
	Open bool // the newest week is shown unfolded
	Rows []pageRow
	Top  []TopDomains
}

type pageRow struct {
	Cause, Kind        string
	Attempts, Distinct int64
	Change             string // attempts against the week before
	Zero               bool
}

var pageDomainTitles = map[string]string{
	NXDomain:  "Top NXDOMAIN domains",
	BadDomain: "Top bad-list domains",
	DMARC:     "Top spoofed From domains (refused by DMARC)",
}

var kindNames = map[string]string{PanelTempfail: "4xx", PanelRejection: "5xx", "": "accepted"}

// hostName matches a lower-case ASCII host name: only such names are put
// in a command line (nothing a shell would interpret).
var hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

// AddLine returns the `sekisho baddomains add` command for domain, or ""
// when the domain is not a valid host name (a line an admin pastes into a
// shell must hold nothing a shell would interpret). file is the list
// (Report.BadDomainsFile), "" for the command's default.
func AddLine(file, domain string) string {
	d, err := mailaddr.ToASCII(domain)
	if err != nil || !hostName.MatchString(d) {
		return ""
	}
	cmd := "sekisho baddomains add " + d
	if file != "" {
		cmd = "sekisho baddomains -file " + shellQuote(file) + " add " + d
	}
	return cmd
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// letters, digits and /._-+=:@,.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// changeText is attempts against the week before: "+12 (+35%)", "−3",
// "new", "=".
func changeText(cur, prev int64) string {
	d := cur - prev
	switch {
	case d == 0:
		return "="
	case prev == 0:
		return "new"
	}
	sign := "+"
	if d < 0 {
		sign = "\u2212"
		d = -d
	}
	return fmt.Sprintf("%s%s (%s%.0f%%)", sign, formatCount(d), sign, float64(d)*100/float64(prev))
}

// candidates collects the NXDOMAIN domains not on the bad list over the
// report's weeks, most attempts first.
func (r *Report) candidates() []candidate {
	byDomain := map[string]*candidate{}
	for _, w := range r.Weeks {
		for _, t := range w.Top {
			if t.Cause != NXDomain {
				continue
			}
			for _, d := range t.Domains {
				if d.Listed {
					continue
				}
				c := byDomain[d.Domain]
				if c == nil {
					c = &candidate{Domain: d.Domain, Line: AddLine(r.BadDomainsFile, d.Domain)}
					byDomain[d.Domain] = c
				}
				c.Attempts += d.Attempts
				c.Weeks++
				c.LastWeek = w.Week
			}
		}
	}
	var cs []candidate
	for _, c := range byDomain {
		cs = append(cs, *c)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Attempts != cs[j].Attempts {
			return cs[i].Attempts > cs[j].Attempts
		}
		return cs[i].Domain < cs[j].Domain
	})
	return cs
}

func (r *Report) pageData() (*pageData, error) {
	var svg bytes.Buffer
	if err := r.WriteSVG(&svg); err != nil {
		return nil, err
	}
	d := &pageData{
		R:          r,
		Estimated:  r.Distinct != "exact",
		Candidates: r.candidates(),
		// WriteSVG escapes every text it writes (xmlText) and writes no
		// script: its output is safe to inline.
		SVG: template.HTML(svg.String()),
	}
	if n := len(r.Weeks); n > 0 {
		d.FirstWeek, d.LastWeek = r.Weeks[0].Week, r.Weeks[n-1].Week
	}
	// Unfolded: the week so far and the newest complete week.
	openFrom := len(r.Weeks) - 1
	if openFrom > 0 && r.Weeks[openFrom].SoFar {
		openFrom--
	}
	d.SoFarUntil = strings.TrimSpace(r.soFarUntil())
	for i := len(r.Weeks) - 1; i >= 0; i-- {
		w := r.Weeks[i]
		pw := pageWeek{Week: w, Open: i >= openFrom, Top: w.Top}
		for _, c := range w.Causes {
			row := pageRow{Cause: c.Cause, Kind: kindNames[PanelOf(c.Cause)], Attempts: c.Attempts, Distinct: c.Distinct}
			if c.Cause == LDAPStale {
				row.Kind = "accepted" // drawn with the 4xx, but not one
			}
			if i > 0 && w.SoFar {
				// No change: a part of a week against a whole one.
				row.Zero = c.Attempts == 0
			} else if i > 0 {
				prev := r.Weeks[i-1].count(c.Cause)
				row.Change = changeText(c.Attempts, prev.Attempts)
				row.Zero = c.Attempts == 0 && prev.Attempts == 0
			} else {
				row.Zero = c.Attempts == 0
			}
			pw.Rows = append(pw.Rows, row)
		}
		d.Weeks = append(d.Weeks, pw)
	}
	return d, nil
}

func writePage(r *Report, b *bytes.Buffer) error {
	d, err := r.pageData()
	if err != nil {
		return err
	}
	return pageTemplate.Execute(b, d)
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"count": formatCount,
	"inc":   func(i int) int { return i + 1 },
	"domainFor": func(cause string) string {
		if t, ok := pageDomainTitles[cause]; ok {
			return t
		}
		return "Top " + cause + " domains"
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>sekisho report {{.FirstWeek}} to {{.LastWeek}}</title>
<style>
body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; font-size: 14px; color: #222; margin: 1.5em auto; max-width: 1120px; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
p.meta { color: #555; margin-top: 0; }
figure { margin: 1em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { padding: .2em .7em; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.zero td { color: #aaa; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: .6em .8em; overflow-x: auto; }
code { font-family: "DejaVu Sans Mono", monospace; }
details { margin: .4em 0; }
summary { cursor: pointer; font-weight: bold; padding: .2em 0; }
.columns { display: flex; flex-wrap: wrap; gap: 2em; }
.note { color: #555; }
</style>
</head>
<body>
<h1>sekisho report: {{.FirstWeek}} to {{.LastWeek}}</h1>
<p class="meta">ISO weeks, Monday to Sunday, {{.R.From}} to {{.R.To}} ({{.R.TimeZone}}).
Attempts: every decision, retries included. Distinct: (client network, sender, recipient) triplets in the week,
{{if .Estimated}}estimated (HyperLogLog, about 1% error){{else}}exact{{end}}.
Also as <a href="report.svg">SVG</a>, <a href="report.csv">CSV</a>, <a href="report.json">JSON</a>.</p>

<figure>
{{.SVG}}
</figure>

<h2 id="candidates">NXDOMAIN domains not on the bad list</h2>
{{if .Candidates}}
<p class="note">Sender or recipient domains that DNS said do not exist, and that <code>baddomains.txt</code> does not list yet:
candidates for the list (a typo of a big provider, a spammer's invented name). Check each one, then paste its line.</p>
<table>
<thead><tr><th>domain</th><th>attempts</th><th>weeks seen</th><th>last seen</th></tr></thead>
<tbody>
{{range .Candidates}}<tr><td><code>{{.Domain}}</code></td><td class="n">{{count .Attempts}}</td><td class="n">{{.Weeks}}</td><td>{{.LastWeek}}</td></tr>
{{end}}</tbody>
</table>
<pre>{{range .Candidates}}{{if .Line}}{{.Line}}
{{else}}# {{printf "%q" .Domain}} is not a valid host name: check it by hand
{{end}}{{end}}</pre>
{{else}}
<p class="note">None: every NXDOMAIN domain of these weeks is already on the bad list, or there were none.</p>
{{end}}

<h2 id="weeks">Week by week</h2>
<p class="note">Newest first; the week in progress is marked <em>so far</em> (its days until now, no change column). Change: attempts against the week before. 4xx: a temporary failure (the sender retries); 5xx: a rejection.</p>
{{range .Weeks}}
<details id="{{.Week.Week}}"{{if .Open}} open{{end}}>
<summary>{{.Week.Week}} ({{.Start}} to {{.End}}){{if .SoFar}}, <span class="so-far">so far</span> {{$.SoFarUntil}}{{end}}</summary>
<div class="columns">
<table>
<thead><tr><th>cause</th><th>kind</th><th>attempts</th><th>distinct</th><th>change</th></tr></thead>
<tbody>
{{range .Rows}}<tr{{if .Zero}} class="zero"{{end}}><td>{{.Cause}}</td><td>{{.Kind}}</td><td class="n">{{count .Attempts}}</td><td class="n">{{count .Distinct}}</td><td class="n">{{.Change}}</td></tr>
{{end}}</tbody>
</table>
<div>
{{range .Top}}<h3>{{domainFor .Cause}}</h3>{{$listed := ne .Cause "dmarc"}}
{{if .Domains}}<table>
<thead><tr><th>#</th><th>domain</th><th>attempts</th><th>senders</th>{{if $listed}}<th>listed</th>{{end}}</tr></thead>
<tbody>
{{range $i, $d := .Domains}}<tr><td class="n">{{inc $i}}</td><td><code>{{$d.Domain}}</code></td><td class="n">{{count $d.Attempts}}</td><td class="n">{{count $d.Senders}}</td>{{if $listed}}<td>{{if $d.Listed}}yes{{else}}no{{end}}</td>{{end}}</tr>
{{end}}</tbody>
</table>{{else}}<p class="note">none</p>{{end}}
{{end}}</div>
</div>
</details>
{{end}}
<p class="note">Read-only: nothing on this page changes sekisho. Edit the list with <code>sekisho baddomains</code>.</p>
</body>
</html>
`))
