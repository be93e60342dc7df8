package e2e

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testslapd"
)

// cli runs the sekisho CLI in dir and returns its stdout, stderr and exit
// code (a failure to run it at all fails the test).
func cli(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliAs(t, dir, nil, harness.Binary(t), args...)
}

// cliAs is cli with the binary bin and, when cred is set, as that user.
func cliAs(t *testing.T, dir string, cred *syscall.Credential, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("sekisho %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// explainCLI runs `sekisho explain args...` in dir and returns its output
// (stdout and stderr) and exit code, which must be the verdict (0, 1, 2)
// and agree with the replies it lists: 1 when one is a 5xx, else 2 when
// one is a 4xx, else 0.
func explainCLI(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := cli(t, dir, append([]string{"explain"}, args...)...)
	out := stdout + stderr
	if code > 2 {
		t.Fatalf("sekisho explain %v: exit %d\n%s", args, code, out)
	}
	_, summary, ok := strings.Cut(stdout, "\nwhat the client would be told:\n")
	summary, _, _ = strings.Cut(summary, "\nverdict: ")
	if !ok {
		t.Fatalf("explain printed no summary:\n%s", out)
	}
	permanent, temporary := false, false
	for _, line := range strings.Split(summary, "\n") {
		if m := explainReplyRE.FindStringSubmatch(line); m != nil {
			permanent = permanent || m[2][0] == '5'
			temporary = temporary || m[2][0] == '4'
		}
	}
	want := 0
	switch {
	case permanent:
		want = 1
	case temporary:
		want = 2
	}
	if code != want {
		t.Errorf("sekisho explain %v: exit %d, but its replies say %d\n%s", args, code, want, out)
	}
	return out, code
}

// greylistSite is a campus gateway on the embedded store (var/state.db in
// its directory, held by bbolt's lock while it runs) that greylists
// outside clients for delay, with no http listener.
func greylistSite(delay string) func(*site) {
	return func(s *site) {
		s.checks = "greylist: {delay: " + delay + ", exempt: []}"
		s.extra += "report: {flush_interval: 100ms}\n"
	}
}

// reportCounts reads `sekisho report -format csv` of today: attempts by
// cause.
func reportCounts(t *testing.T, out string) map[string]int {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("report CSV: %v\n%s", err, out)
	}
	counts := map[string]int{}
	for _, r := range rows[1:] {
		n, err := strconv.Atoi(r[4])
		if err != nil {
			t.Fatalf("report CSV row %v: %v", r, err)
		}
		counts[r[3]] = n
	}
	return counts
}

// TestControlExplainIsTheGatewaysAnswer: beside a gateway running on the
// embedded store (which bbolt locks), explain asks the gateway over the
// control socket and gets its own answer: the sender the gateway has just
// greylisted is told 451 (exit 2) where explain on its own (-direct)
// cannot read the store and says 250 by on_store_error; once the delay
// has passed, 0, and the client's retry is accepted; a recipient in a
// domain that is not ours exits 1. Explaining records nothing: a new
// triplet stays new. report shows the gateway's counts with no http
// listener, the explanations not among them.
func TestControlExplainIsTheGatewaysAnswer(t *testing.T) {
	gw, _ := campus(t, greylistSite("3s"))
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.7.1")
	c.Expect("RSET", "250")

	explain := func(args ...string) (string, int) {
		t.Helper()
		out, errs, code := cli(t, gw.Dir, append([]string{"explain", "-config", "sekisho.yaml", "-ip", outside, "-helo", "client.example.org"}, args...)...)
		return out + errs, code
	}
	out, code := explain("-from", "bob@example.org", "-rcpt", "alice@campus.test")
	if code != 2 {
		t.Errorf("explain of the greylisted sender: exit %d, want 2 (deferred)\n%s", code, out)
	}
	mustContain(t, out, tell("RCPT TO:<alice@campus.test>", "451 4.7.1"), "known triplet", "explained by the running gateway on control.sock")
	// The gateway logs who asked.
	if line := gw.WaitLog("msg=control verb=explain", 5*time.Second); !strings.Contains(line, "level=INFO") || !strings.Contains(line, "uid=0") {
		t.Errorf("the gateway's log line of the explanation: %s", line)
	}

	// Without the gateway: the store is locked, greylisting follows
	// on_store_error (accept) — the answer this change is about.
	out, code = explain("-from", "bob@example.org", "-rcpt", "alice@campus.test", "-direct")
	if code != 0 || !strings.Contains(out, "on_store_error accept") {
		t.Errorf("explain -direct beside the running gateway: exit %d, want 0 by on_store_error\n%s", code, out)
	}

	// A new triplet, explained twice: still new, the gateway recorded
	// nothing.
	for range 2 {
		out, code = explain("-from", "carol@example.org", "-rcpt", "alice@campus.test")
		if code != 2 || !strings.Contains(out, "new triplet") {
			t.Fatalf("explain of a new triplet: exit %d, want 2 and a new triplet\n%s", code, out)
		}
	}

	// Not our domain: relay denied, a permanent refusal.
	out, code = explain("-from", "bob@example.org", "-rcpt", "someone@elsewhere.example")
	if code != 1 {
		t.Errorf("explain of a recipient outside our domains: exit %d, want 1\n%s", code, out)
	}
	mustContain(t, out, tell("RCPT TO:<someone@elsewhere.example>", "554 5.7.1"))

	// Once the delay has passed the gateway's answer is 250: explain says
	// so (exit 0), and the client's retry is accepted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code = explain("-from", "bob@example.org", "-rcpt", "alice@campus.test")
		if code == 0 {
			break
		}
		if code != 2 || time.Now().After(deadline) {
			t.Fatalf("explain while the delay runs: exit %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond) // the greylist delay is time itself: nothing to wait on
	}
	mustContain(t, out, tell("RCPT TO:<alice@campus.test>", "250"), "verdict: accepted")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("QUIT", "221")

	// The report, from the running gateway: its one greylisting, not the
	// explanations' (nor their relay denial).
	today := time.Now().UTC().Format(time.DateOnly)
	deadline = time.Now().Add(20 * time.Second)
	for {
		stdout, errs, code := cli(t, gw.Dir, "report", "-config", "sekisho.yaml", "-from", today, "-to", today, "-format", "csv")
		if code != 0 {
			t.Fatalf("report beside the running gateway (no listen.http): exit %d\n%s%s", code, stdout, errs)
		}
		counts := reportCounts(t, stdout)
		if counts["greylist"] > 0 {
			if counts["greylist"] != 1 || counts["relay_denied"] != 0 {
				t.Errorf("report counts greylist %d, relay_denied %d: want 1 and 0 (explain counts nothing)\n%s", counts["greylist"], counts["relay_denied"], stdout)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's counts never showed in the report:\n%s", stdout)
		}
		time.Sleep(100 * time.Millisecond) // the counter flushes every 100 ms
	}
}

// statusJSON is what `sekisho status -format json` prints, in part.
type statusJSON struct {
	Version    string `json:"version"`
	PID        int    `json:"pid"`
	Config     string `json:"config"`
	Generation int    `json:"generation"`
	Control    string `json:"control"`
	Store      string `json:"store"`
	Listeners  []struct {
		Name, Addr, Socket string
	} `json:"listeners"`
	Connections struct {
		GreetPause int `json:"greet_pause"`
		Session    int `json:"session"`
	} `json:"connections"`
	Deps []struct {
		Name   string `json:"name"`
		Up     *bool  `json:"up"`
		Reason string `json:"reason"`
	} `json:"dependencies"`
}

func (s statusJSON) dep(name string) (up *bool, reason string) {
	for _, d := range s.Deps {
		if d.Name == name {
			return d.Up, d.Reason
		}
	}
	return nil, "not listed"
}

// TestControlStatus: `sekisho status` tells what the running gateway
// listens on, its connections, its configuration generation (one more
// after a SIGHUP), and its dependencies' health: the LDAP canary up, then
// down once slapd is stopped.
func TestControlStatus(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	s := ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)
	s.extra += "health: {interval: 200ms}\n"
	gw := harness.Start(t, s.yaml(t))

	status := func() statusJSON {
		t.Helper()
		out, errs, code := cli(t, gw.Dir, "status", "-config", "sekisho.yaml", "-format", "json")
		var st statusJSON
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status: exit %d\n%s%s", code, out, errs)
		}
		return st
	}
	// waitDep waits until the prober has found dep up (or down).
	waitDep := func(dep string, up bool) statusJSON {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := status()
			if u, _ := st.dep(dep); u != nil && *u == up {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never showed %s up=%v: %+v", dep, up, st.Deps)
			}
			time.Sleep(100 * time.Millisecond) // the prober asks every 200 ms
		}
	}

	// One client in session.
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")

	st := waitDep("ldap_canary", true)
	if st.PID != gw.PID() || st.Generation != 1 || !strings.HasSuffix(st.Config, "sekisho.yaml") || st.Version == "" ||
		st.Control != filepath.Join(gw.Dir, "control.sock") {
		t.Errorf("status: pid %d (want %d), generation %d (want 1), config %q, version %q, control %q", st.PID, gw.PID(), st.Generation, st.Config, st.Version, st.Control)
	}
	if st.Store != "embedded "+filepath.Join(gw.Dir, "var", "state.db") {
		t.Errorf("status: store %q, want the embedded file in the gateway's directory", st.Store)
	}
	if len(st.Listeners) != 1 || st.Listeners[0].Name != "smtp" || st.Listeners[0].Addr != gw.SMTP || st.Listeners[0].Socket != "bound" {
		t.Errorf("status listeners %+v, want smtp on %s, bound", st.Listeners, gw.SMTP)
	}
	if st.Connections.Session != 1 {
		t.Errorf("status connections %+v, want 1 in session", st.Connections)
	}
	for _, dep := range []string{"dns_canary", "store", "next_hop"} {
		if up, reason := st.dep(dep); up == nil || !*up {
			t.Errorf("status: %s not up: %s", dep, reason)
		}
	}
	c.Expect("QUIT", "221")

	// SIGHUP: the next generation.
	gw.Signal(syscall.SIGHUP)
	gw.WaitLog("configuration reloaded", 10*time.Second)
	if st := status(); st.Generation != 2 {
		t.Errorf("status after a SIGHUP: generation %d, want 2", st.Generation)
	}

	// slapd stopped: the LDAP canary is down, in text too.
	slapd.Stop()
	waitDep("ldap_canary", false)
	out, errs, code := cli(t, gw.Dir, "status", "-config", "sekisho.yaml")
	if code != 0 || !strings.Contains(out, "ldap_canary  DOWN") || !strings.Contains(out, "generation 2") || !strings.Contains(out, "smtp         "+gw.SMTP) {
		t.Errorf("status text: exit %d\n%s%s", code, out, errs)
	}
}

