package main

// sekisho report, the report settings, and the counter the gateway records
// its decisions to (docs/report.md).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"sekisho/config"
	"sekisho/gateway"
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
                      [-svg FILE] [-mail-to ADDR] [-direct]

Counts of every deferral and rejection by cause, and of accepted mail, per
ISO week (Monday to Sunday, UTC): attempts and distinct (client network,
sender, recipient) triplets, and the week's top NXDOMAIN and bad-list
domains. Default: the last complete week and the 8 before it, then the
week in progress, marked "so far". -from and -to (YYYY-MM-DD) are widened to
whole weeks; a week that holds today is marked "so far". See docs/report.md.

When a gateway answers on the control socket of the configuration
(control.socket), the running gateway reads its store and answers (no
listen.http needed); otherwise, or with -direct, report opens the store
itself: Redis at any time, the embedded file while no sekisho serve holds
it. A store that cannot be read is an error (exit 1), never a report of
zeros. Exit 2 for a usage error.
`

// reportNow is the clock of `sekisho report` (tests set it).
var reportNow = time.Now

// reportStoreTimeout bounds the reading of the store.
const reportStoreTimeout = 30 * time.Second

// runReport is `sekisho report`.
func runReport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("report", reportUsage, stdout, stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	weeks := fs.Int("weeks", report.DefaultWeeks, "number of complete weeks before the week in progress (which is shown too, \"so far\")")
	from := fs.String("from", "", "first day (YYYY-MM-DD, UTC), with -to")
	to := fs.String("to", "", "last day (YYYY-MM-DD, UTC), with -from")
	format := fs.String("format", "text", "text, csv or json")
	svgFile := fs.String("svg", "", "also write the SVG chart to `FILE`")
	mailTo := fs.String("mail-to", "", "also mail the text report with the chart attached to `ADDR`, through the next hop of its route")
	direct := fs.Bool("direct", false, "do not ask the running gateway: open the store here")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usageErr := func(msg string) int { return usageError(fs, stderr, "%s", msg) }
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
	if !*direct {
		c, err := askGateway(&cfg)
		if err != nil {
			return fail(fmt.Errorf("cannot ask the running gateway: %w\n(root and the members of the gateway's group may; -direct opens the store instead)", err))
		}
		if c != nil {
			// The running gateway reads its own store.
			r, err := reportFromGateway(c, mondays)
			if err != nil {
				return fail(err)
			}
			if dc := cfg.Checks.Domain; dc.BadDomains != "" && !dc.Off {
				r.BadDomainsFile = dc.BadDomains
			}
			if err := r.Write(stdout, *format); err != nil {
				return fail(err)
			}
			return reportExtras(r, &cfg, *svgFile, *mailTo, stderr)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	store, err := openReportStore(&cfg.Store, log)
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

// reportFromGateway asks the running gateway for the report of the weeks
// of mondays (the report verb of the control socket).
func reportFromGateway(c *gateway.ControlClient, mondays []time.Time) (*report.Report, error) {
	req := reportRequest{}
	for _, m := range mondays {
		req.Weeks = append(req.Weeks, m.Format(time.DateOnly))
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportStoreTimeout)
	defer cancel()
	var j report.JSON
	if err := c.Call(ctx, "report", req, &j); err != nil {
		return nil, err
	}
	return report.FromJSON(j)
}

// errStoreHeld: the embedded store is locked by a running sekisho serve.
var errStoreHeld = errors.New("the embedded state store is held by a running sekisho serve")

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
				return nil, fmt.Errorf("%w (%v); it cannot be read while sekisho serve runs on it, and no gateway answered on control.socket", errStoreHeld, err)
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
