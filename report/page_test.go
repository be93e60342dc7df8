package report_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"sekisho/report"
)

func serve(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func loaded(r *report.Report) http.Handler {
	return report.Handler(func(context.Context, []time.Time) (*report.Report, error) { return r, nil })
}

// cellsRe finds a table row's cells.
var cellsRe = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
var cellRe = regexp.MustCompile(`(?s)<t[dh][^>]*>(.*?)</t[dh]>`)

// rows returns the page's table rows as their cells' text.
func rows(page string) [][]string {
	var out [][]string
	for _, m := range cellsRe.FindAllStringSubmatch(page, -1) {
		var cells []string
		for _, c := range cellRe.FindAllStringSubmatch(m[1], -1) {
			text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(c[1], "")
			cells = append(cells, html.UnescapeString(strings.ReplaceAll(text, "\u2009", "")))
		}
		out = append(out, cells)
	}
	return out
}

func hasRow(rs [][]string, want ...string) bool {
	for _, r := range rs {
		if strings.Join(r, "|") == strings.Join(want, "|") {
			return true
		}
	}
	return false
}

// TestPageTablesAndAddLines: /report has the chart inline, a table per
// week with attempts, distinct and the change from the week before, the
// top domains, and a ready add line for each NXDOMAIN domain not listed —
// not for listed ones, nor for names no shell should see.
func TestPageTablesAndAddLines(t *testing.T) {
	r := chartReport()
	r.BadDomainsFile = "/etc/sekisho/bad domains.txt"
	rec := serve(t, loaded(r), http.MethodGet, "/report")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	page := rec.Body.String()
	if !strings.Contains(page, "<svg") || !strings.Contains(page, `data-cause="greylist"`) {
		t.Error("the chart is not inline")
	}
	rs := rows(page)
	// greylist is cause 6: 10*(w+1)*7 attempts; W47 70*3=210 against 140.
	for _, want := range [][]string{
		{"greylist", "4xx", "210", "105", "+70 (+50%)"},
		{"greylist", "4xx", "140", "70", "+70 (+100%)"},
		{"greylist", "4xx", "70", "35", ""}, // the first week has no week before
		{"ldap_tempfail", "4xx", "0", "0", "="},
		{"dnsbl", "5xx", "240", "120", "+80 (+50%)"},
		{"accepted", "accepted", "30", "15", "+10 (+50%)"},
		{"1", "gmial.com", "40", "12", "no"},
		{"3", "hotmial.com", "7", "2", "yes"},
		{"gmial.com", "120", "3", "2026-W47"}, // candidates over the period
		{"1", "campus.example", "8", "6"},     // spoofed From domains: no "listed" column
	} {
		if !hasRow(rs, want...) {
			t.Errorf("no row %q", want)
		}
	}
	if !strings.Contains(page, "<h3>Top spoofed From domains (refused by DMARC)</h3>") {
		t.Error("no top spoofed From domains")
	}
	if n := strings.Count(page, "<details"); n != len(r.Weeks) {
		t.Errorf("%d week sections, want %d", n, len(r.Weeks))
	}
	if !strings.Contains(page, "sekisho baddomains -file &#39;/etc/sekisho/bad domains.txt&#39; add gmial.com\n") {
		t.Errorf("no add line for gmial.com (with the file quoted for the shell)")
	}
	if strings.Contains(page, "add hotmial.com") {
		t.Error("an add line for a domain already listed")
	}
	if strings.Contains(page, "add &lt;script") || strings.Contains(page, "add <script") {
		t.Error("an add line for a name that is not a host name")
	}
}

// TestPageEscapesHostileDomain: a refused domain that is markup appears
// only escaped; the page has no script at all, and no form.
func TestPageEscapesHostileDomain(t *testing.T) {
	r := chartReport()
	r.Weeks[2].Top[1].Domains = append(r.Weeks[2].Top[1].Domains, report.DomainCount{Domain: `"><img src=x onerror=alert(1)>`, Attempts: 1})
	page := serve(t, loaded(r), http.MethodGet, "/report").Body.String()
	for _, bad := range []string{"<script", "<img", "<form", "<input", "<button", "javascript:"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;.example") {
		t.Error("the hostile NXDOMAIN name is not shown (escaped)")
	}
	if !strings.Contains(page, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Error("the hostile bad-list name is not shown (escaped)")
	}
	// It is listed as a candidate, with a note instead of a command.
	if !strings.Contains(page, "is not a valid host name: check it by hand") {
		t.Error("no note for the candidate that is not a host name")
	}
}

// TestAddLine: only host names get a command line, in their ASCII form.
func TestAddLine(t *testing.T) {
	for domain, want := range map[string]string{
		"gmial.com":               "sekisho baddomains add gmial.com",
		"GMIAL.com.":              "sekisho baddomains add gmial.com",
		"bücher.example":          "sekisho baddomains add xn--bcher-kva.example",
		"x.com; rm -rf /":         "",
		"$(reboot).example":       "",
		"a.example\nrm -rf /":     "",
		"[192.0.2.1]":             "",
		"<script>.example":        "",
		"-leading-hyphen.example": "",
	} {
		if got := report.AddLine("", domain); got != want {
			t.Errorf("AddLine(%q) = %q, want %q", domain, got, want)
		}
	}
	if got := report.AddLine("/etc/it's.txt", "a.example"); got != `sekisho baddomains -file '/etc/it'\''s.txt' add a.example` {
		t.Errorf("quoted file: %s", got)
	}
}

// TestHandlerStoreDown: when the store cannot be read every path answers
// 503 with the reason, and no table, chart or zero.
func TestHandlerStoreDown(t *testing.T) {
	h := report.Handler(func(context.Context, []time.Time) (*report.Report, error) {
		return nil, errors.New("redis: connection refused")
	})
	for _, p := range report.Paths {
		rec := serve(t, h, http.MethodGet, p)
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: %d, want 503", p, rec.Code)
		}
		if !strings.Contains(body, "state store") || !strings.Contains(body, "redis: connection refused") {
			t.Errorf("%s: %q does not say why", p, body)
		}
		if strings.Contains(body, "<table") || strings.Contains(body, "<svg") || strings.Contains(body, "attempts") {
			t.Errorf("%s: a report despite the error: %q", p, body)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Errorf("%s: content type %q", p, rec.Header().Get("Content-Type"))
		}
	}
	// A nil report without an error is no report either.
	if rec := serve(t, loaded(nil), http.MethodGet, "/report"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("nil report: %d", rec.Code)
	}
}

