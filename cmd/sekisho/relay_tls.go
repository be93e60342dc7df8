package main

// The wiring of the way out: the router's TLS counters and MTA-STS, and
// the state store they share with greylisting (docs/outbound.md).

import (
	"fmt"

	"sekisho/config"
	"sekisho/greylist"
	"sekisho/relay"
)

// mtaSTS builds the MTA-STS policy source of the router on the state store
// (shared with greylisting, so that gateways on one Redis share the
// policies too); nil when next_hop.mta_sts.off or no route has an mx next
// hop.
func (d *deps) mtaSTS(cfg *config.Config) (*relay.MTASTS, error) {
	m := cfg.NextHop.MTASTS
	if m.Off {
		return nil, nil
	}
	mx := false
	for _, r := range cfg.Routes {
		for _, h := range r.NextHops {
			mx = mx || h.Kind == relay.HopMX
		}
	}
	if !mx {
		return nil, nil
	}
	store, err := d.stateStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	d.log.Info("MTA-STS", "fetch_timeout", m.FetchTimeout, "port", m.Port, "ca_file", m.CAFile.Path)
	return &relay.MTASTS{
		Resolver: d.resolver,
		Cache:    store,
		Timeout:  m.FetchTimeout,
		Port:     m.Port,
		RootCAs:  m.CAFile.Pool(),
		Logger:   d.log,
	}, nil
}

// wireRelayTLS gives the router its logger, TLS and connection cache
// counters (on /metrics) and MTA-STS.
func (d *deps) wireRelayTLS(cfg *config.Config, r *relay.Router) error {
	r.Logger = d.log
	r.Counters = &relay.TLSCounters{}
	d.tlsCounters = r.Counters
	r.CacheCounters = &relay.CacheCounters{}
	d.cacheCounters = r.CacheCounters
	sts, err := d.mtaSTS(cfg)
	if err != nil {
		return err
	}
	r.MTASTS = sts
	return nil
}

// stateStore opens the configured state store once (openStore) and closes
// it with the other deps; greylisting and the MTA-STS cache share it.
func (d *deps) stateStore(cfg *config.Config) (greylist.Store, error) {
	if d.store != nil {
		return d.store, nil
	}
	store, err := openStore(&cfg.Store, d.log, d.dryRun)
	if err != nil {
		return nil, err
	}
	if d.observe != nil {
		store = timedStore{store, d.observe}
	}
	d.store = store
	d.closers = append(d.closers, func() {
		if err := store.Close(); err != nil {
			d.log.Warn("closing the state store", "err", err)
		}
	})
	return store, nil
}
