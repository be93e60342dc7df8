// Command sekisho is an anti-spam SMTP gateway with fail-safe lookups: the
// inbound MX, outbound relay and MSA of a campus, holding no queue of its own.
//
// Usage:
//
//	sekisho serve [-config FILE]         run the gateway
//	sekisho check-config [-config FILE] [-changed | -defaults]
//	                                     validate a configuration and print the effective settings
//	sekisho explain [-config FILE] -ip A -helo H -from S -rcpt R [-header-file F]
//	                                     why would this mail be refused?
//	sekisho baddomains [-file F] list|add D|remove D|test D
//	                                     show or edit the bad-domain list
//	sekisho dkim keygen -domain D -selector S [-algo rsa|ed25519] [-out FILE]
//	                                     make a DKIM key, print its DNS record
//	sekisho report [-config FILE] [-weeks N | -from DATE -to DATE] [-format text|csv|json]
//	                                     weekly counts of deferrals and rejections by cause
//	sekisho status [-config FILE]        ask the running gateway: listeners, dependencies, generation
//	sekisho autoconfig -dns [-config FILE]
//	                                     the SRV records that locate the submission listeners
//	sekisho greylist stats [-config FILE] [-week YYYY-Www] [-top N] [-format text|json]
//	                                     the week's longest greylisting delays by sender domain
//	sekisho version                      print the version, commit and Go version
//	sekisho help [COMMAND]               the list of commands, or a command's help
//
// All wiring is explicit here: main builds the lookups, the checks in the
// chain and the listeners from the configuration; there are no init()
// registries.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"sekisho/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	if cmd == "help" || isHelp(cmd) {
		if cmd == "help" && len(rest) > 0 {
			// sekisho help CMD: CMD's own help, as CMD -h prints it.
			if _, ok := commands[rest[0]]; !ok {
				fmt.Fprintf(stderr, "sekisho help: unknown command %q\n", rest[0])
				usage(stderr)
				return exitUsage
			}
			return run([]string{rest[0], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	}
	if cmd == "-version" || cmd == "--version" {
		cmd = "version"
	}
	c, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "sekisho: unknown command %q\n", cmd)
		usage(stderr)
		return exitUsage
	}
	return c(rest, stdout, stderr)
}

// commands are the subcommands, by name (docs/cli.md).
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"serve":        runServe,
	"check-config": runCheckConfig,
	"explain":      runExplain,
	"baddomains":   runBaddomains,
	"dkim":         runDKIM,
	"report":       runReport,
	"status":       runStatus,
	"history":      runHistory,
	"autoconfig":   runAutoconfig,
	"greylist":     runGreylist,
	"version":      runVersion,
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: sekisho COMMAND [flags] [arguments]

  sekisho serve [-config FILE]         run the gateway (no file: embedded defaults)
  sekisho check-config [-config FILE] [-changed | -defaults]
                                       validate a configuration, print the effective settings
  sekisho explain [-config FILE] -ip A -helo H -from S -rcpt R [-header-file F]
                                       run the checks for one transaction without sending mail
                                       (asks the running gateway when one answers)
  sekisho baddomains [-file F] list|add D|remove D|test D
                                       show or edit the known-bad domain list (atomically)
  sekisho dkim keygen -domain D -selector S [-algo rsa|ed25519] [-out FILE]
                                       make a DKIM signing key, print the DNS record to publish
  sekisho report [-config FILE] [-weeks N | -from DATE -to DATE] [-format text|csv|json]
                                       weekly counts of deferrals and rejections by cause (docs/report.md)
  sekisho history [-config FILE] [-from ADDR|@DOMAIN] [-to ADDR] [-client NET] [-msgid ID]
                 [-session ID] [-since 24h] [-outcome refused|deferred|accepted] [-format text|json]
                                       every decision of the last days, newest first (docs/history.md)
  sekisho status [-config FILE]        what the running gateway listens on, its dependencies' health,
                                       its configuration generation and version
  sekisho autoconfig -dns [-config FILE]
                                       the DNS SRV records that locate the submission listeners (docs/msa.md)
  sekisho greylist stats [-config FILE] [-week YYYY-Www] [-top N] [-format text|json]
                                       the week's longest greylisting delays and widest retry pools by sender domain
  sekisho version                      print the version, the commit and the Go version it was built with
  sekisho help [COMMAND]               this list, or a command's help (as COMMAND -h)

