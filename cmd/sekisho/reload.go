package main

// The configuration of `sekisho serve`, built once at start and again on
// every SIGHUP by the same code (buildGeneration): the checks, the routes,
// the limits, the lists, the certificate, the LDAP and DNS settings. The
// gateway holds the generation in force; a session keeps the one it started
// on (gateway.Server.Reload). What lives as long as the process is shared by
// every generation: the logger, the state store, the report counter, the
// metrics registry, the health prober and the alarm.

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/gateway"
	"sekisho/policy"
	"sekisho/relay"
	"sekisho/report"
)

// generation is what runServe builds from one reading of the configuration
// file.
type generation struct {
	cfg   config.Config
	d     *deps // its resolver, directory and bad-domain list
	chain *filters.Chain
	gcfg  gateway.Config
	cert  *certificate // nil without tls.cert
	// dir holds the LDAP directory while this generation uses it; nil
	// without ldap.urls. ldapPassword is the password it was built with.
	dir          *sharedResource
	ldapPassword string
	// number counts the generations of the process: 1 at start, one more
	// for each reload put in force; loaded is when it was (sekisho status).
	number int
	loaded time.Time
}

// sharedResource is a resource several generations may use (the LDAP
// directory, kept across a reload that does not change ldap:): it is
// closed when the last generation using it retires, so a session in
// progress never sees its directory closed under it.
type sharedResource struct {
	refs  atomic.Int64
	close func()
}

func newSharedResource(close func()) *sharedResource {
	r := &sharedResource{close: close}
	r.refs.Store(1)
	return r
}

func (r *sharedResource) hold() *sharedResource {
	r.refs.Add(1)
	return r
}

func (r *sharedResource) release() {
	if r != nil && r.refs.Add(-1) == 0 {
		r.close()
	}
}

// retire is the gateway's Retire hook: the generation was replaced and its
// last session has ended. The router's idle next-hop connections get QUIT
// (the new generation's router dials its own). The resolver needs nothing:
// it holds no connection between lookups (each query has its own socket),
// so the garbage collector takes it.
func (g *generation) retire() {
	g.gcfg.Router.Close()
	g.dir.release()
}

// buildGeneration builds the chain of checks and the gateway's
// configuration from cfg on the lookups of d. prev is the generation in
// force (nil at start): its certificate is kept when tls.cert and tls.key
// name the same files (and re-read after the reload succeeds), and so is
// its login service (with its throttles and failure counts) when the
// directory and auth: did not change. listen is the listeners the process
// serves, which a reload does not change.
func buildGeneration(cfg *config.Config, d *deps, prev *generation, listen config.ListenConfig) (*generation, error) {
	g := &generation{cfg: *cfg, d: d}
	files, err := cfg.Files()
	if err != nil {
		return nil, err
	}
	// A later reload keeps the directory only if the file still holds
	// this password.
	g.ldapPassword = files.LDAPPassword
	chain, err := buildChain(cfg, d)
	if err != nil {
		return nil, err
	}
	g.chain = chain
	gcfg := gatewayConfig(cfg)
	gcfg.Logger = d.log
	gcfg.Chain = chain
	gcfg.Router.MailHosts = d.resolver
	if err := d.wireRelayTLS(cfg, gcfg.Router); err != nil {
		return nil, err
	}
	if prev != nil {
		// One set of relay counters for /metrics, whatever the generation.
		gcfg.Router.Counters = prev.gcfg.Router.Counters
		d.tlsCounters = prev.d.tlsCounters
		gcfg.Router.CacheCounters = prev.gcfg.Router.CacheCounters
		d.cacheCounters = prev.d.cacheCounters
	}
	if cfg.TLS.Cert != "" {
		if prev != nil && prev.cert != nil && prev.cfg.TLS == cfg.TLS {
			g.cert = prev.cert // the pair the loader read again goes in at applied
		} else {
			g.cert = newCertificate(cfg.TLS.Cert, cfg.TLS.Key, files.TLSPair, d.log)
		}
		gcfg.TLS = g.cert.config()
	}
	store, err := d.stateStore(cfg)
	if err != nil {
		return nil, err
	}
	if listen.Submission != "" || listen.Submissions != "" {
		if cfg.TLS.Cert == "" || d.directory == nil {
			return nil, fmt.Errorf("the submission listeners are served (a restart stops them) and need tls.cert, tls.key and ldap.urls")
		}
		if prev != nil && prev.gcfg.MSA != nil && prev.d.directory == d.directory && prev.cfg.Auth == cfg.Auth {
			gcfg.MSA = prev.gcfg.MSA // the same service: its throttles and failure counts go on
		} else {
			gcfg.MSA = msaConfig(cfg, d.directory, sharedBuckets(cfg, store), d.log)
		}
	}
	signer, err := cfg.DKIMSigner()
	if err != nil {
		return nil, err
	}
	if signer != nil {
		gcfg.DKIM = signer
	}
	if gcfg.GreetPause > 0 {
		gcfg.GreetMemory = store // remembered clients skip the pause (docs/config.md)
	}
	gcfg.ObserveNextHop = d.observe
	gcfg.Retire = g.retire
	g.gcfg = gcfg
	return g, nil
}

