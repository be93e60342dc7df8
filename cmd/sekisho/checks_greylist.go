package main

// Greylisting (DESIGN.md §3 row 6): its configuration and wiring.

import (
	"context"
	"errors"
	"fmt"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/lookup"
)

// greylistChecks builds the greylisting check on the configured store,
// which it opens here and closes when main closes its deps. The whitelist
// is read again when SIGHUP rebuilds the checks (reload.go). Under `sekisho explain`
// (d.dryRun) the check only peeks at the store and writes nothing.
func greylistChecks(cfg *config.Config, d *deps) ([]filters.Check, error) {
	gc := &cfg.Checks.Greylist
	if gc.Off {
		return nil, nil
	}
	onStoreError, _ := filters.ParseStoreErrorAction(gc.OnStoreError)
	store, err := d.stateStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	g, err := filters.NewGreylist(filters.GreylistOptions{
		Store:        store,
		Policy:       gc.Policy(),
		Networks:     gc.Networks(),
		OnStoreError: onStoreError,
		Exempt:       gc.ExemptPrefixes(),
		Whitelist:    gc.Whitelist,
		ReverseName:  verifiedClientName(d.resolver),
		StoreTimeout: gc.StoreTimeout,
		// Without the SPF check there is no SPF result to key on.
		BySenderDomain: gc.BySenderDomain && !cfg.Checks.SPF.Off,
		Logger:         d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("checks.greylist: %w", err)
	}
	if d.dryRun {
		return []filters.Check{g.DryRun()}, nil
	}
	n := gc.Networks()
	d.log.Info("greylisting", "delay", gc.Delay, "retry_window", gc.RetryWindow, "expire", gc.Expire,
		"auto_whitelist", gc.AutoWhitelist, "on_store_error", onStoreError.String(),
		"networks", fmt.Sprintf("/%d, /%d", n.IPv4, n.IPv6), "exempt", gc.ExemptPrefixes(), "whitelist", gc.Whitelist,
		"by_sender_domain", gc.BySenderDomain && !cfg.Checks.SPF.Off)
	return []filters.Check{g}, nil
}

// connKeyVerifiedName is where the client's verified name is kept in
// tx.Conn, so that a connection with many recipients looks it up once.
const connKeyVerifiedName = "greylist.verified_name"

// verifiedNameAnswer is a cached answer of verifiedClientName.
type verifiedNameAnswer struct {
	name string
	err  error
}

// verifiedClientName gives the greylist check the client's forward-confirmed
// reverse-DNS name (lookup.VerifiedName), once per connection: the answer,
// "could not tell" included, is kept in tx.Conn (written only by the
// session's own goroutine). Could not tell is an error, which the check
// takes as "not whitelisted by name" — a delay, never a rejection.
func verifiedClientName(r *lookup.Resolver) filters.ReverseNameFunc {
	return func(ctx context.Context, tx *filters.Transaction) (string, error) {
		if a, ok := tx.Conn[connKeyVerifiedName].(verifiedNameAnswer); ok {
			return a.name, a.err
		}
		res := r.VerifiedName(ctx, tx.Client)
		var a verifiedNameAnswer
		switch res.Outcome {
		case lookup.ReverseNameVerified:
			a.name = res.Name
		case lookup.ReverseNameNone:
		default:
			a.err = errors.New("reverse DNS could not tell: " + res.Reason)
		}
		// A lookup cut short by the session's end says nothing about the
		// client; keep only real answers.
		if tx.Conn != nil && ctx.Err() == nil {
			tx.Conn[connKeyVerifiedName] = a
		}
		return a.name, a.err
	}
}
