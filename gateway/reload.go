package gateway

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"sekisho/filters"
	"sekisho/relay"
)

// generation is one version of the server's configuration: the settings,
// the chain of checks and the router built from one reading of the
// configuration file. The server holds the current one; each connection
// takes the current one when it is accepted and keeps it to its end, so a
// reload (Reload) never changes the rules in the middle of a session: a
// client that sent MAIL FROM before the reload finishes its transaction with
// the routes and checks it started with, and new connections get the new
// ones.
//
// refs counts the holders: the server while the generation is current, and
// each session started on it. When it reaches zero the generation is over
// and its Retire hook runs (closing what it alone used); it never comes
// back from zero.
type generation struct {
	cfg   Config
	chain *filters.Chain
	// explain is the chain Explain runs: chain's checks, those that
	// record something (greylisting) in their dry run.
	explain *filters.Chain
	router  *relay.Router
	refs    atomic.Int64
}

// newGeneration checks a configuration and fills in the defaults.
func newGeneration(cfg Config) (*generation, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("gateway: hostname is required")
	}
	if cfg.Router == nil {
		return nil, errors.New("gateway: a router is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Chain == nil {
		cfg.Chain = filters.NewChain()
	}
	if cfg.Limits.MaxLineLength <= 0 {
		cfg.Limits.MaxLineLength = 2000
	}
	if cfg.Limits.CommandTimeout <= 0 {
		cfg.Limits.CommandTimeout = 5 * time.Minute
	}
	if cfg.Limits.DataTimeout <= 0 {
		cfg.Limits.DataTimeout = 10 * time.Minute
	}
	g := &generation{cfg: cfg, chain: cfg.Chain, explain: cfg.Chain.DryRun(), router: cfg.Router}
	g.refs.Store(1) // the server's
	return g, nil
}

// hold takes a reference, unless the generation is already over.
func (g *generation) hold() bool {
	for {
		n := g.refs.Load()
		if n <= 0 {
			return false
		}
		if g.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives a reference back; the last one retires the generation.
func (g *generation) release() {
	if g.refs.Add(-1) == 0 && g.cfg.Retire != nil {
		go g.cfg.Retire()
	}
}

func (g *generation) isTrusted(ip netip.Addr) bool { return inPrefixes(g.cfg.TrustedNetworks, ip) }

// acquire returns the current generation, held: the caller releases it.
func (s *Server) acquire() *generation {
	for {
		// A generation replaced between the Load and the hold may already
		// be over; the next Load finds its successor.
		if g := s.gen.Load(); g.hold() {
			return g
		}
	}
}

// Reload puts a new configuration in force for the connections accepted
// from now on; the sessions in progress finish on the one they started
// with. A configuration the server cannot take (no hostname, no router, a
// submission listener being served without tls or auth) is refused with an
// error and the running one stays in force. The listeners themselves, the
// logger and the PROXY protocol sources (ProxyFrom) are those of the start:
// changing them needs a restart. The connection limits change at once for
// new connections; the connections counted so far stay counted.
func (s *Server) Reload(cfg Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	g, err := newGeneration(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	msa := s.serving[listenerSubmission] || s.serving[listenerSubmissions]
	s.mu.Unlock()
	if msa && (cfg.MSA == nil || cfg.TLS == nil) {
		return errors.New("gateway: the submission listeners are served and need tls and auth")
	}
	s.tracker.setLimits(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP)
	old := s.gen.Swap(g)
	old.release()
	return nil
}
