package report_test

import (
	"bytes"
	"encoding/xml"
	"math"
	"strconv"
	"strings"
	"testing"

	"sekisho/report"
)

// chartReport is a hand-made report of three weeks: every cause has
// attempts = (week+1) * (index+1) * 10, distinct half of it, except
// ldap_tempfail, which is zero all along, and an LDAP outage in the second
// week. Its top domains include a hostile name and a listed one.
func chartReport() *report.Report {
	r := &report.Report{From: "2026-11-02", To: "2026-11-22", TimeZone: "UTC", Distinct: "exact", Causes: report.Causes}
	for wi, name := range []string{"2026-W45", "2026-W46", "2026-W47"} {
		w := report.Week{Week: name, Start: []string{"2026-11-02", "2026-11-09", "2026-11-16"}[wi], End: []string{"2026-11-08", "2026-11-15", "2026-11-22"}[wi]}
		for ci, c := range report.Causes {
			a := int64((wi + 1) * (ci + 1) * 10)
			if c == report.LDAPTempfail {
				a = 0
			}
			w.Causes = append(w.Causes, report.CauseCount{Cause: c, Attempts: a, Distinct: a / 2, Listeners: map[string]int64{"smtp": a}})
		}
		w.Top = []report.TopDomains{
			{Cause: report.NXDomain, Domains: []report.DomainCount{
				{Domain: "gmial.com", Attempts: 40, Senders: 12},
				{Domain: "<script>alert(1)</script>.example", Attempts: 9, Senders: 3},
				{Domain: "hotmial.com", Attempts: 7, Senders: 2, Listed: true},
			}},
			{Cause: report.BadDomain, Domains: []report.DomainCount{{Domain: "mailer.invalid", Attempts: 5, Senders: 5, Listed: true}}},
			{Cause: report.DMARC, Domains: []report.DomainCount{{Domain: "campus.example", Attempts: 8, Senders: 6}}},
		}
		r.Weeks = append(r.Weeks, w)
	}
	return r
}

// node is any XML element, for walking the SVG.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []node     `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n *node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// walk calls f on n and every descendant, with the data-panel of the
// nearest enclosing panel group.
func (n *node) walk(panel string, f func(n *node, panel string)) {
	if n.XMLName.Local == "g" && n.attr("class") == "panel" {
		panel = n.attr("data-panel")
	}
	f(n, panel)
	for i := range n.Nodes {
		n.Nodes[i].walk(panel, f)
	}
}

// text is the text content of n and its descendants.
func (n *node) text() string {
	s := n.Text
	for i := range n.Nodes {
		s += n.Nodes[i].text()
	}
	return s
}

func decodeSVG(t *testing.T, b []byte) *node {
	t.Helper()
	var root node
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	if err := d.Decode(&root); err != nil {
		t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, b)
	}
	if root.XMLName.Local != "svg" || root.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Fatalf("root element %v, want svg in the SVG namespace", root.XMLName)
	}
	return &root
}

func svgOf(t *testing.T, r *report.Report) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func float(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return f
}

type bar struct {
	panel              string
	x, y, w, h         float64
	attempts, distinct int64
	title              string
}

func bars(t *testing.T, root *node) map[[2]string]bar {
	t.Helper()
	out := map[[2]string]bar{}
	root.walk("", func(n *node, panel string) {
		if n.XMLName.Local != "rect" || n.attr("class") != "bar" {
			return
		}
		k := [2]string{n.attr("data-week"), n.attr("data-cause")}
		if _, dup := out[k]; dup {
			t.Errorf("two bars for %v", k)
		}
		a, _ := strconv.ParseInt(n.attr("data-attempts"), 10, 64)
		d, _ := strconv.ParseInt(n.attr("data-distinct"), 10, 64)
		if n.attr("data-panel") != panel {
			t.Errorf("bar %v says panel %q but is drawn in panel %q", k, n.attr("data-panel"), panel)
		}
		out[k] = bar{panel: panel, x: float(t, n.attr("x")), y: float(t, n.attr("y")), w: float(t, n.attr("width")),
			h: float(t, n.attr("height")), attempts: a, distinct: d, title: n.text()}
	})
	return out
}

