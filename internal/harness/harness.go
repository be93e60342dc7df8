// Package harness drives sekisho end to end for tests: it builds the real
// binary once, starts it with a generated configuration on free loopback
// ports, runs a real next-hop SMTP server that records what it receives, and
// talks SMTP with readable transcripts. Every end-to-end test of every issue
// uses it, together with internal/testdns, testslapd and testredis.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/sekisho once per test process (with the race detector
// when the tests run with it) and returns its path. With SEKISHO_BINARY set
// in the environment it builds nothing and returns that path instead (the
// benchmark, bench/, runs the binary `make build` made, or a profiling
// build of it).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("SEKISHO_BINARY"); p != "" {
			buildPath, buildErr = filepath.Abs(p)
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "sekisho-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "sekisho")
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/sekisho")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the sekisho module")
	}
	return filepath.Dir(gomod), nil
}

// Gateway is a running sekisho process.
type Gateway struct {
	t    testing.TB
	cmd  *exec.Cmd
	Dir  string // working directory (./var lives here)
	SMTP string // address of the smtp listener

	// Listeners are the addresses of the listeners that had logged that
	// they listen when the start returned, by name (smtp, submission, …).
	Listeners map[string]string

	mu      sync.Mutex
	log     bytes.Buffer
	lines   chan string
	exited  chan struct{}
	exitErr error
}

var listeningRE = regexp.MustCompile(`msg=listening listener=(\w+) addr=(\S+)`)

// Start runs `sekisho serve -config <file>` with the given YAML in a fresh
// working directory, and returns once every configured listener has logged
// that it listens. It is stopped (SIGTERM, then SIGKILL) at cleanup.
//
// A YAML that names no control socket gets TestControl's: the default of
// a file, /run/sekisho/control.sock, is one per host, and tests run
// gateways side by side.
func Start(t testing.TB, configYAML string) *Gateway {
	t.Helper()
	dir := t.TempDir()
	if !controlKey.MatchString(configYAML) {
		configYAML += "\n" + TestControl
	}
	cfgPath := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartArgs(t, dir, "serve", "-config", cfgPath)
}

// TestControl is the control section of a test's configuration: the
// socket in the gateway's working directory (relative, so that a long
// temporary directory does not exceed a socket path's 107 bytes).
const TestControl = "control: {socket: control.sock}\n"

var controlKey = regexp.MustCompile(`(?m)^control:`)

// StartArgs runs the binary with arbitrary arguments in dir.
func StartArgs(t testing.TB, dir string, args ...string) *Gateway {
	t.Helper()
	return StartProgram(t, dir, Binary(t), args...)
}

// StartProgram runs program with args in dir as StartArgs runs the binary:
// a sekisho installed elsewhere, or started through a program that execs
// it (setpriv to run it as another user), so that the process is sekisho.
func StartProgram(t testing.TB, dir, program string, args ...string) *Gateway {
	t.Helper()
	return StartProgramListening(t, "smtp", dir, program, args...)
}

// StartProgramListening is StartProgram for a configuration whose listener
// to wait for is not smtp (an MSA has only submission listeners): it
// returns once that listener has logged that it listens, with its address
// in Listeners (and SMTP set only when smtp has logged too).
func StartProgramListening(t testing.TB, listener, dir, program string, args ...string) *Gateway {
	t.Helper()
	return start(t, listener, dir, program, nil, args...)
}

// StartCmd is StartArgs with setup called on the command before it starts
// (to set its credentials, say).
func StartCmd(t testing.TB, dir string, setup func(*exec.Cmd), args ...string) *Gateway {
	t.Helper()
	return start(t, "smtp", dir, Binary(t), setup, args...)
}

// start runs program with args in dir, setup (if any) called on the
// command before it starts, and returns once listener has logged that it
// listens.
func start(t testing.TB, listener, dir, program string, setup func(*exec.Cmd), args ...string) *Gateway {
	t.Helper()
	g := &Gateway{t: t, Dir: dir, lines: make(chan string, 1024), exited: make(chan struct{})}
	g.cmd = exec.Command(program, args...)
	g.cmd.Dir = dir
	if setup != nil {
		setup(g.cmd)
	}
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stdout = g.cmd.Stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			g.mu.Lock()
			g.log.WriteString(line + "\n")
			g.mu.Unlock()
			select {
			case g.lines <- line:
			default:
			}
		}
		g.exitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.Stop()
		// The binary is built with -race when the tests are: a race it
		// found is a failure of the test that drove it, not a log line.
		if strings.Contains(g.Log(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in sekisho")
		}
		if t.Failed() {
			t.Logf("sekisho log:\n%s", g.Log())
		}
	})
	// The process says when it listens; wait for that line, not for a port.
	deadline := time.After(30 * time.Second)
	g.Listeners = map[string]string{}
	for g.Listeners[listener] == "" {
		select {
		case line := <-g.lines:
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				g.Listeners[m[1]] = m[2]
			}
		case <-g.exited:
			t.Fatalf("sekisho exited before listening: %v\n%s", g.exitErr, g.Log())
		case <-deadline:
			t.Fatalf("sekisho did not listen on %s within 30s\n%s", listener, g.Log())
		}
	}
	g.SMTP = g.Listeners["smtp"]
	return g
}

// Log returns everything the process has logged so far.
func (g *Gateway) Log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// WaitLog waits until a log line contains substr.
func (g *Gateway) WaitLog(substr string, timeout time.Duration) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		for _, l := range strings.Split(g.Log(), "\n") {
			if strings.Contains(l, substr) {
				return l
			}
		}
		select {
		case <-g.lines:
		case <-g.exited:
			for _, l := range strings.Split(g.Log(), "\n") {
				if strings.Contains(l, substr) {
					return l
				}
			}
			g.t.Fatalf("sekisho exited without logging %q", substr)
		case <-ctx.Done():
			g.t.Fatalf("no log line with %q within %v", substr, timeout)
		}
	}
}

// WaitLogCount waits until n log lines satisfy match and returns the n-th;
// each new line the process logs is the signal to look again.
func (g *Gateway) WaitLogCount(match func(line string) bool, n int, timeout time.Duration) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nth := func() (string, bool) {
		seen := 0
		for _, l := range strings.Split(g.Log(), "\n") {
			if match(l) {
				if seen++; seen == n {
					return l, true
				}
			}
		}
		return "", false
	}
	for {
		if l, ok := nth(); ok {
			return l
		}
		select {
		case <-g.lines:
		case <-g.exited:
			if l, ok := nth(); ok {
				return l
			}
			g.t.Fatalf("sekisho exited before its %d-th matching log line", n)
		case <-ctx.Done():
			g.t.Fatalf("no %d-th matching log line within %v", n, timeout)
		}
	}
}

// PID is the process's id (for its CPU time and memory in /proc).
func (g *Gateway) PID() int { return g.cmd.Process.Pid }

// Signal sends a signal to the process.
func (g *Gateway) Signal(sig syscall.Signal) {
	g.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to die.
func (g *Gateway) Kill() {
	g.cmd.Process.Kill()
	<-g.exited
}

// Wait waits for the process to exit and returns its error.
func (g *Gateway) Wait(timeout time.Duration) error {
	select {
	case <-g.exited:
		return g.exitErr
	case <-time.After(timeout):
		return fmt.Errorf("sekisho still running after %v", timeout)
	}
}

// Exited is closed when the process has exited.
func (g *Gateway) Exited() <-chan struct{} { return g.exited }

// Stop sends SIGTERM and waits; SIGKILL after 10 s.
func (g *Gateway) Stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		g.Kill()
	}
}
