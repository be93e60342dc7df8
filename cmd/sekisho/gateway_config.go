package main

// What the gateway takes from a configuration: the listeners' settings,
// the router, the limits and the submission role (gateway.Config), built
// from a config.Config for each generation (reload.go).

import (
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"sekisho/auth"
	"sekisho/config"
	"sekisho/gateway"
	"sekisho/greylist"
	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/relay"
)

// postmasterDomain is the first local domain that names one domain (not a
// subtree): where <postmaster> without a domain is delivered.
func postmasterDomain(c *config.Config) string {
	for _, d := range c.LocalDomains {
		if d = strings.TrimSuffix(strings.TrimSpace(d), "."); d != "" && d != "*" && !strings.HasPrefix(d, ".") {
			return mailaddr.Fold(d)
		}
	}
	return ""
}

// msaConfig builds the submission role: the login service on the
// directory, and the rules for what a user may send. shared, when not nil
// (the Redis store), keeps the failure budgets and hourly limits for every
// gateway on it.
func msaConfig(c *config.Config, dir *lookup.Directory, shared greylist.Buckets, log *slog.Logger) *gateway.MSAConfig {
	a := c.Auth
	if shared != nil {
		log.Info("auth budgets shared", "store", "redis")
	}
	return &gateway.MSAConfig{
		Auth: auth.New(dir, auth.Config{
			MaxFailures: a.MaxFailures, FailureWindow: a.FailureWindow, MaxConcurrentBinds: a.MaxConcurrentBinds,
			MaxRecipientsPerHour: a.MaxRecipientsPerHour, MaxMessagesPerHour: a.MaxMessagesPerHour, Logger: log,
			Shared: shared,
		}),
		SenderCheck:  a.SenderCheck == "strict",
		FromCheck:    a.FromCheck == "strict",
		ReceivedFull: a.Received == "full",
	}
}

// sharedBuckets is the state store's shared token buckets when the store is
// Redis (every gateway on it shares the MSA's budgets), nil on the
// embedded store (the budgets stay in each process's memory).
func sharedBuckets(c *config.Config, store greylist.Store) greylist.Buckets {
	if c.Store.Redis == nil {
		return nil
	}
	if t, ok := store.(timedStore); ok {
		store = t.Store
	}
	b, _ := store.(greylist.Buckets)
	return b
}

// proxyFrom is proxy_protocol.from as the gateway takes it.
func proxyFrom(c *config.Config) []netip.Prefix {
	var from []netip.Prefix
	for _, p := range c.ProxyProtocol.From {
		from = append(from, p.Prefix)
	}
	return from
}

// gatewayConfig turns the file's settings into what the gateway takes.
func gatewayConfig(c *config.Config) gateway.Config {
	var trusted []netip.Prefix
	for _, p := range c.TrustedNetworks {
		trusted = append(trusted, p.Prefix)
	}
	var pause time.Duration
	var exempt []netip.Prefix
	if !c.Checks.GreetPause.Off {
		pause = c.Checks.GreetPause.Delay
		for _, p := range c.Checks.GreetPause.Exempt {
			exempt = append(exempt, p.Prefix)
		}
	}
	return gateway.Config{
		GreetPause:       pause,
		GreetPauseExempt: exempt,
		GreetPassTTL:     c.Checks.GreetPause.PassTTL,
		GreetFailTTL:     c.Checks.GreetPause.FailTTL,
		Hostname:         c.Hostname,
		LocalDomains:     mailaddr.NewDomainSet(c.LocalDomains),
		PostmasterDomain: postmasterDomain(c),
		TrustedNetworks:  trusted,
		ProxyFrom:        proxyFrom(c),
		NextHopKeepAlive: c.NextHop.KeepAliveInterval,
		Router: &relay.Router{
			Hostname: c.Hostname,
			Routes:   c.RelayRoutes(),
			MXPort:   c.NextHop.MXPort,
			Timeouts: relay.Timeouts{
				Connect: c.NextHop.ConnectTimeout, Command: c.NextHop.CommandTimeout, Data: c.NextHop.DataTimeout,
				CallAhead: c.NextHop.CallAheadTimeout,
			},
			ConnectionCache: relay.ConnectionCache{IdleTime: c.NextHop.ConnectionCacheTime},
		},
		Limits: gateway.Limits{
			MaxConnections: c.Limits.MaxConnections, MaxConnectionsPerIP: c.Limits.MaxConnectionsPerIP,
			MaxMessageBytes: c.Limits.MaxMessageBytes, MaxRecipients: c.Limits.MaxRecipients,
			MaxLineLength: c.Limits.MaxLineLength, MaxErrors: c.Limits.MaxErrors, CommandTimeout: c.Limits.CommandTimeout,
			DataTimeout: c.Limits.DataTimeout, ShutdownGrace: c.Limits.ShutdownGrace,
			SpoolMemory: c.Limits.SpoolMemoryBytes, SpoolDir: c.Limits.SpoolDir,
		},
	}
}