// TestControlFallbackAndStaleSocket: with no gateway answering, explain and
// report do the work themselves and say so; status says no gateway
// answers. The socket a killed gateway left is removed by the next one,
// which then answers; a second gateway on the same control socket does
// not start (and leaves the first one's socket alone); nor does one whose
// control.socket names a file that is not a socket (left as it was).
func TestControlFallbackAndStaleSocket(t *testing.T) {
	gw, _ := campus(t, greylistSite("1h"))
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.7.1")
	c.Expect("QUIT", "221")
	cfg := filepath.Join(gw.Dir, "sekisho.yaml")
	sock := filepath.Join(gw.Dir, "control.sock")
	today := time.Now().UTC().Format(time.DateOnly)
	// The deferral counted in the store (through the gateway) before the
	// gateway is killed.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errs, code := cli(t, gw.Dir, "report", "-config", "sekisho.yaml", "-from", today, "-to", today, "-format", "csv")
		if code != 0 {
			t.Fatalf("report: exit %d\n%s%s", code, out, errs)
		}
		if reportCounts(t, out)["greylist"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deferral was never counted:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond) // the counter flushes every 100 ms
	}

	// A second gateway on the same control socket (another smtp port).
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "second.yaml")
	other := strings.Replace(string(text), harness.TestControl, "control: {socket: "+sock+"}\n", 1)
	other = strings.Replace(other, gw.SMTP, "127.0.0.1:0", 1)
	os.WriteFile(second, []byte(other), 0o600)
	serve := exec.Command(harness.Binary(t), "serve", "-config", second)
	serve.Dir = t.TempDir()
	if out, err := serve.CombinedOutput(); err == nil || !strings.Contains(string(out), "another sekisho answers on the control socket") {
		t.Errorf("a second gateway on the same control socket: %v\n%s", err, out)
	}
	if _, errs, code := cli(t, gw.Dir, "status", "-config", "sekisho.yaml"); code != 0 {
		t.Errorf("the first gateway no longer answers after the second one's refusal: exit %d %s", code, errs)
	}

	// Killed: its socket stays, nobody answers on it.
	gw.Kill()
	gw.Wait(10 * time.Second)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the killed gateway's socket: %v, %v", fi, err)
	}
	if _, errs, code := cli(t, gw.Dir, "status", "-config", "sekisho.yaml"); code != 1 || !strings.Contains(errs, "no gateway answers on the control socket") {
		t.Errorf("status with no gateway: exit %d, %q", code, errs)
	}
	out, errs, code := cli(t, gw.Dir, "explain", "-config", "sekisho.yaml", "-ip", outside, "-helo", "client.example.org", "-from", "bob@example.org", "-rcpt", "alice@campus.test")
	if code != 2 || !strings.Contains(out, "known triplet") || !strings.Contains(out, "explained by this process (no gateway answers on control.sock)") {
		t.Errorf("explain with no gateway: exit %d, want 2 from the store it opened\n%s%s", code, out, errs)
	}
	out, errs, code = cli(t, gw.Dir, "report", "-config", "sekisho.yaml", "-from", today, "-to", today, "-format", "csv")
	if code != 0 || reportCounts(t, out)["greylist"] != 1 {
		t.Errorf("report with no gateway, from the store: exit %d\n%s%s", code, out, errs)
	}

	// The next gateway removes the stale socket and answers.
	next := harness.StartArgs(t, gw.Dir, "serve", "-config", cfg)
	next.WaitLog("removing the socket of a gateway that is gone", 10*time.Second)
	out, errs, code = cli(t, gw.Dir, "status", "-config", "sekisho.yaml", "-format", "json")
	var st statusJSON
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.PID != next.PID() {
		t.Errorf("status after the restart: exit %d, pid %d (want %d)\n%s%s", code, st.PID, next.PID(), out, errs)
	}
	// Stopped cleanly: the socket goes with it.
	next.Stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket of a gateway stopped by SIGTERM is still there: %v", err)
	}

	// A file that is not a socket is never removed.
	notSock := filepath.Join(t.TempDir(), "control.sock")
	os.WriteFile(notSock, []byte("an admin's file\n"), 0o600)
	os.WriteFile(second, []byte(strings.Replace(other, "control: {socket: "+sock+"}", "control: {socket: "+notSock+"}", 1)), 0o600)
	serve = exec.Command(harness.Binary(t), "serve", "-config", second)
	serve.Dir = t.TempDir()
	if out, err := serve.CombinedOutput(); err == nil || !strings.Contains(string(out), "exists and is not a socket") {
		t.Errorf("control.socket naming a regular file: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(notSock); string(b) != "an admin's file\n" {
		t.Errorf("the file at control.socket was changed: %q", b)
	}
}