Flags may come before or after the arguments. Exit status: 0 done, 1
refused or failed, 2 usage error; explain: 0 accepted, 1 refused, 2
deferred, 64 usage error (docs/cli.md).
`)
}

const checkConfigUsage = `usage: sekisho check-config [-config FILE] [-changed | -defaults]

Loads the configuration as serve would (every file it names is opened) and
prints the settings in force as YAML that check-config reads back to the same
configuration. Exit 0 when it is valid, 1 with the error (file:line) when not,
2 for a usage error.
`

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", checkConfigUsage, stdout, stderr)
	path := fs.String("config", "", "the configuration file (default: the embedded defaults)")
	changed := fs.Bool("changed", false, "only what differs from the defaults, and hostname, local_domains\nand routes, which a file must say (Postfix's postconf -n)")
	defaults := fs.Bool("defaults", false, "the defaults, without reading a file (postconf -d)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	if *changed && *defaults {
		return usageError(fs, stderr, "-changed and -defaults exclude each other")
	}
	if *defaults {
		def := config.Defaults()
		return printConfig(config.Marshal, &def, "# the defaults (sekisho serve without -config, which also reads ./baddomains.txt where there is one):", stdout, stderr)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *changed {
		return printConfig(config.MarshalChanged, &cfg, "# configuration is valid; settings that differ from the defaults:", stdout, stderr)
	}
	return printConfig(config.Marshal, &cfg, "# configuration is valid; effective settings:", stdout, stderr)
}

// printConfig prints a configuration under a heading comment.
func printConfig(marshal func(*config.Config) ([]byte, error), cfg *config.Config, heading string, stdout, stderr io.Writer) int {
	out, err := marshal(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, heading)
	stdout.Write(out)
	return 0
}

func newLogger(cfg config.LogConfig, w io.Writer) *slog.Logger {
	level, _ := config.ParseLevel(cfg.Level)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

const serveUsage = `usage: sekisho serve [-config FILE]

