package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"sekisho/autoconfig"
	"sekisho/config"
	"sekisho/gateway"
	"sekisho/history"
	"sekisho/internal/mailaddr"
	"sekisho/relay"
	"sekisho/report"
)

// observability is what /metrics, /readyz and the tempfail alarm are made
// of, wired by runServe in three steps: newObservability before the checks
// are built (so that the lookups and the store are observed), recorder
// before the gateway (so that the health of the next hops and the alarm see
// every decision), start once the gateway exists.
type observability struct {
	cfg      *config.Config
	d        *deps
	log      *slog.Logger
	lookups  *prometheus.HistogramVec
	health   *health
	alarm    *tempfailAlarm
	recorded report.Recorder // what the gateway had before (the report counter)
	// history records every decision (nil: history.off); closed after
	// the listeners, with the counter.
	history *history.Recorder
	reg     *prometheus.Registry
	// autoconfig answers mail programs on the http listener; reloads
	// give it the new configuration.
	autoconfig *autoconfig.Handler
}

func newObservability(cfg *config.Config, d *deps, log *slog.Logger) *observability {
	o := &observability{cfg: cfg, d: d, log: log, lookups: newLookupDuration(), autoconfig: autoconfig.NewHandler(cfg.AutoconfigSettings())}
	d.observe = observer(o.lookups)
	d.resolver.Observe(d.observe)
	if d.directory != nil {
		d.directory.Observe(d.observe)
	}
	o.alarm = newTempfailAlarm(cfg.Alarm, log, nil)
	return o
}

// recorder returns the gateway's Recorder: the next hops' health, the
// alarm, and rec (the report counter, if any), each given every Event.
func (o *observability) recorder(router *relay.Router, rec report.Recorder) report.Recorder {
	o.health = newHealth(o.cfg, o.d, router, nil)
	o.recorded = rec
	if to := o.cfg.Alarm.MailTo; to != "" {
		addr, _ := config.ParseMailbox(to) // validated with the config
		addr.Domain = mailaddr.Fold(addr.Domain)
		o.alarm.setNotify(alarmMailer(router, o.cfg.Hostname, addr, o.log))
	}
	return report.Multi{o.health, o.alarm, rec}
}

// start builds the registry and starts the prober and the alarm's clock
// until ctx ends. checks publishes the counters of the checks in force
// (liveChecks, which follows configuration reloads).
func (o *observability) start(ctx context.Context, srv *gateway.Server, checks prometheus.Collector) error {
	o.health.draining = srv.Draining
	var drops prometheus.Collector
	if c, ok := o.recorded.(interface{ Dropped() uint64 }); ok {
		drops = prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sekisho_report_dropped_total",
			Help: "Report counter entries (triplets, refused domains, senders) left out because its buffer was full; attempts are always counted.",
		}, func() float64 { return float64(c.Dropped()) })
	}
	reg, err := newRegistry(srv.Collector(), o.lookups, checks, relayTLSCollector{o.d.tlsCounters}, relayCacheCollector{o.d.cacheCounters}, o.d.authResults,
		healthCollector{o.health}, alarmCollector{o.alarm}, drops, historyCollector(o.history))
	if err != nil {
		return err
	}
	o.reg = reg
	go o.health.run(ctx)
	go o.alarm.run(ctx)
	return nil
}

// shuttingDown turns /readyz to 503 at once, before the gateway's drain
// begins.
func (o *observability) shuttingDown() { o.health.stopping.Store(true) }