// startGateway builds the first generation from cfg on d, the process-wide
// report counter and recorder, the gateway and the metrics registry, and
// has SIGHUP reload configPath ("" : the embedded defaults, not reloaded)
// until ctx ends. Close the counter after the listeners, before the store.
func startGateway(ctx context.Context, cfg *config.Config, d *deps, obs *observability, configPath string) (*gateway.Server, *report.Counter, *reloader, error) {
	g, err := buildGeneration(cfg, d, nil, cfg.Listen)
	if err != nil {
		return nil, nil, nil, err
	}
	g.number, g.loaded = 1, time.Now()
	if d.directory != nil {
		dir := d.directory
		g.dir = newSharedResource(func() { dir.Close() })
	}
	// Every decision is counted for the weekly reports, in the one state
	// store (docs/report.md).
	store, err := d.stateStore(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	counter := newCounter(cfg, store, d.log)
	g.gcfg.Recorder = obs.recorder(g.gcfg.Router, counter)
	obs.history = newHistoryRecorder(cfg, store, d.log)
	g.gcfg.History = obs.history
	srv, err := gateway.New(g.gcfg)
	if err != nil {
		return nil, nil, nil, err
	}
	checks := newLiveChecks(g.chain, g.gcfg.MSA)
	if err := obs.start(ctx, srv, checks); err != nil {
		return nil, nil, nil, err
	}
	r := &reloader{path: configPath, log: d.log, srv: srv, obs: obs, checks: checks,
		recorder: g.gcfg.Recorder, listen: cfg.Listen, cur: g}
	watchReloads(ctx, r)
	return srv, counter, r, nil
}

// reloadDeps builds the lookups of a reloaded configuration. What did not
// change is kept: the resolver when dns: is the same, the directory (with
// its pooled connections) when ldap: and the password are the same, the
// bad-domain list when its file is the same. The state store is the
// process's.
func reloadDeps(cfg *config.Config, prev *generation) (*deps, *sharedResource, error) {
	pd := prev.d
	d := &deps{log: pd.log, store: pd.store, tlsCounters: pd.tlsCounters, cacheCounters: pd.cacheCounters, observe: pd.observe, authResults: pd.authResults}
	d.resolver = pd.resolver
	if !reflect.DeepEqual(cfg.DNS, prev.cfg.DNS) {
		r, err := newResolver(cfg)
		if err != nil {
			return nil, nil, err
		}
		r.Observe(d.observe)
		d.resolver = r
	}

	// The list the loader read: in a new holder when the file is another
	// one (put in force here), in the same one otherwise (at applied, so
	// that a reload refused later leaves the list in force alone).
	d.badDomains = pd.badDomains
	if path := badDomainsPath(cfg); path != badDomainsPath(&prev.cfg) {
		d.badDomains = policy.NewBadDomains(policy.BadDomainsOptions{Logger: d.log})
		files, err := cfg.Files()
		if err != nil {
			return nil, nil, err
		}
		if files.BadDomains != nil {
			d.badDomains.Put(files.BadDomains, "reload")
		}
	}

	if len(cfg.LDAP.URLs) == 0 {
		return d, nil, nil
	}
	if prev.dir != nil && reflect.DeepEqual(cfg.LDAP, prev.cfg.LDAP) && samePassword(cfg, prev) {
		d.directory = pd.directory
		return d, prev.dir.hold(), nil
	}
	dir, err := newDirectory(cfg)
	if err != nil {
		return nil, nil, err
	}
	dir.Observe(d.observe)
	d.directory = dir
	return d, newSharedResource(func() { dir.Close() }), nil
}

// badDomainsPath is the bad-domain list in use: "" when none or when the
// domain check is off.
func badDomainsPath(cfg *config.Config) string {
	if cfg.Checks.Domain.Off {
		return ""
	}
	return cfg.Checks.Domain.BadDomains
}

// samePassword reports whether the LDAP bind password file still holds the
// password the running directory was built with (a rotated password is a
// new directory).
func samePassword(cfg *config.Config, prev *generation) bool {
	files, err := cfg.Files()
	return err == nil && files.LDAPPassword == prev.ldapPassword
}

// reloader puts a re-read configuration in force on SIGHUP.
type reloader struct {
	path     string // the -config file
	log      *slog.Logger
	srv      *gateway.Server
	obs      *observability
	checks   *liveChecks
	recorder report.Recorder     // the process's: health, alarm, report counter
	listen   config.ListenConfig // what the process serves

	mu  sync.Mutex // one reload at a time; guards cur and the watch
	cur *generation

	watched    *policy.BadDomains // the list whose file is watched
	watchStop  context.CancelFunc
	watchMutex sync.Mutex
}

func (r *reloader) current() *generation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// reload reads the configuration file again through the loader of start
// and check-config (config.Load) and puts it in force for new connections.
// A file the loader refuses (one that does not parse or validate, an empty
// or cut-short one, one naming a file that does not load) is refused with
// one ERROR line naming the file and, where there is one, the line, and so
// is one whose generation cannot be built; the running configuration then
// stays in force, its certificate and lists included. What only a restart
// changes is named in a WARN line; the rest is applied.
func (r *reloader) reload(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.path == "" {
		r.log.Warn("SIGHUP: no -config file, the embedded defaults stay in force")
		return
	}
	cfg, err := config.Load(r.path)
	if err != nil {
		r.log.Error("configuration reload refused, the running configuration stays in force", "file", r.path, "err", oneLine(err))
		return
	}
	prev := r.cur
	if restart := config.NeedsRestart(&prev.cfg, &cfg); len(restart) > 0 {
		r.log.Warn("configuration reload: needs a restart: "+strings.Join(restart, ", ")+" (their running values stay, the rest is applied)", "file", r.path)
		cfg.KeepRunning(&prev.cfg)
	}
	d, dir, err := reloadDeps(&cfg, prev)
	if err == nil {
		var g *generation
		if g, err = buildGeneration(&cfg, d, prev, r.listen); err == nil {
			g.dir = dir
			g.gcfg.Recorder = r.recorder
			g.gcfg.History = r.obs.history
			g.number, g.loaded = prev.number+1, time.Now()
			if err = r.srv.Reload(g.gcfg); err == nil {
				r.cur = g
				r.applied(ctx, prev, g)
				return
			}
		}
		dir.release()
	}
	r.log.Error("configuration reload refused, the running configuration stays in force", "file", r.path, "err", oneLine(err))
}

// applied finishes a reload that is in force: the process-wide parts follow
// the new generation, and the files kept by name are read again.
func (r *reloader) applied(ctx context.Context, prev, g *generation) {
	r.checks.follow(g.chain, g.gcfg.MSA)
	r.obs.health.follow(&g.cfg, g.d, g.gcfg.Router)
	r.obs.autoconfig.Set(g.cfg.AutoconfigSettings())
	// The files kept by name hold what the loader read now.
	files, _ := g.cfg.Files() // read by config.Load: no error here
	if g.d.badDomains != prev.d.badDomains {
		r.watchBadDomains(ctx, g.d.badDomains)
	} else if files.BadDomains != nil {
		g.d.badDomains.Put(files.BadDomains, "reload")
	}
	if g.cert != nil && g.cert == prev.cert {
		g.cert.put(files.TLSPair)
	}
	changed := differing([]setting{
		{"hostname", prev.cfg.Hostname, g.cfg.Hostname},
		{"local_domains", prev.cfg.LocalDomains, g.cfg.LocalDomains},
		{"trusted_networks", prev.cfg.TrustedNetworks, g.cfg.TrustedNetworks},
		{"routes", prev.cfg.Routes, g.cfg.Routes},
		{"next_hop", prev.cfg.NextHop, g.cfg.NextHop},
		{"checks", prev.cfg.Checks, g.cfg.Checks},
		{"limits", prev.cfg.Limits, g.cfg.Limits},
		{"tls", prev.cfg.TLS, g.cfg.TLS},
		{"dns", prev.cfg.DNS, g.cfg.DNS},
		{"ldap", prev.cfg.LDAP, g.cfg.LDAP},
		{"auth", prev.cfg.Auth, g.cfg.Auth},
		{"dkim", prev.cfg.DKIM, g.cfg.DKIM},
		{"autoconfig", prev.cfg.Autoconfig, g.cfg.Autoconfig},
	})
	summary := strings.Join(changed, ", ")
	if summary == "" {
		summary = "none"
	}
	r.log.Info("configuration reloaded: new connections use it, sessions in progress finish on the previous one",
		"file", r.path, "changed", summary)
}

// oneLine joins a multi-line error (several file:line problems) for one
// log line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// setting is one part of the configuration, as it was and as it is.
type setting struct {
	name    string
	was, is any
}

// differing names the settings that changed.
func differing(settings []setting) []string {
	var out []string
	for _, s := range settings {
		if !reflect.DeepEqual(s.was, s.is) {
			out = append(out, s.name)
		}
	}
	return out
}

// watchBadDomains watches the file of list (none when it has no file),
// instead of the one watched so far.
func (r *reloader) watchBadDomains(ctx context.Context, list *policy.BadDomains) {
	r.watchMutex.Lock()
	defer r.watchMutex.Unlock()
	if r.watchStop != nil {
		r.watchStop()
		r.watchStop = nil
	}
	r.watched = list
	if list.List() == nil {
		return
	}
	wctx, stop := context.WithCancel(ctx)
	// Watch returns once the watch is in place, so an edit made as soon
	// as the gateway listens is not missed.
	if err := list.Watch(wctx); err != nil {
		stop()
		r.log.Error("cannot watch the bad-domain list; SIGHUP still reloads it", "err", err)
		return
	}
	r.watchStop = stop
}

func (r *reloader) stopWatch() {
	r.watchMutex.Lock()
	defer r.watchMutex.Unlock()
	if r.watchStop != nil {
		r.watchStop()
	}
}

// follow makes the health prober probe the lookups of d (the resolver and
// the directory of the generation in force) and judge the next hops by
// router's routes. After a reload the routes' last outcomes are forgotten:
// their indexes may name other routes now.
func (h *health) follow(cfg *config.Config, d *deps, router *relay.Router) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resolver, h.dir, h.ldapAddr = d.resolver, d.directory, ""
	if d.directory != nil {
		// An address that does not exist, at the canary's domain: the
		// search then needs the canary, and nothing is cached (only found
		// entries are).
		dom := cfg.LDAP.Canary[strings.LastIndexByte(cfg.LDAP.Canary, '@')+1:]
		h.ldapAddr = "sekisho-health-probe@" + dom
	} else {
		delete(h.deps, config.DepLDAPCanary)
	}
	h.router, h.routes = router, nil
	for _, r := range cfg.Routes {
		h.routes = append(h.routes, r.Domains[0])
	}
	h.hops = map[int]depState{}
}

// liveChecks publishes the counters of the checks in force
// (checksCollector), following configuration reloads.
type liveChecks struct {
	cur atomic.Pointer[checksCollector]
}

func newLiveChecks(chain *filters.Chain, msa *gateway.MSAConfig) *liveChecks {
	l := &liveChecks{}
	l.follow(chain, msa)
	return l
}

func (l *liveChecks) follow(chain *filters.Chain, msa *gateway.MSAConfig) {
	c := newChecksCollector(chain)
	if msa != nil {
		c.auth = msa.Auth
	}
	l.cur.Store(c)
}

func (l *liveChecks) Describe(ch chan<- *prometheus.Desc) { l.cur.Load().Describe(ch) }

func (l *liveChecks) Collect(ch chan<- prometheus.Metric) { l.cur.Load().Collect(ch) }
