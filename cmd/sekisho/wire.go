package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/greylist"
	"sekisho/lookup"
	"sekisho/policy"
	"sekisho/relay"
)

// deps are the shared lookups the checks are built on. main builds them once
// from the configuration and hands them to each check's constructor.
type deps struct {
	log        *slog.Logger
	resolver   *lookup.Resolver
	badDomains *policy.BadDomains
	directory  *lookup.Directory // nil without ldap.urls
	closers    []func()
	// dryRun is set by `sekisho explain`: checks must not change state
	// (the greylist check only peeks).
	dryRun bool
	// store is the state store once opened (stateStore): greylisting and
	// the MTA-STS policy cache share it.
	store greylist.Store
	// tlsCounters count TLS towards next hops, for /metrics.
	tlsCounters *relay.TLSCounters
	// cacheCounters count the next-hop connection cache, for /metrics.
	cacheCounters *relay.CacheCounters
	// authResults count DKIM and DMARC results, for /metrics.
	authResults *authResultCounts
	// observe, if set before the store is opened, times the store's calls
	// (sekisho_lookup_duration_seconds{kind="store"}).
	observe lookup.ObserveFunc
}

// newDeps builds the resolver, the bad-domain list and (when configured) the
// LDAP directory.
func newDeps(cfg *config.Config, log *slog.Logger) (*deps, error) {
	d := &deps{log: log, authResults: newAuthResultCounts()}
	r, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	d.resolver = r

	files, err := cfg.Files()
	if err != nil {
		return nil, err
	}
	d.badDomains = policy.NewBadDomains(policy.BadDomainsOptions{Logger: log})
	if files.BadDomains != nil {
		d.badDomains.Put(files.BadDomains, "load")
	}

	if len(cfg.LDAP.URLs) > 0 {
		dir, err := newDirectory(cfg)
		if err != nil {
			return nil, err
		}
		d.directory = dir
		d.closers = append(d.closers, func() { dir.Close() })
	}
	return d, nil
}

// newResolver builds the DNS resolver of dns:.
func newResolver(cfg *config.Config) (*lookup.Resolver, error) {
	r, err := lookup.NewResolver(cfg.ResolverConfig())
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return r, nil
}

// newDirectory builds the LDAP directory of ldap: (ldap.urls set), with
// the bind password the loader read.
func newDirectory(cfg *config.Config) (*lookup.Directory, error) {
	files, err := cfg.Files()
	if err != nil {
		return nil, err
	}
	dir, err := lookup.NewDirectory(cfg.DirectoryConfig(files.LDAPPassword))
	if err != nil {
		return nil, err // "ldap: ..."
	}
	return dir, nil
}

func (d *deps) close() {
	for _, c := range d.closers {
		c()
	}
}

// buildChain builds every enabled check. The order in which they run is not
// decided here but in filters/order.go.
func buildChain(cfg *config.Config, d *deps) (*filters.Chain, error) {
	var checks []filters.Check
	for _, build := range []func(*config.Config, *deps) ([]filters.Check, error){
		dnsChecks, headerChecks, accountChecks, greylistChecks, spfChecks, dmarcChecks,
	} {
		cs, err := build(cfg, d)
		if err != nil {
			return nil, err
		}
		checks = append(checks, cs...)
	}
	return filters.NewChain(checks...), nil
}

// headerChecks builds the header-format check.
func headerChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	if cfg.Checks.Header.Off {
		return nil, nil
	}
	h, err := filters.NewHeaderCheck(cfg.Checks.Header)
	if err != nil {
		return nil, fmt.Errorf("checks.header: %w", err)
	}
	return []filters.Check{h}, nil
}

// watchReloads reloads what admins edit while sekisho runs: the bad-domain
// list on change of its file (the directory is watched, with a debounce; see
// reloader.watchBadDomains) and the whole configuration on SIGHUP
// (reloader.reload, reload.go). A file that does not parse is refused with
// file:line in the log and the old version stays in force.
func watchReloads(ctx context.Context, r *reloader) {
	r.watchBadDomains(ctx, r.current().d.badDomains)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				r.stopWatch()
				return
			case <-hup:
				r.reload(ctx)
			}
		}
	}()
}
