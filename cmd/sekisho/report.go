package main

// sekisho report, the report settings, and the counter the gateway records
// its decisions to (docs/report.md).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"sekisho/config"
	"sekisho/greylist"
	"sekisho/policy"
	"sekisho/report"
)

// newCounter is the report.Counter of `sekisho serve` on the state store
// (gateway.Config.Recorder); close it after the listeners, before the store.
func newCounter(c *config.Config, store greylist.Counts, log *slog.Logger) *report.Counter {
	return report.NewCounter(store, report.CounterOptions{
		FlushInterval: c.Report.FlushInterval,
		MaxPending:    c.Report.MaxPending,
		Keep:          c.Report.Keep,
		IPv4Prefix:    c.Checks.Greylist.IPv4Prefix,
		IPv6Prefix:    c.Checks.Greylist.IPv6Prefix,
		Logger:        log,
	})
}

const reportUsage = `usage: sekisho report [-config FILE] [-weeks N | -from DATE -to DATE] [-format text|csv|json]
                      [-svg FILE] [-mail-to ADDR]

Counts of every deferral and rejection by cause, and of accepted mail, per
ISO week (Monday to Sunday, UTC): attempts and distinct (client network,
sender, recipient) triplets, and the week's top NXDOMAIN and bad-list
domains. Default: the last complete week and the 8 before it, then the
week in progress, marked "so far". -from and -to (YYYY-MM-DD) are widened to
whole weeks; a week that holds today is marked "so far". See docs/report.md.

The state store must be readable: Redis at any time, the embedded file
while sekisho serve is not running on it. A store that cannot be read is an
error (exit 1), never a report of zeros.

`

// reportNow is the clock of `sekisho report` (tests set it).
var reportNow = time.Now

// reportStoreTimeout bounds the reading of the store.
const reportStoreTimeout = 30 * time.Second

// runReport is `sekisho report`.
func runReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reportUsage); fs.PrintDefaults() }
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	weeks := fs.Int("weeks", report.DefaultWeeks, "number of complete weeks before the week in progress (which is shown too, \"so far\")")
	from := fs.String("from", "", "first day (YYYY-MM-DD, UTC), with -to")
	to := fs.String("to", "", "last day (YYYY-MM-DD, UTC), with -from")
	format := fs.String("format", "text", "text, csv or json")
	svgFile := fs.String("svg", "", "also write the SVG chart to `FILE`")
	mailTo := fs.String("mail-to", "", "also mail the text report with the chart attached to `ADDR`, through the next hop of its route")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintln(stderr, "sekisho report:", msg)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if !slices.Contains(report.Formats, *format) {
		return usageErr(fmt.Sprintf("-format %q: want text, csv or json", *format))
	}
	var mondays []time.Time
	now := reportNow()
	switch {
	case (*from == "") != (*to == ""):
		return usageErr("-from and -to go together")
	case *from != "":
		f, err1 := time.Parse(time.DateOnly, *from)
		t, err2 := time.Parse(time.DateOnly, *to)
		switch {
		case err1 != nil || err2 != nil:
			return usageErr("-from and -to are dates, YYYY-MM-DD")
		case t.Before(f):
			return usageErr("-to is before -from")
		case t.Sub(f) > 10*366*24*time.Hour:
			return usageErr("-from to -to spans more than 10 years")
		}
		mondays = report.WeeksBetween(f, t)
	default:
		if *weeks < 1 || *weeks > 520 {
			return usageErr("-weeks must be between 1 and 520")
		}
		mondays = report.RecentWeeks(now, *weeks)
	}

	cfg, err := config.Load(*path) // "": the embedded defaults
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "sekisho report:", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	store, err := openReportStore(&cfg.Store, log)
	if errors.Is(err, errStoreHeld) && cfg.Listen.HTTP != "" {
		// The running gateway holds the embedded store: ask it.
		r, herr := reportOverHTTP(cfg.Listen.HTTP, mondays)
		if herr != nil {
			return fail(fmt.Errorf("%v; and the running gateway's %s could not give it either: %v", err, cfg.Listen.HTTP, herr))
		}
		if dc := cfg.Checks.Domain; dc.BadDomains != "" && !dc.Off {
			r.BadDomainsFile = dc.BadDomains
		}
		if err := r.Write(stdout, *format); err != nil {
			return fail(err)
		}
		return reportExtras(r, &cfg, *svgFile, *mailTo, stderr)
	}
	if err != nil {
		return fail(err)
	}
	defer store.Close()

	opts := report.Options{Weeks: mondays, Now: now}
	if dc := cfg.Checks.Domain; dc.BadDomains != "" && !dc.Off {
		list, err := policy.BadDomainsFile{Path: dc.BadDomains}.Parse()
		if err != nil {
			return fail(fmt.Errorf("checks.domain.bad_domains: %w", err))
		}
		opts.BadDomainsFile = dc.BadDomains
		opts.Listed = func(d string) bool { _, ok := policy.MatchBadDomain(list, d); return ok }
	} else {
		opts.Listed = func(d string) bool { _, ok := policy.MatchBadDomain(nil, d); return ok }
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportStoreTimeout)
	defer cancel()
	r, err := report.Build(ctx, store, opts)
	if err != nil {
		return fail(fmt.Errorf("the state store cannot be read, no report made: %w", err))
	}
	if err := r.Write(stdout, *format); err != nil {
		return fail(err)
	}
	return reportExtras(r, &cfg, *svgFile, *mailTo, stderr)
}

