package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
)

// The restart tests run a client loop against the gateway while it is
// replaced by a new process, and count what a sending MTA would see. They
// start sekisho themselves rather than with harness.Start: the processes of
// an upgrade are started by sekisho, not by the test, and share one stderr.

// restartLoad is a client loop: senders, each sending one message per
// connection as fast as it can, from 127.0.0.1 (trusted: no check slows it),
// and probers that only connect, read the banner and QUIT, as fast as they
// can: they keep connections in the listening socket's queue, where a
// hand-over that closes the socket would reset them.
type restartLoad struct {
	addr    string
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
	next    atomic.Int64 // message numbers
	mu      sync.Mutex
	ok      map[int64]bool // messages that got 250 at the end of DATA
	refused []string       // dial errors, and connections reset or closed before the banner
	perm    []string       // 5xx replies
	temp    atomic.Int64   // 4xx replies (retried, as an MTA would)
	broken  atomic.Int64   // connections broken after the banner, before the final 250 (retried)
	probes  atomic.Int64   // banners the probers got
}

func startLoad(addr string, senders, probers int) *restartLoad {
	ld := &restartLoad{addr: addr, stop: make(chan struct{}), ok: map[int64]bool{}}
	for range probers {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				ld.probe()
			}
		}()
	}
	for range senders {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for {
				n := ld.next.Add(1)
				for { // the same message until it is accepted, as an MTA retries
					select {
					case <-ld.stop:
						return
					default:
					}
					if ld.send(n) {
						break
					}
				}
			}
		}()
	}
	return ld
}

// accepted returns how many messages got their 250.
func (ld *restartLoad) accepted() int {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return len(ld.ok)
}

// waitAccepted waits until n messages in all were accepted.
func (ld *restartLoad) waitAccepted(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for ld.accepted() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages accepted within %v, want %d", ld.accepted(), timeout, n)
		}
		time.Sleep(10 * time.Millisecond) // polling a count: no event to wait for
	}
}

// finish stops the senders (an attempt under way ends first).
func (ld *restartLoad) finish() {
	ld.stopped.Do(func() { close(ld.stop) })
	ld.wg.Wait()
}

// probe connects, reads the banner and says QUIT.
func (ld *restartLoad) probe() {
	c, ok := ld.dial()
	if ok {
		ld.probes.Add(1)
		c.Quit()
		c.Close()
	}
}

// dial connects and reads the banner; a refused connection is counted, and
// so is a 4xx or 5xx banner.
func (ld *restartLoad) dial() (*smtp.Client, bool) {
	conn, err := net.DialTimeout("tcp", ld.addr, 10*time.Second)
	if err != nil {
		ld.mu.Lock()
		ld.refused = append(ld.refused, "dial: "+err.Error())
		ld.mu.Unlock()
		return nil, false
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "campus.test") // reads the banner
	if err != nil {
		conn.Close()
		if !ld.reply(err) {
			ld.mu.Lock()
			ld.refused = append(ld.refused, "before the banner: "+err.Error())
			ld.mu.Unlock()
		}
		return nil, false
	}
	return c, true
}

// send makes one attempt at message n and reports whether it got its 250.
func (ld *restartLoad) send(n int64) bool {
	c, ok := ld.dial()
	if !ok {
		return false
	}
	defer c.Close()
	step := func() error {
		if err := c.Hello("client.example.org"); err != nil {
			return err
		}
		if err := c.Mail("bob@example.org"); err != nil {
			return err
		}
		if err := c.Rcpt("alice@campus.test"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "From: Bob <bob@example.org>\r\nTo: alice@campus.test\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"+
			"Subject: restart %d\r\nMessage-ID: <restart-%d@example.org>\r\n\r\nMessage %d of the restart test.\r\n", n, n, n)
		return w.Close() // the reply to the final dot
	}
	if err := step(); err != nil {
		if !ld.reply(err) {
			ld.broken.Add(1)
		}
		return false
	}
	ld.mu.Lock()
	ld.ok[n] = true
	ld.mu.Unlock()
	c.Quit()
	return true
}

// reply counts an SMTP reply that is not a success; false if err is not one.
func (ld *restartLoad) reply(err error) bool {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.Code >= 500 {
		ld.mu.Lock()
		ld.perm = append(ld.perm, te.Error())
		ld.mu.Unlock()
	} else {
		ld.temp.Add(1)
	}
	return true
}