// TestSVGOneBarPerWeekAndCauseInItsPanel: the chart is well-formed XML
// with exactly one bar per (week, cause) — accepted excepted — in the panel
// of its cause, carrying the report's counts.
func TestSVGOneBarPerWeekAndCauseInItsPanel(t *testing.T) {
	r := chartReport()
	got := bars(t, decodeSVG(t, svgOf(t, r)))
	want := 0
	for _, w := range r.Weeks {
		for _, c := range w.Causes {
			k := [2]string{w.Week, c.Cause}
			b, ok := got[k]
			if c.Cause == report.Accepted {
				if ok {
					t.Errorf("accepted is drawn as a bar in %s", w.Week)
				}
				continue
			}
			want++
			if !ok {
				t.Errorf("no bar for %v", k)
				continue
			}
			if b.panel != report.PanelOf(c.Cause) || b.panel == "" {
				t.Errorf("%v in panel %q, want %q", k, b.panel, report.PanelOf(c.Cause))
			}
			if b.attempts != c.Attempts || b.distinct != c.Distinct {
				t.Errorf("%v: attempts %d distinct %d, want %d %d", k, b.attempts, b.distinct, c.Attempts, c.Distinct)
			}
			if !strings.Contains(b.title, strconv.FormatInt(c.Attempts, 10)+" attempts") {
				t.Errorf("%v: tooltip %q lacks the attempts", k, b.title)
			}
		}
	}
	if len(got) != want {
		t.Errorf("%d bars, want %d", len(got), want)
	}
	// The documented split.
	for cause, panel := range map[string]string{
		report.LDAPTempfail: report.PanelTempfail, report.DNSTempfail: report.PanelTempfail, report.NXDomain: report.PanelTempfail,
		report.Greylist: report.PanelTempfail, report.NexthopTempfail: report.PanelTempfail, report.OtherTempfail: report.PanelTempfail,
		report.BadDomain: report.PanelRejection, report.UnknownUser: report.PanelRejection, report.DNSBL: report.PanelRejection,
		report.SPF: report.PanelRejection, report.Header: report.PanelRejection, report.Pregreet: report.PanelRejection,
		report.RelayDenied: report.PanelRejection, report.AuthFailure: report.PanelRejection,
		"future_tempfail": report.PanelTempfail, report.Accepted: "",
	} {
		if got := report.PanelOf(cause); got != panel {
			t.Errorf("PanelOf(%s) = %q, want %q", cause, got, panel)
		}
	}
}

// TestSVGHeightsProportionalAndStacked: within a panel, every bar's height
// is its attempts times one scale; a week's bars are stacked without gaps
// or overlaps, in columns that do not overlap.
func TestSVGHeightsProportionalAndStacked(t *testing.T) {
	r := chartReport()
	got := bars(t, decodeSVG(t, svgOf(t, r)))
	scale := map[string]float64{}
	for k, b := range got {
		if b.attempts == 0 {
			if b.h != 0 {
				t.Errorf("%v: zero attempts drawn %v high", k, b.h)
			}
			continue
		}
		s := b.h / float64(b.attempts)
		if scale[b.panel] == 0 {
			scale[b.panel] = s
		}
		if math.Abs(s-scale[b.panel]) > 0.02*scale[b.panel] {
			t.Errorf("%v: %d attempts drawn %v high: scale %v, the panel's is %v", k, b.attempts, b.h, s, scale[b.panel])
		}
	}
	if len(scale) != 2 {
		t.Fatalf("scales for %v, want both panels", scale)
	}
	for _, panel := range []string{report.PanelTempfail, report.PanelRejection} {
		prevRight := math.Inf(-1)
		for _, w := range r.Weeks {
			var stack []bar
			for _, c := range r.Causes {
				if b, ok := got[[2]string{w.Week, c}]; ok && b.panel == panel {
					stack = append(stack, b)
				}
			}
			// All on one baseline (the lowest bottom), in one column; the
			// stack spans exactly the sum of its heights.
			base, top, sum := math.Inf(-1), math.Inf(1), 0.0
			for _, b := range stack {
				base = math.Max(base, b.y+b.h)
				top = math.Min(top, b.y)
				sum += b.h
				if b.x != stack[0].x || b.w != stack[0].w {
					t.Errorf("%s %s: bars of one week in different columns", w.Week, panel)
				}
			}
			if math.Abs((base-top)-sum) > 0.05 {
				t.Errorf("%s %s: stack spans %v but its bars sum to %v (gaps or overlaps)", w.Week, panel, base-top, sum)
			}
			if stack[0].x <= prevRight {
				t.Errorf("%s %s: its column overlaps the week before", w.Week, panel)
			}
			prevRight = stack[0].x + stack[0].w
		}
	}
}

