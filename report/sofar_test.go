package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"sekisho/internal/testenv"
	"sekisho/report"
)

// TestWeekSoFarInEveryFormat: the scripted weeks W45 to W48 read on the
// Thursday of W48 (2026-11-26 13:00 UTC), the week in progress, whose two
// accepted messages are counted so far. Every output shows them and says
// that the week is not complete: the text heads it "so far" with the time
// and no change column; JSON marks its rows so_far and says when it was
// made; CSV has so_far yes on its rows (no on the others); the SVG draws
// its bars and accepted count marked data-so-far with a "so far" label under
// each panel; the page heads its table "so far", unfolded, without change.
// Read back from JSON (what `sekisho report` does through a running
// gateway), the mark stays.
func TestWeekSoFarInEveryFormat(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		script(t, newCounter(b.store, testenv.NewClock()))
		r, err := report.Build(context.Background(), b.store, report.Options{Weeks: scriptWeeks, Now: at("2026-11-26 13:00:00")})
		if err != nil {
			t.Fatal(err)
		}

		var text bytes.Buffer
		r.WriteText(&text)
		head := "\n== 2026-W48 (2026-11-23 to 2026-11-29), so far (until 2026-11-26 13:00 UTC) ==\n"
		if !strings.Contains(text.String(), head) || strings.Count(text.String(), "so far") != 1 {
			t.Errorf("text: want the one heading %q:\n%s", head, text.String())
		}
		w48 := text.String()[strings.Index(text.String(), head):]
		w48 = w48[:strings.Index(w48, "\n== 2026-W47")]
		if !regexpLine(w48, "accepted", "2", "1") || !regexpLine(w48, "greylist", "0", "0") {
			t.Errorf("text: the week so far lacks its counts without change:\n%s", w48)
		}

		var j report.JSON
		var js bytes.Buffer
		r.WriteJSON(&js)
		if err := json.Unmarshal(js.Bytes(), &j); err != nil {
			t.Fatal(err)
		}
		if j.Generated != "2026-11-26T13:00:00Z" {
			t.Errorf("JSON generated %q", j.Generated)
		}
		for _, row := range j.Rows {
			if row.SoFar != (row.Week == "2026-W48") {
				t.Errorf("JSON row %+v: so_far %v", row, row.SoFar)
			}
			if row.Week == "2026-W48" && row.Cause == report.Accepted && (row.Attempts != 2 || row.Distinct != 1) {
				t.Errorf("JSON row %+v, want 2 attempts, 1 distinct", row)
			}
		}
		if !strings.Contains(js.String(), `"so_far": true`) || !strings.Contains(js.String(), `"so_far": false`) {
			t.Errorf("JSON lacks the so_far field:\n%s", js.String())
		}
		back, err := report.FromJSON(j)
		if err != nil || !back.Weeks[3].SoFar || back.Weeks[2].SoFar || back.Generated != r.Generated {
			t.Errorf("FromJSON lost the week so far: %v %+v", err, back)
		}

		// The Monday mail is about the last complete week.
		if r.Subject() != "sekisho weekly report 2026-W47" || r.SVGFileName() != "sekisho-report-2026-W47.svg" {
			t.Errorf("mail subject %q, attachment %q: want the last complete week, W47", r.Subject(), r.SVGFileName())
		}

		var csvOut bytes.Buffer
		r.WriteCSV(&csvOut)
		for _, want := range []string{"week,start,end,cause,attempts,distinct,so_far\n", "2026-W48,2026-11-23,2026-11-29,accepted,2,1,yes\n",
			"2026-W47,2026-11-16,2026-11-22,accepted,0,0,no\n"} {
			if !strings.Contains(csvOut.String(), want) {
				t.Errorf("CSV lacks %q:\n%s", want, csvOut.String())
			}
		}
		if strings.Count(csvOut.String(), ",yes\n") != len(report.Causes) {
			t.Errorf("CSV: %d rows so far, want %d", strings.Count(csvOut.String(), ",yes\n"), len(report.Causes))
		}

		root := decodeSVG(t, svgOf(t, r))
		labels, marked, unmarked := 0, 0, 0
		root.walk("", func(n *node, panel string) {
			switch {
			case n.attr("class") == "so-far":
				if n.attr("data-week") != "2026-W48" || strings.TrimSpace(n.text()) != "so far" || panel == "" {
					t.Errorf("SVG so-far label %+v in panel %q", n.Attrs, panel)
				}
				labels++
			case n.attr("class") == "bar" || n.attr("class") == "accepted":
				if (n.attr("data-so-far") == "true") != (n.attr("data-week") == "2026-W48") {
					t.Errorf("SVG %s of %s: data-so-far %q", n.attr("class"), n.attr("data-week"), n.attr("data-so-far"))
				}
				if n.attr("data-week") == "2026-W48" {
					marked++
					if n.attr("class") == "accepted" && n.attr("data-attempts") != "2" {
						t.Errorf("SVG accepted so far: %s attempts, want 2", n.attr("data-attempts"))
					}
				} else {
					unmarked++
				}
			}
		})
		if labels != 2 || marked != len(report.Causes) || unmarked != 3*len(report.Causes) {
			t.Errorf("SVG: %d so-far labels (want 2, one per panel), %d marked and %d unmarked bars and counts", labels, marked, unmarked)
		}

		rec := serve(t, loaded(r), "GET", "/report")
		page := rec.Body.String()
		if !strings.Contains(page, `<details id="2026-W48" open>`) || !strings.Contains(page, `<details id="2026-W47" open>`) ||
			strings.Contains(page, `<details id="2026-W46" open>`) {
			t.Errorf("page: the week so far and the last complete week should be unfolded, no other:\n%s", page)
		}
		sum := page[strings.Index(page, `<details id="2026-W48"`):]
		sum = sum[:strings.Index(sum, "</table>")]
		if !strings.Contains(sum, `<summary>2026-W48 (2026-11-23 to 2026-11-29), <span class="so-far">so far</span> (until 2026-11-26 13:00 UTC)</summary>`) ||
			!hasRow(rows(sum), "accepted", "accepted", "2", "1", "") {
			t.Errorf("page: the week so far is not headed so, or lacks its counts without change:\n%s", sum)
		}
	})
}