// check asserts what the loop saw and what the next hop holds: no refused
// connection, no 5xx, every accepted message relayed.
func (ld *restartLoad) check(t *testing.T, hop *harness.NextHop, handovers []time.Duration) {
	t.Helper()
	relayed := map[int64]bool{}
	for _, m := range hop.Messages() {
		if s := restartIDRE.FindSubmatch(m.Data); s != nil {
			n, _ := strconv.ParseInt(string(s[1]), 10, 64)
			relayed[n] = true
		}
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	var lost []int64
	for n := range ld.ok {
		if !relayed[n] {
			lost = append(lost, n)
		}
	}
	t.Logf("messages accepted %d (attempts %d), banners to probers %d, refused %d, lost %d, 5xx %d, 4xx %d (retried), broken after the banner %d (retried); hand-overs %v",
		len(ld.ok), ld.next.Load(), ld.probes.Load(), len(ld.refused), len(lost), len(ld.perm), ld.temp.Load(), ld.broken.Load(), handovers)
	if len(ld.refused) > 0 {
		t.Errorf("%d connections refused, want 0; first: %v", len(ld.refused), ld.refused[:min(5, len(ld.refused))])
	}
	if len(lost) > 0 {
		t.Errorf("%d messages accepted with 250 never reached the next hop, want 0: %v", len(lost), lost[:min(10, len(lost))])
	}
	if len(ld.perm) > 0 {
		t.Errorf("%d replies 5xx, want 0; first: %v", len(ld.perm), ld.perm[:min(5, len(ld.perm))])
	}
}

var restartIDRE = regexp.MustCompile(`(?m)^Message-ID: <restart-(\d+)@example\.org>\r?$`)

// procLog collects the stderr every sekisho process of a test shares.
type procLog struct {
	mu    sync.Mutex
	text  strings.Builder
	w     *os.File // the write end, given to each process started by the test
	lines chan struct{}
}

func newProcLog(t *testing.T) *procLog {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pl := &procLog{w: w, lines: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			pl.mu.Lock()
			pl.text.WriteString(sc.Text() + "\n")
			pl.mu.Unlock()
			select {
			case pl.lines <- struct{}{}:
			default:
			}
		}
		r.Close()
	}()
	t.Cleanup(func() {
		w.Close()
		if t.Failed() {
			t.Logf("sekisho log:\n%s", pl.String())
		}
	})
	return pl
}

func (pl *procLog) String() string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.text.String()
}

// wait waits until re matches the log count times in all and returns the
// submatches of the last match.
func (pl *procLog) wait(t *testing.T, re *regexp.Regexp, count int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if m := re.FindAllStringSubmatch(pl.String(), -1); len(m) >= count {
			return m[count-1]
		}
		select {
		case <-pl.lines:
		case <-deadline:
			t.Fatalf("no %d lines matching %q within %v", count, re, timeout)
		}
	}
}

// sekishoProc is one sekisho process: started by the test, or by another
// sekisho process for an upgrade (the test adopts it as a subreaper once its
// parent has exited, so that it can wait for it).
type sekishoProc struct {
	pid  int
	done chan struct{}
	err  error
}

func watchProc(wait func() error, pid int) *sekishoProc {
	p := &sekishoProc{pid: pid, done: make(chan struct{})}
	go func() { p.err = wait(); close(p.done) }()
	return p
}

// exitedZero waits for the process to exit and asserts that it exited 0.
func (p *sekishoProc) exitedZero(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("process %d: %v, want exit status 0", p.pid, p.err)
		}
	case <-time.After(timeout):
		t.Fatalf("process %d still running after %v", p.pid, timeout)
	}
}

// adopt waits for a process this one did not start, once it is a child of
// this one (its parent exited; this process is a subreaper); it is stopped
// when the test ends.
func adopt(t *testing.T, pid int) *sekishoProc {
	t.Helper()
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	p := watchProc(func() error {
		st, err := proc.Wait()
		if err != nil {
			return err
		}
		if !st.Success() {
			return errors.New(st.String())
		}
		return nil
	}, pid)
	t.Cleanup(func() { stopProc(p) })
	return p
}

// becomeSubreaper makes the test process the parent of the processes an
// upgrade starts, once the process that started them exits (prctl(2)
// PR_SET_CHILD_SUBREAPER), so that the test can wait for them.
func becomeSubreaper(t *testing.T) {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
}