// TestSVGLegendAndLabels: a legend entry for every cause drawn, with its
// total over the period; the week labels; the period in the title; the
// accepted counts as text.
func TestSVGLegendAndLabels(t *testing.T) {
	r := chartReport()
	root := decodeSVG(t, svgOf(t, r))
	legend := map[string]string{}
	var weeks, accepted []string
	var title string
	root.walk("", func(n *node, panel string) {
		switch {
		case n.XMLName.Local == "g" && n.attr("class") == "legend":
			legend[n.attr("data-cause")] = n.text()
		case n.XMLName.Local == "text" && n.attr("class") == "week":
			weeks = append(weeks, n.text())
		case n.XMLName.Local == "text" && n.attr("class") == "accepted":
			accepted = append(accepted, n.attr("data-attempts"))
		case n.XMLName.Local == "title" && title == "":
			title = n.text()
		}
	})
	for ci, c := range r.Causes {
		if c == report.Accepted {
			if _, ok := legend[c]; ok {
				t.Errorf("accepted has a legend entry but no bar")
			}
			continue
		}
		entry, ok := legend[c]
		if !ok {
			t.Errorf("no legend entry for %s", c)
			continue
		}
		total := int64(0)
		for _, w := range r.Weeks {
			total += w.Causes[ci].Attempts
		}
		// Totals are written with thin spaces between thousands.
		if want := strings.ReplaceAll(strings.ReplaceAll(entry, "\u2009", ""), c, ""); want != strconv.FormatInt(total, 10) {
			t.Errorf("legend of %s: %q, want the total %d", c, entry, total)
		}
	}
	if strings.Join(weeks, " ") != "2026-W45 2026-W46 2026-W47 2026-W45 2026-W46 2026-W47" {
		t.Errorf("week labels %q, want each week under each panel", weeks)
	}
	if strings.Join(accepted, " ") != "10 20 30" {
		t.Errorf("accepted row %q, want 10 20 30", accepted)
	}
	if !strings.Contains(title, "2026-11-02 to 2026-11-22") {
		t.Errorf("title %q lacks the period", title)
	}
}

// TestSVGEscapesEverything: hostile strings in any text of the report keep
// the SVG well-formed and never become markup; the chart has no script.
func TestSVGEscapesEverything(t *testing.T) {
	r := chartReport()
	r.From = `<script>alert("from")</script>`
	r.TimeZone = `UTC"><foo x='1'>&amp;`
	r.Causes = append(append([]string{}, r.Causes...), `evil"<cause>&`)
	for i := range r.Weeks {
		r.Weeks[i].Week = `W<b>` + strconv.Itoa(i)
		r.Weeks[i].Start = `"&'<>`
		r.Weeks[i].Causes = append(r.Weeks[i].Causes, report.CauseCount{Cause: `evil"<cause>&`, Attempts: 3})
	}
	b := svgOf(t, r)
	root := decodeSVG(t, b)
	for _, bad := range []string{"<script", "<b>", "<cause>", "<foo", "on" + "load="} {
		if bytes.Contains(bytes.ToLower(b), []byte(bad)) {
			t.Errorf("the SVG holds %q unescaped", bad)
		}
	}
	found := false
	root.walk("", func(n *node, panel string) {
		if n.XMLName.Local == "script" || n.XMLName.Local == "foreignObject" {
			t.Errorf("the SVG has a <%s> element", n.XMLName.Local)
		}
		if n.attr("data-cause") == `evil"<cause>&` && n.attr("data-week") == "W<b>1" {
			found = true // decoded back to the original: escaped, not mangled
		}
	})
	if !found {
		t.Errorf("the unknown cause's bar is missing or its name was mangled")
	}
}

// TestSVGNoWeeksNoCounts: an empty report and one of zeros are still
// well-formed charts that say there is nothing, with flat bars.
func TestSVGNoWeeksNoCounts(t *testing.T) {
	decodeSVG(t, svgOf(t, &report.Report{From: "2026-11-16", To: "2026-11-22", TimeZone: "UTC", Causes: report.Causes}))
	r := chartReport()
	for i := range r.Weeks {
		for j := range r.Weeks[i].Causes {
			r.Weeks[i].Causes[j].Attempts = 0
		}
	}
	b := svgOf(t, r)
	for k, bar := range bars(t, decodeSVG(t, b)) {
		if bar.h != 0 {
			t.Errorf("%v: %v high with no attempts", k, bar.h)
		}
	}
	if n := bytes.Count(b, []byte("none in this period")); n != 2 {
		t.Errorf("%d panels say none in this period, want 2", n)
	}
}
