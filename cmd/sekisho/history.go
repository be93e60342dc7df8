package main

// sekisho history, the history verb of the control socket, and the
// recorder the gateway writes its decisions to (docs/history.md).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sekisho/config"
	"sekisho/gateway"
	"sekisho/greylist"
	"sekisho/history"
)

// historyStoreOf is the history's part of the state store (the store under
// the lookup-duration wrapper); nil for a store without one.
func historyStoreOf(s greylist.Store) greylist.History {
	if t, ok := s.(timedStore); ok {
		s = t.Store
	}
	h, _ := s.(greylist.History)
	return h
}

// newHistoryRecorder is the recorder of `sekisho serve`
// (gateway.Config.History); nil when history.off or the store keeps none.
func newHistoryRecorder(c *config.Config, store greylist.Store, log *slog.Logger) *history.Recorder {
	h := historyStoreOf(store)
	if c.History.Off || h == nil {
		return nil
	}
	return history.NewRecorder(h, history.Options{Keep: c.History.Keep, MaxBytes: c.History.MaxBytes, Logger: log})
}

// historyCollector publishes the records lost (a store down, a full
// buffer) and written.
func historyCollector(r *history.Recorder) prometheus.Collector {
	if r == nil {
		return nil
	}
	return historyMetrics{
		lost: prometheus.NewDesc("sekisho_history_lost_total",
			"Decision records never written to the history: the store failed or the buffer was full (mail is not affected).", nil, nil),
		written: prometheus.NewDesc("sekisho_history_written_total",
			"Decision records written to the history.", nil, nil),
		r: r,
	}
}

type historyMetrics struct {
	lost, written *prometheus.Desc
	r             *history.Recorder
}

func (m historyMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.lost; ch <- m.written }
func (m historyMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.lost, prometheus.CounterValue, float64(m.r.Lost()))
	ch <- prometheus.MustNewConstMetric(m.written, prometheus.CounterValue, float64(m.r.Written()))
}

// historyVerb answers the history verb: a history.Filter, answered with
// the matching records, newest first, read from the gateway's store.
func (src *controlSource) historyVerb(ctx context.Context, raw json.RawMessage) (any, error) {
	var f history.Filter
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, gateway.BadRequest("history: %v", err)
	}
	if err := f.Validate(); err != nil {
		return nil, gateway.BadRequest("history: %v", err)
	}
	recs, err := src.obs.searchHistory(ctx, f)
	if err != nil {
		return nil, err
	}
	return historyAnswer{Records: history.ToJSON(recs)}, nil
}

type historyAnswer struct {
	Records []history.JSONRecord `json:"records"`
}

const historyUsage = `usage: sekisho history [-config FILE] [-from ADDR|@DOMAIN] [-to ADDR|@DOMAIN] [-client IP|NET]
                       [-msgid ID] [-session ID] [-since 24h] [-outcome refused|deferred|accepted]
                       [-limit N] [-format text|json] [-direct]

Every decision of the gateways sharing the state store, newest first, one
line each: time, gateway, session, client, sender, recipients, check,
reply, and for accepted mail the next hop and its queue id. The filters
combine; -from @example.org is every sender of the domain and its
subdomains; -session lists one session's decisions. See docs/history.md.

When a gateway answers on the control socket of the configuration, it
reads its store and answers; otherwise, or with -direct, history opens the
store itself (Redis at any time, the embedded file while no sekisho serve
holds it). Exit 0 (also when nothing matched), 1 when the store cannot be
read, 2 for a usage error.
`

// runHistory is `sekisho history`.
func runHistory(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("history", historyUsage, stdout, stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	var f history.Filter
	fs.StringVar(&f.From, "from", "", "envelope sender `ADDR`, or @DOMAIN")
	fs.StringVar(&f.To, "to", "", "recipient `ADDR`, or @DOMAIN")
	fs.StringVar(&f.Client, "client", "", "client address or network (`IP|NET`)")
	fs.StringVar(&f.MsgID, "msgid", "", "Message-ID")
	fs.StringVar(&f.Session, "session", "", "session `ID`: every decision of the session")
	fs.StringVar(&f.Outcome, "outcome", "", "refused, deferred or accepted")
	fs.DurationVar(&f.Since, "since", history.DefaultSince, "how far back")
	fs.IntVar(&f.Limit, "limit", history.DefaultLimit, "at most `N` records")
	format := fs.String("format", "text", "text or json")
	direct := fs.Bool("direct", false, "do not ask the running gateway: open the store here")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usageErr := func(msg string) int { return usageError(fs, stderr, "%s", msg) }
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if *format != "text" && *format != "json" {
		return usageErr(fmt.Sprintf("-format %q: want text or json", *format))
	}
	if f.Since <= 0 {
		return usageErr("-since must be positive")
	}
	if f.Limit < 1 {
		return usageErr("-limit must be at least 1")
	}
	if err := f.Validate(); err != nil {
		return usageErr(err.Error())
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "sekisho history:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportStoreTimeout)
	defer cancel()
	var recs []history.Record
	asked := false
	if !*direct {
		c, err := askGateway(&cfg)
		if err != nil {
			return fail(fmt.Errorf("cannot ask the running gateway: %w\n(root and the members of the gateway's group may; -direct opens the store instead)", err))
		}
		if c != nil {
			var a historyAnswer
			if err := c.Call(ctx, "history", f, &a); err != nil {
				return fail(err)
			}
			recs, asked = history.FromJSON(a.Records), true
		}
	}
	if !asked {
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		store, err := openReportStore(&cfg.Store, log)
		if err != nil {
			return fail(err)
		}
		defer store.Close()
		h := historyStoreOf(store)
		if h == nil {
			return fail(fmt.Errorf("the state store keeps no history"))
		}
		if recs, err = history.Search(ctx, h, f, time.Now()); err != nil {
			return fail(err)
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(history.ToJSON(recs)); err != nil {
			return fail(err)
		}
		return 0
	}
	for i := range recs {
		fmt.Fprintln(stdout, history.Line(&recs[i]))
	}
	if len(recs) == 0 {
		fmt.Fprintln(stderr, "no decision matched")
	}
	return 0
}

// searchHistory searches the gateway's store, after writing what this
// gateway has just recorded (so that a decision of a moment ago is found).
func (o *observability) searchHistory(ctx context.Context, f history.Filter) ([]history.Record, error) {
	h := historyStoreOf(o.d.store)
	if h == nil {
		return nil, fmt.Errorf("the state store keeps no history")
	}
	if o.history != nil {
		o.history.Flush(ctx)
	}
	return history.Search(ctx, h, f, time.Now())
}

// withHistoryPage serves /history (history.PageHandler) and everything
// else from next.
func withHistoryPage(next http.Handler, search func(context.Context, history.Filter) ([]history.Record, error)) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(history.Path, history.PageHandler(search))
	mux.Handle("/", next)
	return mux
}
