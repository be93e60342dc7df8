package main

// The control socket of `sekisho serve` (gateway.Control, docs/cli.md):
// the verbs it answers (explain, report, status), and the CLI's side of
// it: explain, report and status ask the running gateway when one answers
// on control.socket, and do the work themselves when none does.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"sekisho/config"
	"sekisho/gateway"
	"sekisho/report"
)

// controlSource is what the verbs of a running gateway read: the
// generation in force, the listeners, the health prober.
type controlSource struct {
	srv      *gateway.Server
	reloader *reloader
	obs      *observability
	listen   *listenerSet
	control  atomic.Pointer[gateway.Control]
	started  time.Time
	report   func(context.Context, []time.Time) (*report.Report, error)
}

// startControl makes the control socket of cfg and answers its verbs.
// Another gateway answering on it, or a file there that is not a socket,
// is an error: serve stops. A socket that cannot be made (its directory
// cannot be created, no permission) is logged and serve goes on without
// it: mail does not wait for the admin's tools. takeOver: this process is
// the new one of an upgrade, the socket is its parent's.
func startControl(cfg *config.Config, src *controlSource, takeOver bool, log *slog.Logger) error {
	path := cfg.Control.Socket
	ctl, err := gateway.ListenControl(path, takeOver, log)
	if err != nil {
		if errors.Is(err, gateway.ErrControlAnswered) || errors.Is(err, gateway.ErrControlNotSocket) {
			return fmt.Errorf("control.socket: %w", err)
		}
		log.Error("control socket: cannot make it; sekisho explain, report and status cannot ask this gateway (docs/cli.md)", "path", path, "err", err)
		return nil
	}
	src.srv.HandleExplain(ctl)
	ctl.Handle("status", func(context.Context, json.RawMessage) (any, error) { return src.status(), nil })
	ctl.Handle("report", src.reportVerb)
	ctl.Handle("history", src.historyVerb)
	ctl.Handle("greylist-stats", src.greylistStatsVerb)
	src.control.Store(ctl)
	abs, _ := filepath.Abs(path)
	log.Info("control socket", "path", abs, "mode", "0660", "gid", os.Getegid())
	go func() {
		if err := ctl.Serve(); err != nil {
			log.Error("control socket failed", "path", path, "err", err)
		}
	}()
	return nil
}

// stopControl closes the control socket: removing the file, or leaving it
// to the new process of an upgrade (handedOver).
func (src *controlSource) stopControl(handedOver bool) {
	ctl := src.control.Swap(nil)
	if ctl == nil {
		return
	}
	if handedOver {
		ctl.Abandon()
		return
	}
	ctl.Close()
}

// reportRequest is the report verb's request: the Mondays of the weeks
// (YYYY-MM-DD), oldest first; none: the last report.DefaultWeeks complete
// weeks.
type reportRequest struct {
	Weeks []string `json:"weeks"`
}

// reportVerb answers the report verb with the report's JSON document
// (docs/report.md), read from the gateway's store.
func (src *controlSource) reportVerb(ctx context.Context, raw json.RawMessage) (any, error) {
	var req reportRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, gateway.BadRequest("report: %v", err)
	}
	if len(req.Weeks) > 530 {
		return nil, gateway.BadRequest("report: at most 530 weeks")
	}
	var weeks []time.Time
	for _, w := range req.Weeks {
		m, err := time.Parse(time.DateOnly, w)
		if err != nil || m.Weekday() != time.Monday {
			return nil, gateway.BadRequest("report: week %q is not a Monday, YYYY-MM-DD", w)
		}
		weeks = append(weeks, m)
	}
	r, err := src.report(ctx, weeks)
	if err != nil {
		return nil, err
	}
	return r.JSON(), nil
}

// status is the status verb's answer (`sekisho status`, docs/cli.md).
type status struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	PID     int    `json:"pid"`
	Started string `json:"started"`
	// Config is the -config file ("" for the embedded defaults);
	// Generation counts the configurations put in force: 1 at start, one
	// more for each SIGHUP that was applied; Loaded is when.
	Config      string             `json:"config"`
	Generation  int                `json:"generation"`
	Loaded      string             `json:"loaded"`
	Control     string             `json:"control"`
	Store       string             `json:"store"`
	Listeners   []statusListener   `json:"listeners"`
	Connections statusConnections  `json:"connections"`
	Ready       bool               `json:"ready"`
	Readiness   string             `json:"readiness"`
	Deps        []statusDependency `json:"dependencies"`
}

type statusListener struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Socket string `json:"socket"` // bound, inherited
}

