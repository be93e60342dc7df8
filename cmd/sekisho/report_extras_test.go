package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/config"
	"sekisho/greylist"
	"sekisho/internal/harness"
	"sekisho/report"
)

// reportMailConfig is a config for `sekisho report` on the bolt file path
// whose route for campus.test goes to hop.
func reportMailConfig(t *testing.T, path string, hop *harness.NextHop) string {
	t.Helper()
	configFile, _ := writeReportConfig(t, "store:\n  path: "+path+"\nhostname: mx1.campus.test\nlocal_domains: [campus.test]\n"+
		"routes:\n  - {domains: [campus.test], next_hops: [\"smtp://"+hop.Addr+"\"]}\n")
	return configFile
}

// mailParts parses a received report mail: its header and its parts'
// content types and decoded bodies.
func mailParts(t *testing.T, data []byte) (mail.Header, []string, [][]byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	var bodies [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = p
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			r = base64.NewDecoder(base64.StdEncoding, p)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		bodies = append(bodies, b)
	}
	return m.Header, types, bodies
}

// TestReportCommandMailsAndWritesSVG: `sekisho report -svg F -mail-to A`
// prints the report, writes the chart and mails the report to a real next
// hop: the message arrives from the null sender, for A, as multipart/mixed
// with the text report and the SVG chart.
func TestReportCommandMailsAndWritesSVG(t *testing.T) {
	hop := harness.StartNextHop(t, false)
	configFile := reportMailConfig(t, boltWithCounts(t), hop)
	svgFile := filepath.Join(t.TempDir(), "chart.svg")

	code, out, errs := runCmd("report", "-config", configFile, "-from", "2026-11-02", "-to", "2026-11-08",
		"-svg", svgFile, "-mail-to", "postmaster@campus.test")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "add mailtypo.net") {
		t.Errorf("the report is no longer printed:\n%s", out)
	}

	svg, err := os.ReadFile(svgFile)
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		XMLName xml.Name
		Rects   []struct {
			Class string `xml:"class,attr"`
			Cause string `xml:"data-cause,attr"`
			N     string `xml:"data-attempts,attr"`
		} `xml:"g>rect"`
	}
	if err := xml.Unmarshal(svg, &root); err != nil || root.XMLName.Local != "svg" {
		t.Fatalf("-svg file: %v %v", err, root.XMLName)
	}
	greylisted := false
	for _, r := range root.Rects {
		greylisted = greylisted || (r.Class == "bar" && r.Cause == "greylist" && r.N == "4")
	}
	if !greylisted {
		t.Error("the -svg chart lacks the week's 4 greylist attempts")
	}
	if fi, err := os.Stat(svgFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("-svg file mode: %v %v", fi.Mode(), err)
	}

	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages at the next hop, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "" || len(m.To) != 1 || m.To[0] != "postmaster@campus.test" {
		t.Errorf("envelope from %q to %q", m.From, m.To)
	}
	h, types, bodies := mailParts(t, m.Data)
	if h.Get("Subject") != "sekisho weekly report 2026-W45" || h.Get("From") != "sekisho <sekisho@mx1.campus.test>" ||
		h.Get("To") != "<postmaster@campus.test>" || h.Get("Date") == "" || !strings.HasSuffix(h.Get("Message-ID"), "@mx1.campus.test>") {
		t.Errorf("header: %v", h)
	}
	if strings.Join(types, " ") != "text/plain image/svg+xml" {
		t.Fatalf("parts %q", types)
	}
	if !strings.Contains(string(bodies[0]), "sekisho baddomains -file") || !strings.Contains(string(bodies[0]), "add mailtypo.net") {
		t.Errorf("text part:\n%s", bodies[0])
	}
	if !bytes.Equal(bodies[1], svg) {
		t.Error("the attached chart is not the -svg chart")
	}
}