// errStoreHeld: the embedded store is locked by a running sekisho serve.
var errStoreHeld = errors.New("the embedded state store is held by a running sekisho serve")

// reportOverHTTP reads the report of the given weeks from a running
// gateway's /report.json (its http listener, on loopback or the admin
// network), for an embedded store that the gateway holds locked.
func reportOverHTTP(addr string, mondays []time.Time) (*report.Report, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, perr := netip.ParseAddr(host); host == "" || (perr == nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: ask on loopback
	}
	q := url.Values{}
	q.Set("from", mondays[0].Format(time.DateOnly))
	q.Set("to", mondays[len(mondays)-1].AddDate(0, 0, 6).Format(time.DateOnly))
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/report.json", RawQuery: q.Encode()}
	client := http.Client{Timeout: reportStoreTimeout}
	resp, err := client.Get(u.String())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var j report.JSON
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("%s: %v", u.Path, err)
	}
	return report.FromJSON(j)
}

// openReportStore opens the configured store for reading counts. The
// embedded file must exist (a wrong path would report zeros) and must not
// be held by a running sekisho serve (bbolt locks it exclusively).
func openReportStore(c *config.StoreConfig, log *slog.Logger) (greylist.Store, error) {
	if c.Redis == nil {
		if _, err := os.Stat(c.Path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("the embedded state store %s does not exist (wrong -config, or run from another directory?)", c.Path)
		}
		s, err := greylist.OpenBolt(c.Path, greylist.BoltOptions{Logger: log, SweepInterval: -1, LockTimeout: peekLockTimeout})
		if err != nil {
			if strings.Contains(err.Error(), "locked") {
				return nil, fmt.Errorf("%w: %v; the embedded store cannot be read while sekisho serve runs on it without listen.http (Redis can)", errStoreHeld, err)
			}
			return nil, err
		}
		return s, nil
	}
	return openStore(c, log, false)
}

// The counts of the stores of `sekisho explain` (store.go): the empty store
// has none, the unavailable one answers its error.

func (emptyStore) AddCounts(context.Context, greylist.CountBatch) error {
	return errors.New("greylist: the empty store is read-only")
}

func (emptyStore) ReadCounts(context.Context, string, int) (greylist.WeekCounts, error) {
	return greylist.WeekCounts{}, nil
}

func (emptyStore) SweepCounts(context.Context, string) (int, error) { return 0, nil }

func (emptyStore) CountsExact() bool { return true }

func (s unavailableStore) AddCounts(context.Context, greylist.CountBatch) error { return s.err }

func (s unavailableStore) ReadCounts(context.Context, string, int) (greylist.WeekCounts, error) {
	return greylist.WeekCounts{}, s.err
}

func (s unavailableStore) SweepCounts(context.Context, string) (int, error) { return 0, s.err }

func (unavailableStore) CountsExact() bool { return true }
