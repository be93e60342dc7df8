package main

// The report for people: `sekisho report -svg FILE` (the chart), `sekisho
// report -mail-to ADDR` (the Monday mail) and the /report pages on the http
// listener (docs/report.md).
//
// The mail goes straight to the next hop of the recipient's route
// (relay.Router.Begin, as the alarm mails do), not through a running
// gateway's smtp listener: it needs no gateway running (a report about an
// outage still goes out), no trusted_networks entry for loopback, and it
// is not counted as a decision in the report it carries. The price: it is
// not DKIM-signed and passes no check of ours, so send it to a mailbox on
// campus (a route to the internal servers), not to the Internet. The
// envelope sender is the null reverse-path, so that an undeliverable report
// never bounces back to a sekisho that holds no mailbox; the header From
// is sekisho@<hostname>.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"sekisho/config"
	"sekisho/greylist"
	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/policy"
	"sekisho/relay"
	"sekisho/report"
)

// reportMailTimeout bounds the sending of the report mail: the call-ahead
// and the data.
const reportMailTimeout = 5 * time.Minute

// reportExtras does what -svg and -mail-to ask once the report is made;
// it returns the exit status.
func reportExtras(r *report.Report, cfg *config.Config, svgFile, mailTo string, stderr io.Writer) int {
	status := 0
	if svgFile != "" {
		if err := writeSVGFile(r, svgFile); err != nil {
			fmt.Fprintln(stderr, "sekisho report: -svg:", err)
			status = 1
		}
	}
	if mailTo != "" {
		ctx, cancel := context.WithTimeout(context.Background(), reportMailTimeout)
		defer cancel()
		if err := mailReport(ctx, cfg, r, mailTo, time.Now()); err != nil {
			fmt.Fprintln(stderr, "sekisho report: -mail-to:", err)
			status = 1
		}
	}
	return status
}

// writeSVGFile writes the chart to path atomically (a temporary file in
// the same directory, renamed), so that a web server publishing it never
// serves half a chart.
func writeSVGFile(r *report.Report, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sekisho-report-*.svg")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := r.WriteSVG(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// parseMailTo parses the -mail-to address: a plain addr-spec with a domain,
// "admin@campus.example".
func parseMailTo(s string) (mailaddr.Address, error) {
	a, rest, err := mailaddr.ParsePath("<"+s+">", false, false, true)
	switch {
	case err != nil:
		return a, fmt.Errorf("%q is not a mail address (user@domain): %v", s, err)
	case rest != "":
		return a, fmt.Errorf("%q is not a mail address (user@domain)", s)
	case a.Domain == "" || a.IsLiteral():
		return a, fmt.Errorf("%q: the address needs a domain name, which the routes are matched against", s)
	}
	return a, nil
}

// reportHostname is the host in the report mail's From and Message-ID:
// the configured hostname, or the system's when that is the default
// localhost.
func reportHostname(cfg *config.Config) string {
	if h := cfg.Hostname; h != "" && h != "localhost" {
		return h
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// mailReport sends the report (text, SVG attached) to the next hop of the
// route of to's domain, as configured in routes.
func mailReport(ctx context.Context, cfg *config.Config, r *report.Report, to string, now time.Time) error {
	rcpt, err := parseMailTo(to)
	if err != nil {
		return err
	}
	router := gatewayConfig(cfg).Router
	resolver, err := lookup.NewResolver(lookup.DNSConfig{
		Resolvers: cfg.DNS.Resolvers, Timeout: cfg.DNS.Timeout, Attempts: cfg.DNS.Attempts, Canary: cfg.DNS.Canary,
	})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	router.MailHosts = resolver
	domain := mailaddr.Fold(rcpt.Domain)
	route := router.Lookup(domain)
	if route < 0 {
		return fmt.Errorf("no route for %s in routes: the report goes to the next hop of the recipient's route", domain)
	}
	var msg bytes.Buffer
	if err := r.WriteMail(&msg, report.MailHeader{From: "sekisho@" + reportHostname(cfg), To: rcpt.String(), Date: now}); err != nil {
		return err
	}
	tx, err := router.Begin(ctx, route, domain, relay.Envelope{Size: int64(msg.Len())})
	if err != nil {
		return err
	}
	defer tx.Close()
	if err := tx.Rcpt(ctx, rcpt, relay.RcptDSN{}); err != nil {
		tx.Abort()
		return fmt.Errorf("%s refused %s: %w", tx.Hop(), rcpt.String(), err)
	}
	if err := tx.Data(ctx, &msg); err != nil {
		return fmt.Errorf("%s: %w", tx.Hop(), err)
	}
	return nil
}

// reportPagesTimeout bounds the reading of the store for one /report
// request (the http listener's write timeout is 30s).
const reportPagesTimeout = 15 * time.Second

// reportLoader is the source of the /report pages: the last
// report.DefaultWeeks complete weeks read from the state store at each
// request, the NXDOMAIN domains marked against the bad list in force.
// It opens the state store now (once, shared with greylisting); if that
// fails, every request answers 503 with the reason.
func reportLoader(cfg *config.Config, d *deps) func(context.Context, []time.Time) (*report.Report, error) {
	store, openErr := d.stateStore(cfg)
	return func(ctx context.Context, weeks []time.Time) (*report.Report, error) {
		if openErr != nil {
			return nil, fmt.Errorf("the state store could not be opened: %w", openErr)
		}
		return loadReport(ctx, store, cfg, d.badDomains, time.Now(), weeks)
	}
}

// loadReport builds the report of the /report pages from store.
func loadReport(ctx context.Context, store greylist.Counts, cfg *config.Config, bad *policy.BadDomains, now time.Time, weeks []time.Time) (*report.Report, error) {
	if store == nil {
		return nil, errors.New("no state store")
	}
	ctx, cancel := context.WithTimeout(ctx, reportPagesTimeout)
	defer cancel()
	if weeks == nil {
		weeks = report.RecentWeeks(now, report.DefaultWeeks)
	}
	opts := report.Options{Weeks: weeks, Now: now}
	var list *policy.BadDomainList
	if bad != nil {
		list = bad.List()
	}
	opts.Listed = func(d string) bool { _, ok := policy.MatchBadDomain(list, d); return ok }
	if dc := cfg.Checks.Domain; dc.BadDomains != "" && !dc.Off {
		opts.BadDomainsFile = dc.BadDomains
	}
	return report.Build(ctx, store, opts)
}

// withReportPages serves report.Paths from h and everything else from next
// (the http listener's /metrics, /healthz, /readyz).
func withReportPages(next http.Handler, load func(context.Context, []time.Time) (*report.Report, error)) http.Handler {
	mux := http.NewServeMux()
	h := report.Handler(load)
	for _, p := range report.Paths {
		mux.Handle(p, h)
	}
	mux.Handle("/", next)
	return mux
}
