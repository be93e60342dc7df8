package main

// sekisho greylist stats: is greylisting by sender domain working? The
// week's longest delays by sender domain, and the domains whose greylisted
// mail was retried from the most addresses (docs/checks-greylist.md).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"time"

	"sekisho/config"
	"sekisho/gateway"
	"sekisho/greylist"
	"sekisho/report"
)

const greylistUsage = `usage: sekisho greylist stats [-config FILE] [-week YYYY-Www] [-top N] [-format text|json] [-direct]

The week's (default: this ISO week, UTC) longest greylisting delays by
sender domain, from a triplet's first attempt to its first pass, and the
sender domains whose greylisted mail was retried from the most client
addresses. A big sender whose retries come from many addresses should show
short delays (greylisting by SPF-validated sender domain); long ones say
which domains greylisting still holds. See docs/checks-greylist.md.

When a gateway answers on the control socket of the configuration, it
reads its store and answers; otherwise, or with -direct, the command opens
the store itself: Redis at any time, the embedded file only while no
sekisho serve holds it.

`

// greylistStatsNow is the clock of `sekisho greylist stats` (tests set it).
var greylistStatsNow = time.Now

var isoWeek = regexp.MustCompile(`^[0-9]{4}-W[0-9]{2}$`)

// runGreylist is `sekisho greylist`: its one subcommand is stats.
func runGreylist(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("greylist", greylistUsage, stdout, stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	week := fs.String("week", "", "ISO week, YYYY-Www (default: this week)")
	top := fs.Int("top", 20, "how many domains in each list")
	format := fs.String("format", "text", "text or json")
	direct := fs.Bool("direct", false, "read the store here, do not ask the running gateway")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	switch {
	case fs.NArg() == 0:
		return usageError(fs, stderr, "missing subcommand: stats")
	case fs.Arg(0) != "stats":
		return usageError(fs, stderr, "unknown subcommand %q (want stats)", fs.Arg(0))
	case fs.NArg() > 1:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(1))
	case *week != "" && !isoWeek.MatchString(*week):
		return usageError(fs, stderr, "-week %q: want an ISO week like 2026-W47", *week)
	case *top < 1 || *top > 1000:
		return usageError(fs, stderr, "-top must be between 1 and 1000")
	case *format != "text" && *format != "json":
		return usageError(fs, stderr, "-format %q: want text or json", *format)
	}
	if *week == "" {
		*week = report.WeekName(greylistStatsNow())
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "sekisho greylist stats:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportStoreTimeout)
	defer cancel()
	var ws greylist.WeekStats
	var c *gateway.ControlClient
	if !*direct {
		if c, err = askGateway(&cfg); err != nil {
			return fail(fmt.Errorf("cannot ask the running gateway: %w\n(root and the members of the gateway's group may; -direct opens the store instead)", err))
		}
	}
	if c != nil {
		// The running gateway reads its own store (the embedded file it
		// holds included).
		if err := c.Call(ctx, "greylist-stats", greylistStatsRequest{Week: *week, Top: *top}, &ws); err != nil {
			return fail(err)
		}
	} else {
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		store, err := openReportStore(&cfg.Store, log)
		if err != nil {
			return fail(err)
		}
		defer store.Close()
		if ws, err = store.ReadStats(ctx, *week, *top); err != nil {
			return fail(fmt.Errorf("the state store cannot be read: %w", err))
		}
	}
	if *format == "json" {
		return writeGreylistStatsJSON(stdout, *week, ws, fail)
	}
	writeGreylistStatsText(stdout, *week, ws)
	return 0
}

// statsDomain names a domain in the output; the null sender has none.
func statsDomain(d string) string {
	if d == "" {
		return "<> (null sender)"
	}
	return d
}

func writeGreylistStatsText(w io.Writer, week string, ws greylist.WeekStats) {
	fmt.Fprintf(w, "Greylisting in %s (UTC)\n\nLongest delays by sender domain (first attempt to first pass):\n", week)
	if len(ws.Delays) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, d := range ws.Delays {
		fmt.Fprintf(w, "  %12s  %s\n", d.Delay.Round(time.Second), statsDomain(d.Domain))
	}
	fmt.Fprintln(w, "\nSender domains whose greylisted mail was retried from the most addresses:")
	if len(ws.Pools) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, p := range ws.Pools {
		fmt.Fprintf(w, "  %12d  %s\n", p.Addresses, statsDomain(p.Domain))
	}
}

func writeGreylistStatsJSON(w io.Writer, week string, ws greylist.WeekStats, fail func(error) int) int {
	type delay struct {
		Domain  string  `json:"domain"`
		Seconds float64 `json:"seconds"`
	}
	type pool struct {
		Domain    string `json:"domain"`
		Addresses int64  `json:"addresses"`
	}
	out := struct {
		Week   string  `json:"week"`
		Delays []delay `json:"longest_delays"`
		Pools  []pool  `json:"retried_from_most_addresses"`
	}{Week: week, Delays: []delay{}, Pools: []pool{}}
	for _, d := range ws.Delays {
		out.Delays = append(out.Delays, delay{d.Domain, d.Delay.Seconds()})
	}
	for _, p := range ws.Pools {
		out.Pools = append(out.Pools, pool{p.Domain, p.Addresses})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fail(err)
	}
	return 0
}

// greylistStatsRequest is the greylist-stats verb's request (docs/cli.md).
type greylistStatsRequest struct {
	Week string `json:"week"` // YYYY-Www
	Top  int    `json:"top"`  // 1 to 1000
}

// greylistStatsVerb answers the greylist-stats verb from the gateway's
// store: greylist.WeekStats, delays in nanoseconds.
func (src *controlSource) greylistStatsVerb(ctx context.Context, raw json.RawMessage) (any, error) {
	var req greylistStatsRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, gateway.BadRequest("greylist-stats: %v", err)
	}
	if !isoWeek.MatchString(req.Week) || req.Top < 1 || req.Top > 1000 {
		return nil, gateway.BadRequest("greylist-stats: want a week YYYY-Www and top from 1 to 1000")
	}
	return src.obs.d.store.ReadStats(ctx, req.Week, req.Top)
}