Runs the gateway on the configuration FILE, or without one on the embedded
defaults: 127.0.0.1:2525, mail for localhost delivered to ./var/mail, the
state and the control socket under ./var. Logs go to stderr. SIGHUP reloads
the configuration, SIGTERM and SIGINT stop it after the transactions in
flight, SIGUSR2 upgrades it in place (docs/config.md, "Signals").
Exit 0 when stopped by a signal, 1 when it cannot start or a listener
fails, 2 for a usage error.
`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", serveUsage, stdout, stderr)
	path := fs.String("config", "", "the configuration file (default: the embedded defaults)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)

	d, err := newDeps(&cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer d.close()
	obs := newObservability(&cfg, d, log)
	ctx, stopReloads := context.WithCancel(context.Background())
	defer stopReloads()
	// The checks, routes and the rest, built again on SIGHUP (reload.go).
	srv, counter, reloads, err := startGateway(ctx, &cfg, d, obs, *path)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}

	// Signals are caught before any socket is announced: a SIGUSR2 sent as
	// soon as this process says it serves must not kill it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)

	// The new process of an upgrade takes the control socket over from its
	// parent (acquireListeners clears the variable).
	upgradeChild := os.Getenv(envListenParent) == strconv.Itoa(os.Getppid())
	// Every listener is there (inherited or bound, listeners.go) before any
	// is announced: once the log says "listening", every configured socket
	// accepts connections.
	lset, err := acquireListeners(cfg.Listen)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	loadReport := reportLoader(&cfg, d)
	// The control socket: explain, report and status ask this gateway
	// (control.go, docs/cli.md). It answers through the drain.
	ctl := &controlSource{srv: srv, reloader: reloads, obs: obs, listen: lset, started: time.Now(), report: loadReport}
	if err := startControl(&cfg, ctl, upgradeChild, log); err != nil {
		lset.close()
		log.Error("cannot start", "err", err)
		return 1
	}
	defer ctl.stopControl(false)
	errc := make(chan error, 8)
	var httpSrv *http.Server
	if httpL := lset.get("http"); httpL != nil {
		httpSrv = newHTTPServer(httpHandler(obs), httpLimits)
		httpSrv.Handler = withReportPages(httpSrv.Handler, loadReport)
		httpSrv.Handler = withHistoryPage(httpSrv.Handler, obs.searchHistory)
		httpSrv.Handler = withAutoconfig(httpSrv.Handler, obs.autoconfig)
		log.Info("listening", "listener", "http", "addr", httpL.Addr().String(), "socket", lset.origin("http"))
		go func() {
			if err := httpSrv.Serve(httpL); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	for _, l := range []struct {
		name  string
		serve func(net.Listener) error
	}{{"smtp", srv.ServeSMTP}, {"lmtp", srv.ServeLMTP}, {"submission", srv.ServeSubmission}, {"submissions", srv.ServeSubmissions}} {
		if ln := lset.get(l.name); ln != nil {
			log.Info("listening", "listener", l.name, "addr", ln.Addr().String(), "socket", lset.origin(l.name), "version", version, "pid", os.Getpid())
			go func() { errc <- l.serve(ln) }()
		}
	}
	notifyReady(log) // the process that started this one for an upgrade may drain now

	// SIGUSR2 starts an upgrade (listeners.go); this process serves until
	// the new one does, then drains as on SIGTERM.
	upgradeCtx, abandonUpgrade := context.WithCancelCause(context.Background())
	defer abandonUpgrade(nil)
	upgraded := make(chan error, 1)
	upgrading, handedOver := false, false
	for stop := false; !stop; {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGUSR2 {
				if upgrading {
					log.Warn("upgrade: one is already under way; SIGUSR2 ignored")
					continue
				}
				if err := upgradeRefusal(&cfg); err != nil {
					log.Error("upgrade refused: this process goes on serving", "err", err)
					continue
				}
				upgrading = true
				go func() {
					_, err := startUpgrade(upgradeCtx, lset, log)
					upgraded <- err
				}()
				continue
			}
			abandonUpgrade(fmt.Errorf("%v received", sig))
			obs.shuttingDown() // /readyz is 503 from now on
			log.Info("shutting down: no new connections, transactions in flight may finish", "signal", sig.String(), "grace", cfg.Limits.ShutdownGrace)
			stop = true
		case err := <-upgraded:
			upgrading = false
			if err != nil {
				log.Error("upgrade failed: this process goes on serving", "err", err)
				// The new process may have taken the control socket
				// before it failed: take it back.
				ctl.stopControl(true)
				if err := startControl(&cfg, ctl, true, log); err != nil {
					log.Error("control socket not taken back", "err", err)
				}
				continue
			}
			ctl.stopControl(true) // the new process answers on it
			obs.shuttingDown()
			log.Info("upgrade: shutting down: the new process accepts on the same sockets, transactions in flight here may finish", "grace", cfg.Limits.ShutdownGrace)
			handedOver, stop = true, true
		case err := <-errc:
			log.Error("listener failed", "err", err)
			return 1
		}
	}
	if handedOver && httpSrv != nil {
		// The new process answers /readyz on the same socket: stop taking
		// http connections here at once (and close idle ones) so that a
		// load balancer's next check reaches it, not this draining process.
		go httpSrv.Shutdown(context.Background())
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownGrace)
	defer cancel()
	// The http listener stays open through the drain: /readyz says 503
	// meanwhile, so that a load balancer sends new connections elsewhere.
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown grace period over: remaining sessions were told 421", "err", err)
	}
	if httpSrv != nil {
		httpSrv.Close()
	}
	// The counts still in memory go to the store before it is closed.
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := counter.Close(fctx); err != nil {
		log.Warn("report counts not flushed at shutdown", "err", err)
	}
	if obs.history != nil {
		if err := obs.history.Close(fctx); err != nil {
			log.Warn("history records not written at shutdown", "err", err)
		}
	}
	log.Info("stopped")
	return 0
}

// httpTimeouts bound what a client of the http listener (/metrics,
// /healthz) may hold: a scraper that opens a connection and sends half a
// request, or stops reading, is disconnected instead of keeping a goroutine
// and a socket forever.
type httpTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// httpLimits are the http listener's timeouts: generous for a scraper on a
// busy host, short enough that stalled connections do not pile up.
var httpLimits = httpTimeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second}

func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
}

// httpHandler serves /metrics (docs/metrics.md), /healthz (liveness: the
// process answers) and /readyz (readiness: 503 while draining or while a
// required dependency is down).
func httpHandler(o *observability) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(o.reg))
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/readyz", o.health.readyz)
	return mux
}