// TestReportMailFailures: a recipient without a route, one the next hop
// refuses and a next hop that is down all fail the command (exit 1, the
// reason on stderr), after the report was printed.
func TestReportMailFailures(t *testing.T) {
	hop := harness.StartNextHop(t, false)
	hop.OnRcpt = func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	path := boltWithCounts(t)
	configFile := reportMailConfig(t, path, hop)
	for to, want := range map[string]string{
		"admin@elsewhere.example": "no route for elsewhere.example",
		"nobody@campus.test":      "no such user",
		"not an address":          "is not a mail address",
		"admin@[192.0.2.1]":       "needs a domain name",
	} {
		code, out, errs := runCmd("report", "-config", configFile, "-weeks", "1", "-mail-to", to)
		if code != 1 || !strings.Contains(errs, want) || !strings.Contains(out, "sekisho report") {
			t.Errorf("-mail-to %s: exit %d, stderr %q, want %q (stdout %d bytes)", to, code, errs, want, len(out))
		}
	}
	hop.Close()
	code, _, errs := runCmd("report", "-config", configFile, "-weeks", "1", "-mail-to", "admin@campus.test")
	if code != 1 || !strings.Contains(errs, "4.4.1") {
		t.Errorf("next hop down: exit %d, stderr %q", code, errs)
	}
	if n := len(hop.Messages()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
}

// TestReportPagesOnHTTPListener: /report* are served from the store with
// the bad list in force, everything else still by the listener's own
// handler; a store that cannot be read is a 503.
func TestReportPagesOnHTTPListener(t *testing.T) {
	path := boltWithCounts(t)
	store, err := greylist.OpenBolt(path, greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	configFile, _ := writeReportConfig(t, "store:\n  path: "+path+"\n")
	cfg, err := config.Load(configFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDeps(&cfg, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next "+r.URL.Path) })
	h := withReportPages(next, func(ctx context.Context, weeks []time.Time) (*report.Report, error) {
		return loadReport(ctx, store, &cfg, d.badDomains, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), weeks) // W46 is the last complete week, W47 the week so far
	})

	get := func(h http.Handler, p string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		return rec
	}
	rec := get(h, "/report")
	page := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(page, "add mailtypo.net") || strings.Contains(page, "add listed.net") ||
		!strings.Contains(page, "2026-W45") {
		t.Errorf("/report: %d\n%s", rec.Code, page)
	}
	if rec := get(h, "/metrics"); rec.Body.String() != "next /metrics" {
		t.Errorf("/metrics: %q", rec.Body.String())
	}
	if rec := get(h, "/report.json"); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"cause": "greylist"`) {
		t.Errorf("/report.json: %d", rec.Code)
	}
	// By default the week in progress comes last, so far: its LDAP outage
	// of the Saturday shows on the Sunday.
	if want := `<summary>2026-W47 (2026-11-16 to 2026-11-22), <span class="so-far">so far</span> (until 2026-11-22 10:00 UTC)</summary>`; !strings.Contains(page, want) {
		t.Errorf("/report lacks %s:\n%s", want, page)
	}
	rec = get(h, "/report.csv")
	if body := rec.Body.String(); !strings.Contains(body, "\n2026-W47,2026-11-16,2026-11-22,ldap_tempfail,2,1,yes\n") ||
		!strings.HasPrefix(strings.SplitN(body, "\n", 3)[1], "2026-W38,") {
		t.Errorf("/report.csv (default weeks W38 to W47, W47 so far):\n%s", body)
	}
	// The forms of ?from=&to= that docs/report.md shows: both dates, widened
	// to whole weeks; one alone, or a date that is not YYYY-MM-DD, is 400.
	for _, c := range []struct {
		query string
		weeks int
		want  []string
	}{
		{"?from=2026-11-03&to=2026-11-03", 1, []string{"\n2026-W45,2026-11-02,2026-11-08,greylist,4,1,no\n"}},
		{"?from=2026-11-08&to=2026-11-20", 3, []string{"\n2026-W45,", "\n2026-W46,", "\n2026-W47,2026-11-16,2026-11-22,ldap_tempfail,2,1,yes\n"}},
	} {
		rec := get(h, "/report.csv"+c.query)
		body := rec.Body.String()
		if n := strings.Count(body, "\n") - 1; rec.Code != 200 || n != c.weeks*len(report.Causes) {
			t.Errorf("/report.csv%s: %d, %d rows, want %d weeks'", c.query, rec.Code, n, c.weeks)
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("/report.csv%s lacks %q:\n%s", c.query, w, body)
			}
		}
	}
	for _, q := range []string{"?from=2026-11-03", "?to=2026-11-03", "?from=3.11.2026&to=2026-11-10", "?from=2026-11-10&to=2026-11-03"} {
		if rec := get(h, "/report"+q); rec.Code != 400 {
			t.Errorf("/report%s: %d, want 400", q, rec.Code)
		}
	}

	// serve's loader, when the store could not be opened, and a store
	// that fails when read.
	bad := cfg
	bad.Store = config.StoreConfig{Path: "/dev/null/state.db"}
	bd := &deps{log: discardLog(), badDomains: d.badDomains}
	rec = get(withReportPages(next, reportLoader(&bad, bd)), "/report")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "could not be opened") {
		t.Errorf("store not opened: %d %q", rec.Code, rec.Body.String())
	}
	broken := func(ctx context.Context, _ []time.Time) (*report.Report, error) {
		return loadReport(ctx, unavailableStore{err: errors.New("redis: dial tcp 127.0.0.1:1: connection refused")}, &cfg, nil, time.Now(), nil)
	}
	rec = get(withReportPages(next, broken), "/report.csv")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "connection refused") || strings.Contains(rec.Body.String(), "week,") {
		t.Errorf("store down: %d %q", rec.Code, rec.Body.String())
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
