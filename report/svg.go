package report

// The SVG chart (DESIGN.md §6, "an SVG chart for people"): per ISO week, a
// stacked bar of the attempts of each cause, in two panels on their own
// scales — the temporary failures (4xx: the sender retries, mail is only
// late) above, the rejections (5xx: certain answers) below. Accepted mail is
// not a bar (it would flatten every other one) but a row of numbers under
// the weeks. Written with the standard library only, no scripts: every
// segment carries a <title> (the browser's tooltip) with its attempts and
// distinct triplets, and every text is XML-escaped.

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The panels of the chart, and the causes of each in stacking order (the
// first at the bottom) and legend order.
//
// nxdomain is drawn as a temporary failure: with the default
// checks.domain.nxdomain: tempfail it is answered 450 (a DNS answer that
// may still change), and its 550 under nxdomain: reject is the exception.
// spf is a rejection: its 4xx (temperror with tempfail set) is rare.
// auth_failure is a rejection (535), throttling included. ldap_stale is
// accepted mail, but drawn with the temporary failures next to
// ldap_tempfail: the account memory stood in for a directory that could
// not answer, and the outage must show. A cause the
// chart does not know goes above if its name ends in "_tempfail", below
// otherwise.
var (
	tempfailCauses  = []string{LDAPTempfail, LDAPStale, DNSTempfail, NXDomain, Greylist, NexthopTempfail, OtherTempfail}
	rejectionCauses = []string{BadDomain, UnknownUser, DNSBL, SPF, Header, Pregreet, RelayDenied, AuthFailure}
)

// Panel names, as in the SVG's data-panel attributes and the page's tables.
const (
	PanelTempfail  = "tempfail"
	PanelRejection = "rejection"
)

// PanelOf returns the chart panel a cause is drawn in: PanelTempfail,
// PanelRejection, or "" for accepted mail (not a bar).
func PanelOf(cause string) string {
	switch {
	case cause == Accepted:
		return ""
	case contains(tempfailCauses, cause), strings.HasSuffix(cause, "_tempfail"):
		return PanelTempfail
	}
	return PanelRejection
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// palette is Okabe and Ito's colour-blind-safe set (Color Universal
// Design, 2008), with grey in place of black so that labels stay readable
// next to it. Adjacent segments are also separated by a white line.
var palette = []string{"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"}

// Chart geometry, in SVG user units (pixels at 100%).
const (
	svgWidth     = 1100
	plotLeft     = 90
	plotRight    = 860 // the legend is to the right of it
	panelHeight  = 250
	panel1Top    = 96
	panelGap     = 110 // from one panel's bottom to the next one's top
	legendX      = plotRight + 24
	legendRow    = 21
	maxBarWidth  = 56
	minLabelSpan = 64 // narrowest room for a week label; closer ones are thinned out
)

// chartPanel is what one panel draws.
type chartPanel struct {
	name, title string
	causes      []string // in stacking order
	colours     map[string]string
	top         float64
}

// panels returns the report's causes split into the chart's two panels, in
// the order of tempfailCauses and rejectionCauses, unknown causes last.
func (r *Report) panels() []chartPanel {
	ps := []chartPanel{
		{name: PanelTempfail, title: "Temporary failures (4xx): the sender retries, mail is late"},
		{name: PanelRejection, title: "Rejections (5xx): refused for good"},
	}
	order := map[string][]string{PanelTempfail: tempfailCauses, PanelRejection: rejectionCauses}
	for i := range ps {
		p := &ps[i]
		for _, c := range order[p.name] {
			if contains(r.Causes, c) {
				p.causes = append(p.causes, c)
			}
		}
		for _, c := range r.Causes {
			if PanelOf(c) == p.name && !contains(p.causes, c) {
				p.causes = append(p.causes, c)
			}
		}
		p.colours = map[string]string{}
		for j, c := range p.causes {
			p.colours[c] = palette[j%len(palette)]
		}
		p.top = float64(panel1Top + i*(panelHeight+panelGap))
	}
	return ps
}

// count returns week w's counts of cause, zeros if the week lacks it.
func (w *Week) count(cause string) CauseCount {
	for _, c := range w.Causes {
		if c.Cause == cause {
			return c
		}
	}
	return CauseCount{Cause: cause}
}

// niceScale returns the top of a value axis holding max, and its tick
// step: 1, 2 or 5 times a power of ten, about five ticks.
func niceScale(max int64) (top, step int64) {
	if max <= 0 {
		return 1, 1
	}
	raw := float64(max) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = int64(mag)
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			step = int64(m * mag)
			break
		}
	}
	if step < 1 {
		step = 1
	}
	top = (max + step - 1) / step * step
	return top, step
}