// sekishoEnv is the environment of a sekisho the test starts: the test's,
// without anything that would make it think systemd runs it.
func sekishoEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "INVOCATION_ID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// restartSite writes the configuration of the restart tests: an smtp
// listener on addr relaying campus.test to the next hop, connection limits
// above what the client loop opens, the checks off; extra is more YAML.
func restartSite(t *testing.T, addr string, hop *harness.NextHop, extra string) string {
	s := site{
		smtp:   addr,
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		limits: "max_connections: 5000\nmax_connections_per_ip: 1000",
		extra:  extra,
	}
	path := filepath.Join(t.TempDir(), "sekisho.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(s.yaml(t), "log: {level: debug}", "log: {level: info}", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	listeningPIDRE = regexp.MustCompile(`msg=listening listener=smtp addr=(\S+) socket=(\w+) version=\S+ pid=(\d+)`)
	upgradedRE     = regexp.MustCompile(`msg="upgrade: the new process serves" pid=(\d+) took=(\S+)`)
)

// TestUpgradeUnderLoad: while 12 senders send as fast as they can, the
// gateway is upgraded with SIGUSR2 twice in a row. Each time a new process
// takes over the same socket and the old one drains and exits 0; no
// connection is refused, no message that got 250 is missing at the next
// hop, and nothing gets a 5xx.
func TestUpgradeUnderLoad(t *testing.T) {
	becomeSubreaper(t)
	hop := harness.StartNextHop(t, false)
	// The old and the new process run at once: the state store must be one
	// both can open (the embedded file is locked by one process).
	rs := testredis.Start(t)
	cfg := restartSite(t, testenv.FreePort(t), hop, glRedisStore(rs.Addr()))
	logs := newProcLog(t)
	current := startServe(t, cfg, logs)

	m := logs.wait(t, listeningPIDRE, 1, 30*time.Second)
	addr := m[1]
	if m[3] != strconv.Itoa(current.pid) || m[2] != "bound" {
		t.Fatalf("first process: listening line %q, want pid %d and a bound socket", m[0], current.pid)
	}
	ld := startLoad(addr, 12, 8)
	defer ld.finish()
	ld.waitAccepted(t, 100, 30*time.Second)

	var handovers []time.Duration
	for i := 1; i <= 2; i++ {
		old := current
		syscall.Kill(old.pid, syscall.SIGUSR2)
		m := logs.wait(t, upgradedRE, i, 90*time.Second)
		pid, _ := strconv.Atoi(m[1])
		took, _ := time.ParseDuration(m[2])
		handovers = append(handovers, took)
		if pid == old.pid {
			t.Fatalf("upgrade %d: the new process has the old one's pid %d", i, pid)
		}
		// The new process took the socket over rather than binding one.
		if l := logs.wait(t, listeningPIDRE, i+1, 5*time.Second); l[3] != m[1] || l[2] != "inherited" || l[1] != addr {
			t.Errorf("upgrade %d: listening line %q, want pid %s on the inherited socket %s", i, l[0], m[1], addr)
		}
		old.exitedZero(t, 30*time.Second) // drained
		current = adopt(t, pid)           // its parent is gone: it is the test's child now
		// The control socket is the new process's too.
		if got := controlPID(t, cfg, cfg); got != pid {
			t.Errorf("upgrade %d: the control socket is answered by pid %d, want the new process's %d", i, got, pid)
		}
		// The new process alone serves now, and serves.
		ld.waitAccepted(t, ld.accepted()+100, 30*time.Second)
	}
	ld.finish()
	ld.check(t, hop, handovers)
	if n := strings.Count(logs.String(), `msg=stopped`); n != 2 {
		t.Errorf("%d processes logged that they stopped, want the 2 old ones", n)
	}
}

// startServe starts `sekisho serve -config cfg`, its output to logs; it is
// stopped when the test ends.
func startServe(t *testing.T, cfg string, logs *procLog) *sekishoProc {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), "serve", "-config", cfg)
	cmd.Dir = filepath.Dir(cfg) // its control socket is there (harness.TestControl)
	cmd.Stdout, cmd.Stderr = logs.w, logs.w
	cmd.Env = sekishoEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := watchProc(cmd.Wait, cmd.Process.Pid)
	t.Cleanup(func() { stopProc(p) })
	return p
}

// controlPID asks `sekisho status` (in the directory of the gateway's
// configuration cfg, with the configuration file config) which process
// answers on the control socket.
func controlPID(t *testing.T, cfg, config string) int {
	t.Helper()
	out, errs, code := cli(t, filepath.Dir(cfg), "status", "-config", config, "-format", "json")
	var st statusJSON
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d\n%s%s", code, out, errs)
	}
	return st.PID
}

// stopProc stops a process at the end of a test: SIGTERM, then SIGKILL.
func stopProc(p *sekishoProc) {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
	}
}