type statusConnections struct {
	GreetPause int `json:"greet_pause"`
	Session    int `json:"session"`
}

type statusDependency struct {
	Name    string `json:"name"`
	Up      *bool  `json:"up"` // null: not probed yet
	Reason  string `json:"reason"`
	Checked string `json:"checked,omitempty"`
}

func (src *controlSource) status() status {
	g := src.reloader.current()
	st := status{
		Version: version, Go: runtime.Version(), PID: os.Getpid(), Started: src.started.UTC().Format(time.RFC3339),
		Config: src.reloader.path, Generation: g.number, Loaded: g.loaded.UTC().Format(time.RFC3339),
	}
	if abs, err := filepath.Abs(g.cfg.Store.Path); err == nil {
		st.Store = "embedded " + abs
	}
	if r := g.cfg.Store.Redis; r != nil {
		st.Store = fmt.Sprintf("redis %s %v", r.Mode(), r.Addrs)
	}
	if ctl := src.control.Load(); ctl != nil {
		st.Control, _ = filepath.Abs(ctl.Path())
	}
	for _, name := range listenerNames {
		if l := src.listen.get(name); l != nil {
			st.Listeners = append(st.Listeners, statusListener{Name: name, Addr: l.Addr().String(), Socket: src.listen.origin(name)})
		}
	}
	st.Connections.GreetPause, st.Connections.Session = src.srv.Connections()
	st.Ready, st.Readiness = src.obs.health.ready()
	for _, dep := range src.obs.health.configured() {
		s, ok := src.obs.health.state(dep)
		d := statusDependency{Name: dep, Reason: "not probed yet"}
		if ok {
			up := s.up
			d.Up, d.Reason = &up, s.reason
			if !s.checked.IsZero() {
				d.Checked = s.checked.UTC().Format(time.RFC3339)
			}
		}
		st.Deps = append(st.Deps, d)
	}
	return st
}

// askGateway connects to the gateway answering on cfg's control socket.
// nil, nil: none answers (no socket, or a stale one), the caller does the
// work itself. An error: one may be there but cannot be asked (no
// permission on the socket).
func askGateway(cfg *config.Config) (*gateway.ControlClient, error) {
	c, err := gateway.DialControl(cfg.Control.Socket)
	if errors.Is(err, gateway.ErrNoGateway) {
		return nil, nil
	}
	return c, err
}

const statusUsage = `usage: sekisho status [-config FILE] [-format text|json]

Asks the running gateway on its control socket (control.socket of the
configuration; docs/cli.md) what it listens on, its connections, its
dependencies and their health, its configuration generation and version.
Exit 0 when it answered, 1 when no gateway answers or it could not, 2
for a usage error.

`

// runStatus is `sekisho status`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", statusUsage, stdout, stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	format := fs.String("format", "text", "text or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	if *format != "text" && *format != "json" {
		return usageError(fs, stderr, "-format %q: want text or json", *format)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	c, err := askGateway(&cfg)
	if err == nil && c == nil {
		err = fmt.Errorf("no gateway answers on the control socket %s (not running, or running with another control.socket)", cfg.Control.Socket)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sekisho status:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st status
	if err := c.Call(ctx, "status", nil, &st); err != nil {
		fmt.Fprintln(stderr, "sekisho status:", err)
		return 1
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	printStatus(stdout, st)
	return 0
}

func printStatus(w io.Writer, st status) {
	cfgName := st.Config
	if cfgName == "" {
		cfgName = "(embedded defaults)"
	}
	fmt.Fprintf(w, "sekisho %s (%s), pid %d, running since %s\n", st.Version, st.Go, st.PID, st.Started)
	fmt.Fprintf(w, "configuration %s, generation %d, loaded %s\n", cfgName, st.Generation, st.Loaded)
	fmt.Fprintf(w, "control socket %s\nstate store %s\n\nlisteners:\n", st.Control, st.Store)
	for _, l := range st.Listeners {
		fmt.Fprintf(w, "  %-12s %-24s %s\n", l.Name, l.Addr, l.Socket)
	}
	fmt.Fprintf(w, "\nconnections: %d in the greet pause, %d in session\n", st.Connections.GreetPause, st.Connections.Session)
	fmt.Fprintf(w, "\ndependencies:\n")
	for _, d := range st.Deps {
		state := "unknown"
		if d.Up != nil {
			state = map[bool]string{true: "up", false: "DOWN"}[*d.Up]
		}
		line := fmt.Sprintf("  %-12s %-8s %s", d.Name, state, d.Reason)
		if d.Checked != "" {
			line += " (" + d.Checked + ")"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "\n%s\n", st.Readiness)
}