// formatCount writes n with thin spaces between thousands: 12 345.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u2009")
		}
		b.WriteRune(d)
	}
	if neg {
		return "\u2212" + b.String()
	}
	return b.String()
}

// xmlText escapes s for XML text and attribute values (quotes included);
// characters XML cannot hold become U+FFFD.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// svgWriter keeps the first write error, so the drawing code reads straight.
type svgWriter struct {
	w   io.Writer
	err error
}

func (s *svgWriter) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// WriteSVG draws the report as an SVG image: per week a stacked bar of the
// attempts (every reply, retries included) of each cause, the temporary
// failures and the rejections in two panels on their own scales, a legend
// with each cause's total over the period, the week labels, and accepted
// mail as a row of numbers. Each segment's tooltip also gives the distinct
// (client network, sender, recipient) triplets. The image holds no script
// and needs none; it is standalone (no XML declaration, so that it can also
// be inlined in HTML).
func (r *Report) WriteSVG(w io.Writer) error {
	ps := r.panels()
	n := len(r.Weeks)
	slot := float64(plotRight-plotLeft) / math.Max(float64(n), 1)
	barW := math.Min(slot*0.7, maxBarWidth)
	labelEvery := int(math.Ceil(minLabelSpan / slot))
	if labelEvery < 1 {
		labelEvery = 1
	}
	lastPanelBottom := ps[len(ps)-1].top + panelHeight
	acceptedY := lastPanelBottom + 66
	height := acceptedY + 50
	if !contains(r.Causes, Accepted) {
		height = lastPanelBottom + 80
	}

	s := &svgWriter{w: w}
	title := fmt.Sprintf("sekisho: temporary failures and rejections per ISO week, %s to %s (%s)", r.From, r.To, r.TimeZone)
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%s" viewBox="0 0 %d %s" role="img" aria-labelledby="sekisho-chart-title" font-family="DejaVu Sans, Verdana, Arial, sans-serif" font-size="12" fill="#222">`+"\n",
		svgWidth, num(height), svgWidth, num(height))
	s.printf(`<title id="sekisho-chart-title">%s</title>`+"\n", xmlText(title))
	s.printf(`<rect width="100%%" height="100%%" fill="#fff"/>` + "\n")
	s.printf(`<text x="%d" y="28" font-size="17" font-weight="bold">%s</text>`+"\n", plotLeft-70, xmlText(title))
	s.printf(`<text x="%d" y="50" fill="#555">%s</text>`+"\n", plotLeft-70, xmlText(
		"Bars: attempts (every reply, retries included). Each bar's tooltip also gives the distinct (client, sender, recipient) triplets."))

	for _, p := range ps {
		r.drawPanel(s, p, slot, barW, labelEvery)
	}

	if contains(r.Causes, Accepted) {
		s.printf(`<text x="%d" y="%s" text-anchor="end" font-weight="bold">accepted</text>`+"\n", plotLeft-8, num(acceptedY))
		s.printf(`<text x="%d" y="%s" fill="#555">%s</text>`+"\n", plotLeft-70, num(acceptedY+20), xmlText(
			"Accepted mail (recipients delivered to the next hop) per week, not drawn as a bar."))
		for i := range r.Weeks {
			wk := &r.Weeks[i]
			c := wk.count(Accepted)
			x := plotLeft + (float64(i)+0.5)*slot
			if i%labelEvery != 0 {
				continue
			}
			s.printf(`<text class="accepted" data-week="%s" data-attempts="%d"%s x="%s" y="%s" text-anchor="middle">%s<title>%s</title></text>`+"\n",
				xmlText(wk.Week), c.Attempts, soFarAttr(wk), num(x), num(acceptedY), xmlText(formatCount(c.Attempts)),
				xmlText(fmt.Sprintf("%s%s accepted: %d attempts, %d distinct", wk.Week, soFarTitle(wk), c.Attempts, c.Distinct)))
		}
	}
	s.printf("</svg>\n")
	return s.err
}

// The week in progress is drawn lighter, and labelled "so far" under its
// week: its bars are a part of a week.
func soFarAttr(w *Week) string {
	if w.SoFar {
		return ` data-so-far="true"`
	}
	return ""
}

func soFarFill(w *Week) string {
	if w.SoFar {
		return ` fill-opacity="0.55"`
	}
	return ""
}

func soFarTitle(w *Week) string {
	if w.SoFar {
		return " (so far)"
	}
	return ""
}