// TestRestartOnInheritedSockets does what systemd does with
// deploy/sekisho.socket on `systemctl restart sekisho`: the test binds the
// smtp socket itself and hands it to sekisho by the socket-activation
// protocol (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID set by a shell between
// fork and exec, as systemd does); under load it stops the process with
// SIGTERM, waits until it has drained and exited 0, and starts another on
// the same socket. Connections that arrive in between wait in the socket's
// queue: none is refused, no accepted message is missing, nothing gets a
// 5xx.
func TestRestartOnInheritedSockets(t *testing.T) {
	hop := harness.StartNextHop(t, false)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock, err := l.(*net.TCPListener).File() // what systemd holds
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	addr := l.Addr().String()
	cfg := restartSite(t, addr, hop, "") // the embedded store: one process at a time
	logs := newProcLog(t)
	dir := t.TempDir()

	start := func(n int) *sekishoProc {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, harness.Binary(t), "serve", "-config", cfg)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = logs.w, logs.w
		cmd.ExtraFiles = []*os.File{sock} // fd 3
		cmd.Env = sekishoEnv("LISTEN_FDS=1", "LISTEN_FDNAMES=smtp")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := watchProc(cmd.Wait, cmd.Process.Pid)
		t.Cleanup(func() { stopProc(p) })
		m := logs.wait(t, listeningPIDRE, n, 30*time.Second)
		if m[1] != addr || m[2] != "inherited" || m[3] != strconv.Itoa(p.pid) {
			t.Fatalf("process %d: listening line %q, want pid %d on the inherited socket %s", n, m[0], p.pid, addr)
		}
		return p
	}

	first := start(1)
	ld := startLoad(addr, 12, 8)
	defer ld.finish()
	ld.waitAccepted(t, 100, 30*time.Second)

	t0 := time.Now()
	syscall.Kill(first.pid, syscall.SIGTERM)
	first.exitedZero(t, 30*time.Second) // drained
	second := start(2)
	gap := time.Since(t0)
	if second.pid == first.pid {
		t.Fatalf("the second process has the first one's pid %d", first.pid)
	}
	// The second process alone serves now, and serves.
	ld.waitAccepted(t, ld.accepted()+100, 30*time.Second)
	ld.finish()
	ld.check(t, hop, []time.Duration{gap})
}

// TestUpgradeFailsKeepsServing: an upgrade whose new process cannot start
// (the configuration file was broken meanwhile) is abandoned: the log says
// so at ERROR, the old process goes on serving on its socket. With the
// embedded state store SIGUSR2 is refused at once, and the process serves on.
func TestUpgradeFailsKeepsServing(t *testing.T) {
	rs := testredis.Start(t)
	for _, tc := range []struct {
		name, store, want string
		breakConfig       bool
	}{
		{"new process fails", glRedisStore(rs.Addr()), `msg="upgrade failed: this process goes on serving" err="the new process stopped before it served`, true},
		{"embedded store", "", `msg="upgrade refused: this process goes on serving" err="the embedded state store`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hop := harness.StartNextHop(t, false)
			cfg := restartSite(t, testenv.FreePort(t), hop, tc.store)
			logs := newProcLog(t)
			p := startServe(t, cfg, logs)
			addr := logs.wait(t, listeningPIDRE, 1, 30*time.Second)[1]

			good := cfg + ".good" // for status, once cfg is broken
			copyFile(t, cfg, good, 0o600)
			if tc.breakConfig {
				if err := os.WriteFile(cfg, []byte("listen: [not a map\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			syscall.Kill(p.pid, syscall.SIGUSR2)
			logs.wait(t, regexp.MustCompile(regexp.QuoteMeta(tc.want)), 1, 60*time.Second)

			ld := startLoad(addr, 2, 0)
			defer ld.finish()
			ld.waitAccepted(t, 10, 30*time.Second)
			ld.finish()
			ld.check(t, hop, nil)
			select {
			case <-p.done:
				t.Fatalf("the process exited after the failed upgrade: %v", p.err)
			default:
			}
			if n := len(listeningPIDRE.FindAllString(logs.String(), -1)); n != 1 {
				t.Errorf("%d processes said they listen, want the first one only", n)
			}
			if got := controlPID(t, cfg, good); got != p.pid {
				t.Errorf("after the failed upgrade the control socket is answered by pid %d, want %d", got, p.pid)
			}
			// It still stops at once on SIGTERM: the socket it lent the
			// new process is as it was (non-blocking; a blocking one held
			// its accept, and the drain waited for it).
			syscall.Kill(p.pid, syscall.SIGTERM)
			p.exitedZero(t, 5*time.Second)
		})
	}
}