// TestHandlerFormatsAndMethods: the SVG, CSV and JSON are the report's;
// the pages are read-only and say so to browsers.
func TestHandlerFormatsAndMethods(t *testing.T) {
	r := chartReport()
	h := loaded(r)

	rec := serve(t, h, http.MethodGet, "/report.svg")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/svg+xml; charset=utf-8" {
		t.Errorf("svg: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if len(bars(t, decodeSVG(t, rec.Body.Bytes()))) != 3*(len(report.Causes)-1) {
		t.Error("svg: not the report's chart")
	}

	rec = serve(t, h, http.MethodGet, "/report.csv")
	recs, err := csv.NewReader(rec.Body).ReadAll()
	if rec.Code != 200 || err != nil || len(recs) != 1+3*len(report.Causes) || rec.Header().Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Errorf("csv: %d %v %d records %q", rec.Code, err, len(recs), rec.Header().Get("Content-Type"))
	}

	rec = serve(t, h, http.MethodGet, "/report.json")
	var j report.JSON
	if err := json.Unmarshal(rec.Body.Bytes(), &j); err != nil || rec.Code != 200 || len(j.Rows) != 3*len(report.Causes) || j.From != r.From {
		t.Errorf("json: %d %v %+v", rec.Code, err, j)
	}

	for _, p := range report.Paths {
		rec := serve(t, h, http.MethodPost, p)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %d, Allow %q", p, rec.Code, rec.Header().Get("Allow"))
		}
		rec = serve(t, h, http.MethodGet, p)
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
	}
	if rec := serve(t, h, http.MethodGet, "/report/../metrics"); rec.Code != http.StatusNotFound {
		t.Errorf("other path: %d, want 404", rec.Code)
	}
}

// TestFromJSONRoundTrip: what /report.json serves rebuilds the same report
// (sekisho report reads a running gateway's counts this way), and the
// from/to of a request reach the loader as the Mondays of the period.
func TestFromJSONRoundTrip(t *testing.T) {
	r := chartReport()
	back, err := report.FromJSON(r.JSON())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(r.JSON())
	b, _ := json.Marshal(back.JSON())
	if string(a) != string(b) {
		t.Errorf("round trip changed the report:\n%s\n%s", a, b)
	}
	var text1, text2 strings.Builder
	r.Write(&text1, "text")
	back.Write(&text2, "text")
	if text1.String() != text2.String() {
		t.Errorf("the text report differs after the round trip")
	}
	if _, err := report.FromJSON(report.JSON{Version: 99}); err == nil {
		t.Error("an unknown JSON version was accepted")
	}

	var got []time.Time
	h := report.Handler(func(_ context.Context, weeks []time.Time) (*report.Report, error) { got = weeks; return r, nil })
	if rec := serve(t, h, http.MethodGet, "/report.json?from=2026-11-10&to=2026-11-22"); rec.Code != http.StatusOK {
		t.Fatalf("from/to: %d", rec.Code)
	}
	if len(got) != 2 || got[0].Format(time.DateOnly) != "2026-11-09" || got[1].Format(time.DateOnly) != "2026-11-16" {
		t.Errorf("weeks %v, want the Mondays 2026-11-09 and 2026-11-16", got)
	}
	if rec := serve(t, h, http.MethodGet, "/report.json?from=2026-11-22&to=2026-11-10"); rec.Code != http.StatusBadRequest {
		t.Errorf("to before from: %d, want 400", rec.Code)
	}
	got = []time.Time{{}}
	serve(t, h, http.MethodGet, "/report.json")
	if got != nil {
		t.Errorf("no from/to: weeks %v, want nil (the loader's default)", got)
	}
}