// drawPanel draws one panel: its title, value axis and grid, the stacked
// bars, the week labels under it and its legend.
func (r *Report) drawPanel(s *svgWriter, p chartPanel, slot, barW float64, labelEvery int) {
	bottom := p.top + panelHeight
	var max int64
	totals := map[string]int64{}
	for i := range r.Weeks {
		var sum int64
		for _, c := range p.causes {
			a := r.Weeks[i].count(c).Attempts
			sum += a
			totals[c] += a
		}
		if sum > max {
			max = sum
		}
	}
	top, step := niceScale(max)
	scale := panelHeight / float64(top)

	s.printf(`<g class="panel" data-panel="%s">`+"\n", p.name)
	s.printf(`<text x="%d" y="%s" font-size="14" font-weight="bold">%s</text>`+"\n", plotLeft-70, num(p.top-14), xmlText(p.title))
	// Grid and value axis.
	for v := int64(0); v <= top; v += step {
		y := bottom - float64(v)*scale
		s.printf(`<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n", plotLeft, plotRight, num(y), num(y), map[bool]string{true: "#444", false: "#ddd"}[v == 0])
		s.printf(`<text x="%d" y="%s" text-anchor="end" dominant-baseline="middle" fill="#444">%s</text>`+"\n", plotLeft-6, num(y), xmlText(formatCount(v)))
	}
	s.printf(`<text transform="translate(%d %s) rotate(-90)" text-anchor="middle" fill="#444">attempts per week</text>`+"\n", plotLeft-62, num(p.top+panelHeight/2))
	if max == 0 {
		s.printf(`<text x="%s" y="%s" text-anchor="middle" fill="#777">none in this period</text>`+"\n", num((plotLeft+plotRight)/2.0), num(p.top+panelHeight/2))
	}

	// Bars: one segment per (week, cause), zero-height ones included, so
	// that every week has the same causes in the same order.
	for i := range r.Weeks {
		wk := &r.Weeks[i]
		x := plotLeft + float64(i)*slot + (slot-barW)/2
		y := bottom
		var total int64
		for _, c := range p.causes {
			cc := wk.count(c)
			total += cc.Attempts
			h := float64(cc.Attempts) * scale
			y -= h
			s.printf(`<rect class="bar" data-panel="%s" data-week="%s" data-cause="%s" data-attempts="%d" data-distinct="%d"%s x="%s" y="%s" width="%s" height="%s" fill="%s"%s stroke="#fff" stroke-width="0.5"><title>%s</title></rect>`+"\n",
				p.name, xmlText(wk.Week), xmlText(c), cc.Attempts, cc.Distinct, soFarAttr(wk), num(x), num(y), num(barW), num(h), p.colours[c],
				soFarFill(wk), xmlText(fmt.Sprintf("%s%s %s: %d attempts, %d distinct", wk.Week, soFarTitle(wk), c, cc.Attempts, cc.Distinct)))
		}
		// The week's total above its bar, where there is room for it.
		if total > 0 && slot >= minLabelSpan {
			s.printf(`<text class="total" x="%s" y="%s" text-anchor="middle" fill="#444" font-size="10">%s</text>`+"\n",
				num(x+barW/2), num(y-4), xmlText(formatCount(total)))
		}
	}
	// Week labels: the ISO week, and its Monday below.
	for i := range r.Weeks {
		if i%labelEvery != 0 {
			continue
		}
		wk := &r.Weeks[i]
		x := plotLeft + (float64(i)+0.5)*slot
		s.printf(`<text class="week" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", num(x), num(bottom+17), xmlText(wk.Week))
		s.printf(`<text x="%s" y="%s" text-anchor="middle" fill="#666" font-size="10">%s</text>`+"\n", num(x), num(bottom+31), xmlText(wk.Start))
		if wk.SoFar {
			s.printf(`<text class="so-far" data-week="%s" x="%s" y="%s" text-anchor="middle" font-size="10" font-weight="bold">so far</text>`+"\n", xmlText(wk.Week), num(x), num(bottom+45))
		}
	}
	// Legend, top entry first as in the stack (the last cause is on top).
	for j := len(p.causes) - 1; j >= 0; j-- {
		c := p.causes[j]
		y := p.top + float64(len(p.causes)-1-j)*legendRow
		s.printf(`<g class="legend" data-cause="%s"><rect x="%d" y="%s" width="14" height="14" fill="%s" stroke="#444" stroke-width="0.5"/><text x="%d" y="%s">%s</text><text x="%d" y="%s" text-anchor="end" fill="#444">%s</text></g>`+"\n",
			xmlText(c), legendX, num(y), p.colours[c], legendX+20, num(y+11), xmlText(c), svgWidth-12, num(y+11), xmlText(formatCount(totals[c])))
	}
	s.printf(`<text x="%d" y="%s" fill="#666" font-size="10">totals over the period</text>`+"\n", legendX, num(p.top+float64(len(p.causes))*legendRow+8))
	s.printf("</g>\n")
}
