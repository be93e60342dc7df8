// Command reportdemo makes the example report of docs/report.md: nine weeks
// of scripted traffic counted by report.Counter (with its own clock) into a
// temporary bbolt store, read back with report.Build, and written as the
// SVG chart and the /report page (through report.Handler). The screenshots
// in docs/ are taken of its output by scripts/screenshots.sh.
//
// Usage:
//
//	go run ./scripts/reportdemo -out DIR   # writes DIR/report.svg, DIR/report.html
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"sekisho/greylist"
	"sekisho/report"
)

func main() {
	out := flag.String("out", ".", "directory for report.svg and report.html")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "reportdemo:", err)
		os.Exit(1)
	}
}

// The report is made on Monday 2026-11-23 at 07:00 UTC (the timer's hour):
// its weeks are 2026-W39 to 2026-W47.
var now = time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC)

const weeks = 9

func run(out string) error {
	dir, err := os.MkdirTemp("", "reportdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := greylist.OpenBolt(filepath.Join(dir, "state.db"), greylist.BoltOptions{})
	if err != nil {
		return err
	}
	defer store.Close()

	clock := now
	c := report.NewCounter(store, report.CounterOptions{
		Now: func() time.Time { return clock }, FlushInterval: -1, SweepInterval: -1,
	})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2026, 11))
	mondays := report.LastWeeks(now, weeks)
	for w, monday := range mondays {
		for day := range 7 {
			clock = monday.AddDate(0, 0, day).Add(9 * time.Hour)
			traffic(c, rng, w, day, clock)
			if err := c.Flush(ctx); err != nil {
				return err
			}
		}
	}
	clock = now
	if err := c.Close(ctx); err != nil {
		return err
	}

	// The bad list now: its own domains, and one NXDOMAIN typo already
	// added after an earlier report.
	listed := map[string]bool{"hotmial.com": true}
	for _, d := range badDomains {
		listed[d] = true
	}
	rep, err := report.Build(ctx, store, report.Options{
		Weeks: mondays, Listed: func(d string) bool { return listed[d] },
	})
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "report.svg"))
	if err != nil {
		return err
	}
	if err := rep.WriteSVG(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	rec := httptest.NewRecorder()
	h := report.Handler(func(context.Context, []time.Time) (*report.Report, error) { return rep, nil })
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/report", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("/report: %d %s", rec.Code, rec.Body)
	}
	return os.WriteFile(filepath.Join(out, "report.html"), rec.Body.Bytes(), 0o644)
}

// Domains DNS says do not exist (typos and invented names), and domains on
// the bad list.
var (
	nxDomains  = []string{"gmial.com", "gmial.com", "gmial.com", "hotmial.com", "yahooo.co.jp", "outlok.jp", "mail.no-such-shop.net", "promo-offers-2026.biz"}
	badDomains = []string{"example.com", "mailer.invalid", "localhost.localdomain"}
)

// traffic is one day of week w (0 is the oldest): steady background, and
// the incidents the chart should show.
func traffic(c *report.Counter, rng *rand.Rand, w, day int, t time.Time) {
	emit := func(cause string, n, retries int, domains []string) {
		for i := range n {
			client := netip.AddrFrom4([4]byte{byte(20 + rng.IntN(200)), byte(rng.IntN(256)), byte(rng.IntN(256)), 7})
			dom := "sender.example.net"
			if domains != nil {
				dom = domains[rng.IntN(len(domains))]
			}
			e := report.Event{
				Time: t, Cause: cause, Listener: "smtp", Client: client,
				Sender:    fmt.Sprintf("u%d@%s", rng.IntN(400), dom),
				Recipient: fmt.Sprintf("user%d@campus.example", i%300),
			}
			if domains != nil {
				e.Domain = dom
			}
			for range 1 + retries {
				c.Record(e)
			}
		}
	}
	jitter := func(n int) int { return n + rng.IntN(n/3+1) }
	weekend := day >= 5

	emit(report.Accepted, jitter(map[bool]int{true: 250, false: 700}[weekend]), 0, nil)
	emit(report.Greylist, jitter(150), 1+rng.IntN(2), nil)
	emit(report.NXDomain, jitter(25), 1, nxDomains)
	emit(report.DNSTempfail, jitter(4), 1, nil)
	emit(report.OtherTempfail, jitter(2), 0, nil)
	emit(report.NexthopTempfail, rng.IntN(3), 1, nil)
	emit(report.DNSBL, jitter(220), 0, nil)
	emit(report.SPF, jitter(25), 0, nil)
	emit(report.Header, jitter(15), 0, nil)
	emit(report.Pregreet, jitter(45), 0, nil)
	emit(report.RelayDenied, jitter(30), 0, nil)
	emit(report.UnknownUser, jitter(40), 0, nil)
	emit(report.BadDomain, jitter(18), 0, badDomains)
	emit(report.AuthFailure, jitter(6), 0, nil)

	switch {
	case w == 2 && (day == 1 || day == 2): // the resolvers answered SERVFAIL for two days
		emit(report.DNSTempfail, 160, 2, nil)
	case w == 4 && day == 2: // the LDAP servers were down on Wednesday afternoon
		emit(report.LDAPTempfail, 380, 2, nil)
	case w == 6 && day == 5: // a password-guessing run against the MSA
		emit(report.AuthFailure, 900, 0, nil)
	case w == 7 && day == 3: // the campus mail server's maintenance window
		emit(report.NexthopTempfail, 240, 3, nil)
	}
}
