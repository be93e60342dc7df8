package main

// Greylisting (DESIGN.md §3 row 6): its configuration and wiring.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"sekisho/filters"
	"sekisho/greylist"
	"sekisho/lookup"
)

// GreylistConfig configures greylisting (docs/checks-greylist.md).
type GreylistConfig struct {
	Off           bool          `yaml:"off"`
	Delay         time.Duration `yaml:"delay"`
	RetryWindow   time.Duration `yaml:"retry_window"`
	Expire        time.Duration `yaml:"expire"`
	AutoWhitelist int           `yaml:"auto_whitelist"`
	OnStoreError  string        `yaml:"on_store_error"` // accept | tempfail
	// Exempt are client networks never greylisted, besides
	// trusted_networks (like greet_pause.exempt); for networks that belong
	// in config rather than in the whitelist file, e.g. loopback.
	Exempt []Prefix `yaml:"exempt"`
	// Whitelist is the path of the whitelist file (clients, names,
	// recipients never greylisted); "" for none. deploy/greylist-whitelist.txt
	// is the shipped one. Read again on SIGHUP, with the whole configuration.
	Whitelist string `yaml:"whitelist"`
	// IPv4Prefix and IPv6Prefix group client addresses into networks:
	// a retry from another address of the network counts as the same
	// client. 0: the defaults, 24 and 64.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// StoreTimeout bounds one store call; 0: 2 s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
}

func (c *GreylistConfig) validate() error {
	key := func(k string) []string { return []string{"checks", "greylist", k} }
	if _, err := filters.ParseStoreErrorAction(c.OnStoreError); err != nil || c.OnStoreError == "" {
		return invalid("on_store_error must be accept or tempfail", key("on_store_error")...)
	}
	switch {
	case c.Delay <= 0:
		return invalid("delay must be positive", key("delay")...)
	case c.RetryWindow <= c.Delay:
		return invalid(fmt.Sprintf("retry_window (%v) must be longer than delay (%v): no retry could pass", c.RetryWindow, c.Delay), key("retry_window")...)
	case c.Expire <= 0:
		return invalid("expire must be positive", key("expire")...)
	case c.AutoWhitelist < 0:
		return invalid("auto_whitelist must be 0 (off) or a number of passes", key("auto_whitelist")...)
	case c.IPv4Prefix < 0 || c.IPv4Prefix > 32:
		return invalid("ipv4_prefix must be within 1..32 (0: the default, 24)", key("ipv4_prefix")...)
	case c.IPv6Prefix < 0 || c.IPv6Prefix > 128:
		return invalid("ipv6_prefix must be within 1..128 (0: the default, 64)", key("ipv6_prefix")...)
	case c.StoreTimeout < 0:
		return invalid("store_timeout must not be negative (0: the default, 2s)", key("store_timeout")...)
	}
	if c.Whitelist != "" && !c.Off {
		// check-config reports a broken whitelist, not only serve.
		content, err := os.ReadFile(c.Whitelist)
		if err == nil {
			_, err = filters.ParseGreylistWhitelist(c.Whitelist, content)
		}
		if err != nil {
			return invalid("whitelist refused: "+err.Error(), key("whitelist")...)
		}
	}
	return nil
}

func (c *GreylistConfig) policy() greylist.Policy {
	return greylist.Policy{Delay: c.Delay, RetryWindow: c.RetryWindow, Expire: c.Expire, AutoWhitelist: c.AutoWhitelist}
}

func (c *GreylistConfig) exemptPrefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range c.Exempt {
		ps = append(ps, p.Prefix)
	}
	return ps
}

func (c *GreylistConfig) networks() greylist.NetworkPrefix {
	n := greylist.DefaultNetworkPrefix
	if c.IPv4Prefix != 0 {
		n.IPv4 = c.IPv4Prefix
	}
	if c.IPv6Prefix != 0 {
		n.IPv6 = c.IPv6Prefix
	}
	return n
}

// greylistChecks builds the greylisting check on the configured store,
// which it opens here and closes when main closes its deps. The whitelist
// is read again when SIGHUP rebuilds the checks (reload.go). Under `sekisho explain`
// (d.dryRun) the check only peeks at the store and writes nothing.
func greylistChecks(cfg *Config, d *deps) ([]filters.Check, error) {
	gc := &cfg.Checks.Greylist
	if gc.Off {
		return nil, nil
	}
	if err := gc.validate(); err != nil {
		return nil, err
	}
	onStoreError, _ := filters.ParseStoreErrorAction(gc.OnStoreError)
	store, err := d.stateStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	g, err := filters.NewGreylist(filters.GreylistOptions{
		Store:        store,
		Policy:       gc.policy(),
		Networks:     gc.networks(),
		OnStoreError: onStoreError,
		Exempt:       gc.exemptPrefixes(),
		Whitelist:    gc.Whitelist,
		ReverseName:  verifiedClientName(d.resolver),
		StoreTimeout: gc.StoreTimeout,
		Logger:       d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("checks.greylist: %w", err)
	}
	if d.dryRun {
		return []filters.Check{g.DryRun()}, nil
	}
	n := gc.networks()
	d.log.Info("greylisting", "delay", gc.Delay, "retry_window", gc.RetryWindow, "expire", gc.Expire,
		"auto_whitelist", gc.AutoWhitelist, "on_store_error", onStoreError.String(),
		"networks", fmt.Sprintf("/%d, /%d", n.IPv4, n.IPv6), "exempt", gc.exemptPrefixes(), "whitelist", gc.Whitelist)
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