// TestControlSocketPermissions: the socket is mode 0660 with the
// gateway's group, in a directory like the one systemd's
// RuntimeDirectory=sekisho makes (0750, the gateway's group): a member of
// the group may ask (status), anybody else may not, and explain then says
// why (exit 69) instead of answering without the gateway.
func TestControlSocketPermissions(t *testing.T) {
	const group = 65534 // nogroup: the gateway's group here
	base, err := os.MkdirTemp("", "skperm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	// The binary where the other users may run it.
	bin := filepath.Join(base, "sekisho")
	copyFile(t, harness.Binary(t), bin, 0o755)
	run := filepath.Join(base, "run")
	if err := os.Mkdir(run, 0o750); err != nil {
		t.Fatal(err)
	}
	os.Chown(run, 0, group)

	hop := harness.StartNextHop(t, false)
	s := site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		extra: "control: {socket: " + filepath.Join(run, "control.sock") + "}\n"}
	cfg := filepath.Join(base, "sekisho.yaml")
	if err := os.WriteFile(cfg, []byte(s.yaml(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := harness.StartCmd(t, t.TempDir(), func(c *exec.Cmd) {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: group}}
	}, "serve", "-config", cfg)
	gw.WaitLog("msg=\"control socket\"", 10*time.Second)

	fi, err := os.Lstat(filepath.Join(run, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != group {
		t.Errorf("control socket: mode %v, group %d; want a socket, 0660, group %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, group)
	}

	member := &syscall.Credential{Uid: 65534, Gid: group}
	if out, errs, code := cliAs(t, base, member, bin, "status", "-config", cfg); code != 0 || !strings.Contains(out, "generation 1") {
		t.Errorf("status as a member of the group: exit %d\n%s%s", code, out, errs)
	}
	outsider := &syscall.Credential{Uid: 65533, Gid: 65533}
	if _, errs, code := cliAs(t, base, outsider, bin, "status", "-config", cfg); code != 1 || !strings.Contains(errs, "permission denied") {
		t.Errorf("status as another user: exit %d, %q; want 1, permission denied", code, errs)
	}
	if out, errs, code := cliAs(t, base, outsider, bin, "explain", "-config", cfg, "-ip", "192.0.2.7", "-rcpt", "alice@campus.test"); code != 69 || !strings.Contains(errs, "cannot ask the running gateway") {
		t.Errorf("explain as another user: exit %d, want 69\n%s%s", code, out, errs)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
