//go:build bench

// Package bench measures sekisho the way its users would see it: Postfix's
// smtp-source sends mail through the built binary, with every check on and
// real servers behind it (slapd, the test DNS server, the embedded state
// store), to Postfix's smtp-sink as the next hop; in the same run
// smtp-source sends straight to the same smtp-sink, which is the loopback
// limit of the machine, and every figure is also given as a ratio to it.
// Then 10,000 clients are held in the greet pause at once.
//
// It is a Go test only to reuse the test infrastructure (internal/harness,
// testslapd, testdns); the build tag keeps it out of `go test ./...`. Run it
// with `make bench` (bench/bench.sh), which installs smtp-source and
// smtp-sink, raises the file descriptor limit and builds the binary. What it
// measures and why is in docs/performance.md.
//
// Settings (environment): BENCH_MESSAGES (per run, 5000), BENCH_SESSIONS
// (20), BENCH_SIZE (5120 octets of body), BENCH_RUNS (3), BENCH_PAUSED
// (10000), BENCH_LDAP_CACHE (ldap.positive_cache_ttl, e.g. 0s; default
// the product's, 1m), BENCH_OUT (a file the tables are also written to), BENCH_PROFILE
// (a directory: take CPU, allocation and heap profiles; needs a binary
// built with -tags benchprofile).
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

// The mail every run sends: from an outside sender whose domain has an MX
// and an SPF record that passes for loopback, to a user in the directory.
const (
	sender    = "bob@exsender.org"
	recipient = "alice@campus.test"
	heloName  = "mx.exsender.org"
)

// settings are the knobs of one bench run.
type settings struct {
	messages, sessions, size, runs, paused int
	out, profile                           string
	ldapCache                              string // ldap.positive_cache_ttl; "" leaves the default (1m)
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func loadSettings(t *testing.T) settings {
	return settings{
		messages:  envInt(t, "BENCH_MESSAGES", 5000),
		sessions:  envInt(t, "BENCH_SESSIONS", 20),
		size:      envInt(t, "BENCH_SIZE", 5120),
		runs:      envInt(t, "BENCH_RUNS", 3),
		paused:    envInt(t, "BENCH_PAUSED", 10000),
		out:       os.Getenv("BENCH_OUT"),
		profile:   os.Getenv("BENCH_PROFILE"),
		ldapCache: envDuration(t, "BENCH_LDAP_CACHE"),
	}
}

// envDuration is a Go duration from the environment, or "".
func envDuration(t *testing.T, name string) string {
	v := os.Getenv(name)
	if v == "" {
		return ""
	}
	if _, err := time.ParseDuration(v); err != nil {
		t.Fatalf("%s=%q: want a duration (1m)", name, v)
	}
	return v
}

// TestBench is the whole benchmark; it fails when a message is refused or
// lost, so a figure is never printed for mail that did not go through.
func TestBench(t *testing.T) {
	st := loadSettings(t)
	source := testenv.Command(t, "smtp-source", "postfix")
	sinkBin := testenv.Command(t, "smtp-sink", "postfix")
	w := newWorld(t)
	sink := startSink(t, sinkBin)

	var report strings.Builder
	fmt.Fprintf(&report, "sekisho %s, %s; %d CPUs; load average before: %s\n\n",
		binaryVersion(t), time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), loadavg())
	w.ldapCache = st.ldapCache
	if st.ldapCache != "" {
		fmt.Fprintf(&report, "ldap.positive_cache_ttl: %s (BENCH_LDAP_CACHE; the default is 1m)\n\n", st.ldapCache)
	}

	// Phase 1: throughput.
	w.pprofAddr(t, st)
	gw := harness.Start(t, w.config(t, "5s", "max_connections_per_ip: 100", sink.addr))
	w.warmUp(t, gw)

	src := smtpSource{bin: source, sessions: st.sessions, size: st.size}
	// Warm-up runs: caches, connection pools and the heap reach their
	// steady state before anything is measured.
	warm := max(st.messages/4, 100)
	src.run(t, gw.SMTP, warm, sink)
	src.run(t, sink.addr, warm, sink)

	ps := participants{gateway: gw.PID(), slapd: childPID(t, "slapd"), sink: sink.pid, dns: w.dns}
	var direct, via []runResult
	for i := 0; i < st.runs; i++ {
		direct = append(direct, measure(t, src, sink.addr, st.messages, sink, sink.pid, ps))
		via = append(via, measure(t, src, gw.SMTP, st.messages, sink, gw.PID(), ps))
	}
	writeThroughput(&report, st, direct, via)

	if st.profile != "" {
		profileThroughput(t, st, src, gw, sink, via)
	}

	// Phase 1b: DKIM-signed traffic, verified (dmarc on, this gateway)
	// and not (a second gateway with dmarc off, beside it); runs alternate.
	signed := smtpSource{bin: source, sessions: st.sessions, file: w.signedMessage(t, st.size)}
	gwHTTP := w.httpAddr
	off := harness.Start(t, w.configWith(t, "5s", "max_connections_per_ip: 100", sink.addr, "dmarc: {off: true}", "state-nodmarc.db"))
	w.warmUp(t, off)
	signed.run(t, gw.SMTP, warm, sink)
	signed.run(t, off.SMTP, warm, sink)
	psOff := ps
	psOff.gateway = off.PID()
	var verified, unverified []runResult
	for i := 0; i < st.runs; i++ {
		verified = append(verified, measure(t, signed, gw.SMTP, st.messages, sink, gw.PID(), ps))
		unverified = append(unverified, measure(t, signed, off.SMTP, st.messages, sink, off.PID(), psOff))
	}
	// Every signed message was verified, and passed (a figure for mail
	// whose signature failed would measure something else).
	pass := `sekisho_auth_results_total{method="dkim",result="pass"}`
	if n := metric(t, gwHTTP, pass); n < float64(warm+st.runs*st.messages) {
		t.Fatalf("%s = %v, want at least %d", pass, n, warm+st.runs*st.messages)
	}
	writeDKIMCost(&report, st, verified, unverified)
	off.Stop()
	gw.Stop()

	// Phase 2: clients held in the greet pause. The same state store:
	// 127.0.0.1 waited out the pause in phase 1 and is remembered.
	w.pprofAddr(t, st)
	gw = harness.Start(t, w.config(t, "1m", fmt.Sprintf("max_connections: %d\n  max_connections_per_ip: %d", st.paused+100, st.paused+100), sink.addr))
	heldInPause(t, &report, st, gw, w.httpAddr)

	fmt.Fprintf(&report, "\nload average after: %s\n", loadavg())
	fmt.Println()
	fmt.Print(report.String())
	if st.out != "" {
		if err := os.WriteFile(st.out, []byte(report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// world is what sekisho talks to besides the next hop: slapd, the DNS
// server, and a directory for its configuration and state store.
type world struct {
	slapd     *testslapd.Server
	dns       *testdns.Server
	dir       string
	httpAddr  string
	ldapCache string // ldap.positive_cache_ttl, "" for the default
	dkimKey   *rsa.PrivateKey
}

func newWorld(t *testing.T) *world {
	w := &world{slapd: testslapd.Start(t), dns: testdns.Start(t), dir: t.TempDir()}
	w.dns.AddZone("campus.test.", 60)
	w.dns.AddZone("exsender.org.", 60)
	w.dns.AddZone("dnsbl.test.", 60) // lists nobody: every client is "not listed"
	w.dns.Add(
		"campus.test. 300 IN MX 10 mx.campus.test.",
		"mx.campus.test. 300 IN A 127.0.0.1",
		"exsender.org. 300 IN MX 10 mx.exsender.org.",
		"mx.exsender.org. 300 IN A 127.0.0.1",
		`exsender.org. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`_dmarc.exsender.org. 300 IN TXT "v=DMARC1; p=reject"`,
	)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	rec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	var parts []string
	for len(rec) > 200 {
		parts, rec = append(parts, `"`+rec[:200]+`"`), rec[200:]
	}
	w.dns.Add("bench._domainkey.exsender.org. 300 IN TXT " + strings.Join(append(parts, `"`+rec+`"`), " "))
	w.dkimKey = key
	return w
}

// signedMessage writes a message From the sender, DKIM-signed for its
// domain (rsa-sha256, relaxed/relaxed: what most senders use), with a body
// of size octets, for smtp-source -F (LF line endings: smtp-source sends
// each line with CRLF, the form the signature was made over).
func (w *world) signedMessage(t *testing.T, size int) string {
	line := strings.Repeat("signed bench body ", 4) + "\r\n"
	body := strings.Repeat(line, max(size/len(line), 1))
	msg := "From: <" + sender + ">\r\nTo: <" + recipient + ">\r\nDate: Tue, 1 Dec 2026 07:00:00 +0000\r\n" +
		"Subject: signed bench\r\nMessage-ID: <bench@exsender.org>\r\n\r\n" + body
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: "exsender.org", Selector: "bench", Signer: w.dkimKey,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, "signed.eml")
	if err := os.WriteFile(path, bytes.ReplaceAll(out.Bytes(), []byte("\r\n"), []byte("\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pprofAddr gives the next gateway a free port for its profiling endpoint
// (a benchprofile build reads SEKISHO_PPROF_ADDR) when profiles are asked.
func (w *world) pprofAddr(t *testing.T, st settings) {
	if st.profile != "" {
		t.Setenv("SEKISHO_PPROF_ADDR", testenv.FreePort(t))
	}
}

// config is sekisho.yaml: all eight checks on (dmarc by default), on their defaults
// but for the greet pause's delay and a greylisting delay of 1s (so that the
// warm-up passes its triplet quickly; the delay costs nothing afterwards).
// Nobody is trusted or exempt: every client is an outside one.
func (w *world) config(t *testing.T, greetDelay, limits, sinkAddr string) string {
	return w.configWith(t, greetDelay, limits, sinkAddr, "", "state.db")
}

// configWith is config with more lines under checks: and a state store file
// of its own (a second gateway runs beside the first).
func (w *world) configWith(t *testing.T, greetDelay, limits, sinkAddr, moreChecks, storeFile string) string {
	secret := filepath.Join(w.dir, "ldap.secret")
	if err := os.WriteFile(secret, []byte(testslapd.ServicePass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.httpAddr = testenv.FreePort(t)
	ldapCacheLine := ""
	if w.ldapCache != "" {
		ldapCacheLine = "  positive_cache_ttl: " + w.ldapCache + "\n"
	}
	cfg := fmt.Sprintf(`hostname: mx.campus.test
listen:
  smtp: %q
  http: %q
local_domains: [campus.test]
trusted_networks: []
routes:
  - {domains: [campus.test], next_hops: ["smtp://%s"]}
dns: {resolvers: [%q], canary: campus.test}
ldap:
  urls: [%q]
  base_dn: %q
  bind_dn: %q
  bind_password_file: %q
  canary: %q
%sstore: {path: %q}
checks:
  greet_pause: {delay: %s, exempt: [], pass_ttl: 24h}
  dnsbl: {zones: [dnsbl.test]}
  domain: {}
  header: {}
  account: {}
  greylist: {delay: 1s, exempt: []}
  spf: {fail: reject}
  %s
limits:
  %s
log: {level: info}
`, testenv.FreePort(t), w.httpAddr, sinkAddr, w.dns.Addr(), w.slapd.URL(), testslapd.PeopleDN,
		testslapd.ServiceDN, secret, testslapd.Canary, ldapCacheLine, filepath.Join(w.dir, storeFile), greetDelay, moreChecks, limits)
	return cfg
}

// warmUp brings 127.0.0.1 (smtp-source's address) to the steady state of a
// known correspondent: it waits out the greet pause once (remembered for
// pass_ttl), and its triplet is greylisted once and then passes, as a real
// MTA's retry would.
func (w *world) warmUp(t *testing.T, gw *harness.Gateway) {
	start := time.Now()
	c := harness.DialFrom(t, "127.0.0.1", gw.SMTP)
	if waited := time.Since(start); waited < 4*time.Second {
		t.Fatalf("the first connection got its banner after %v: the greet pause is not on", waited)
	}
	c.Expect("EHLO "+heloName, "250")
	c.Expect("MAIL FROM:<"+sender+">", "250")
	if r := c.Cmd("RCPT TO:<" + recipient + ">"); !strings.HasPrefix(r.String(), "451 4.7.1") {
		t.Fatalf("first RCPT: %v, want 451 4.7.1 (greylisted)", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := c.Cmd("RCPT TO:<" + recipient + ">")
		if r.Code == 250 {
			break
		}
		if !strings.HasPrefix(r.String(), "451 4.7.1") || time.Now().After(deadline) {
			t.Fatalf("RCPT retry: %v", r)
		}
		time.Sleep(100 * time.Millisecond) // polling the greylist delay: no signal exists
	}
	c.Expect("DATA", "354")
	c.SendRaw("From: <" + sender + ">\r\nDate: Tue, 1 Dec 2026 07:00:00 +0000\r\nSubject: warm-up\r\n\r\nwarm-up\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("warm-up message: %v", r)
	}
	c.Expect("QUIT", "221")
	// The pause is remembered: the next connection gets its banner at once.
	start = time.Now()
	harness.DialFrom(t, "127.0.0.1", gw.SMTP).Close()
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("a remembered client waited %v for the banner", waited)
	}
}

// sink is a running smtp-sink; delivered counts the messages it took.
type sink struct {
	addr      string
	pid       int
	delivered atomic.Int64
	changed   chan struct{} // gets a value (without blocking) at every change
}

var sinkCounterRE = regexp.MustCompile(`mesg=(\d+)`)

func startSink(t *testing.T, bin string) *sink {
	addr := testenv.FreePort(t)
	args := []string{"-c", "-h", "sink.campus.test"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // smtp-sink refuses to run as root without it
	}
	args = append(args, addr, "1024")
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: addr, pid: cmd.Process.Pid, changed: make(chan struct{}, 1)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		// -c rewrites one status line, separated by CR:
		// "sess=20 quit=20 mesg=20\r".
		sc := bufio.NewScanner(out)
		sc.Split(splitCR)
		for sc.Scan() {
			if m := sinkCounterRE.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.ParseInt(m[1], 10, 64)
				s.delivered.Store(n)
				select {
				case s.changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	testenv.WaitTCP(t, addr, 10*time.Second)
	return s
}

func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := strings.IndexAny(string(data), "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// waitDelivered waits until the sink has counted n messages in all.
func (s *sink) waitDelivered(t *testing.T, n int64, timeout time.Duration) {
	deadline := time.After(timeout)
	for s.delivered.Load() < n {
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("smtp-sink counted %d messages, want %d", s.delivered.Load(), n)
		}
	}
}

// smtpSource runs Postfix's smtp-source: one message per connection, one
// recipient, the body length given. Without -A it stops at the first reply
// that is not positive, so a run that exits 0 had every message accepted.
type smtpSource struct {
	bin            string
	sessions, size int
	file           string // a prepared message (-F) instead of a generated one
}

func (s smtpSource) run(t *testing.T, addr string, messages int, sk *sink) (took, cpu time.Duration) {
	before := sk.delivered.Load()
	body := []string{"-l", strconv.Itoa(s.size)}
	if s.file != "" {
		body = []string{"-F", s.file}
	}
	args := append([]string{"-s", strconv.Itoa(s.sessions), "-m", strconv.Itoa(messages)}, body...)
	cmd := exec.Command(s.bin, append(args, "-M", heloName, "-f", sender, "-t", recipient, addr)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took = time.Since(start)
	if err != nil {
		t.Fatalf("smtp-source to %s: %v\n%s", addr, err, out)
	}
	sk.waitDelivered(t, before+int64(messages), 30*time.Second)
	return took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// runResult is one measured run.
type runResult struct {
	messages  int
	accepted  time.Duration // smtp-source's run: every message had its 250
	delivered time.Duration // until smtp-sink had counted every message
	cpu       time.Duration // utime+stime of the measured process
	peakRSS   int64         // VmHWM in bytes, reset before the run
	// CPU time of every process of the run, and of the whole machine
	// (other users' too: the machine is shared) in CPU-seconds.
	cpuOf   map[string]time.Duration
	machine time.Duration
	// stolen is the CPU time the host gave to other machines while this
	// one's processors wanted it (/proc/stat steal): on a shared virtual
	// machine, the share of the run's time it took says how far its
	// rates can be trusted.
	stolen     time.Duration
	dnsQueries int // asked of the test DNS server during the run
}

// stolenShare is the share of the run's processor time taken by the host.
func (r runResult) stolenShare() float64 {
	return r.stolen.Seconds() / (r.delivered.Seconds() * float64(runtime.NumCPU()))
}

func (r runResult) acceptedRate() float64  { return float64(r.messages) / r.accepted.Seconds() }
func (r runResult) deliveredRate() float64 { return float64(r.messages) / r.delivered.Seconds() }
func (r runResult) cpuPer1000() float64    { return r.cpu.Seconds() * 1000 / float64(r.messages) }

// participants are the processes whose CPU time a run accounts for, and
// the DNS server whose queries it counts.
type participants struct {
	gateway, slapd, sink int
	dns                  *testdns.Server
}

// measure runs smtp-source once against addr and measures pid: sekisho
// for a run through it, smtp-sink for the direct run.
func measure(t *testing.T, src smtpSource, addr string, messages int, sk *sink, pid int, ps participants) runResult {
	pids := map[string]int{"sekisho": ps.gateway, "slapd": ps.slapd, "smtp-sink": ps.sink, "bench (test DNS)": os.Getpid()}
	cpu0 := map[string]time.Duration{}
	for name, p := range pids {
		cpu0[name] = cpuTime(t, p)
	}
	busy0, stolen0 := machineBusy(t)
	queries0 := ps.dns.TotalQueries()
	resetPeakRSS(t, pid)
	before := sk.delivered.Load()
	start := time.Now()
	accepted, sourceCPU := src.run(t, addr, messages, sk)
	sk.waitDelivered(t, before+int64(messages), 30*time.Second)
	delivered := time.Since(start)
	r := runResult{
		messages:   messages,
		accepted:   accepted,
		delivered:  delivered,
		peakRSS:    procStatus(t, pid, "VmHWM"),
		cpuOf:      map[string]time.Duration{"smtp-source": sourceCPU},
		dnsQueries: ps.dns.TotalQueries() - queries0,
	}
	busy, stolen := machineBusy(t)
	r.machine, r.stolen = busy-busy0, stolen-stolen0
	for name, p := range pids {
		r.cpuOf[name] = cpuTime(t, p) - cpu0[name]
	}
	r.cpu = r.cpuOf["sekisho"]
	if pid == ps.sink {
		r.cpu = r.cpuOf["smtp-sink"]
	}
	return r
}

// machineBusy is the CPU time all processors spent not idle since boot
// (/proc/stat: every field but idle and iowait), and of it the time stolen
// by the host (steal).
func machineBusy(t *testing.T) (busy, stolen time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) // "cpu user nice system idle iowait irq softirq steal ..."
	var ticks, steal int64
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
		if i == 7 {
			steal = n
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks, time.Duration(steal) * time.Second / clockTicks
}

// childPID finds a child of this process by its command name.
func childPID(t *testing.T, comm string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i || s[i+1:j] != comm {
			continue
		}
		f := strings.Fields(s[j+1:])
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			pid, _ := strconv.Atoi(strings.TrimSpace(s[:i]))
			return pid
		}
	}
	t.Fatalf("no child process named %s", comm)
	return 0
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianOf(rs []runResult, f func(runResult) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

func writeThroughput(w io.Writer, st settings, direct, via []runResult) {
	fmt.Fprintf(w, "smtp-source: %d sessions, one message per connection, one recipient, %d octets of body; %d messages per run; medians of %d runs (runs alternate)\n\n",
		st.sessions, st.size, st.messages, st.runs)
	fmt.Fprintln(w, "| path | msg/s accepted | msg/s delivered | ratio to loopback limit | CPU s per 1,000 msgs | peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	lim := medianOf(direct, runResult.deliveredRate)
	row := func(name, cpuOf string, rs []runResult) {
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.0f%% | %.3f (%s) | %.1f MB (%s) |\n", name,
			medianOf(rs, runResult.acceptedRate), medianOf(rs, runResult.deliveredRate),
			100*medianOf(rs, runResult.deliveredRate)/lim,
			medianOf(rs, runResult.cpuPer1000), cpuOf,
			medianOf(rs, func(r runResult) float64 { return float64(r.peakRSS) / 1e6 }), cpuOf)
	}
	row("smtp-source → smtp-sink (loopback limit)", "smtp-sink", direct)
	row("smtp-source → sekisho, all checks → smtp-sink", "sekisho", via)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Where the CPU went, in CPU-ms per message (medians); the machine line counts every process, other users' included:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| process | loopback limit run | sekisho run |")
	fmt.Fprintln(w, "|---|---|---|")
	perMsg := func(rs []runResult, name string) float64 {
		return medianOf(rs, func(r runResult) float64 { return r.cpuOf[name].Seconds() * 1000 / float64(r.messages) })
	}
	for _, name := range []string{"sekisho", "slapd", "smtp-source", "smtp-sink", "bench (test DNS)"} {
		fmt.Fprintf(w, "| %s | %.3f | %.3f |\n", name, perMsg(direct, name), perMsg(via, name))
	}
	machine := func(rs []runResult) (float64, float64) {
		return medianOf(rs, func(r runResult) float64 { return r.machine.Seconds() * 1000 / float64(r.messages) }),
			medianOf(rs, func(r runResult) float64 {
				return 100 * r.machine.Seconds() / (r.delivered.Seconds() * float64(runtime.NumCPU()))
			})
	}
	dm, db := machine(direct)
	vm, vb := machine(via)
	fmt.Fprintf(w, "| machine (busy %%) | %.3f (%.0f%%) | %.3f (%.0f%%) |\n", dm, db, vm, vb)
	fmt.Fprintf(w, "\nDNS queries per message through sekisho (its cache in front of the test DNS server): %.3f\n",
		medianOf(via, func(r runResult) float64 { return float64(r.dnsQueries) / float64(r.messages) }))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each run (msg/s delivered, loopback limit / sekisho / ratio; the share of the processors' time the host stole, loopback / sekisho run):")
	fmt.Fprintln(w)
	ratios := make([]float64, len(direct))
	for i := range direct {
		d, v := direct[i].deliveredRate(), via[i].deliveredRate()
		ratios[i] = v / d
		fmt.Fprintf(w, "- run %d: %.0f / %.0f / %.0f%% (stolen %.0f%% / %.0f%%)\n", i+1, d, v, 100*v/d,
			100*direct[i].stolenShare(), 100*via[i].stolenShare())
	}
	sort.Float64s(ratios)
	fmt.Fprintf(w, "\nMedian of the runs' own ratios: %.0f%%. Time stolen by the host (median): %.0f%% of the loopback runs, %.0f%% of the sekisho runs",
		100*ratios[len(ratios)/2], 100*medianOf(direct, runResult.stolenShare), 100*medianOf(via, runResult.stolenShare))
	if medianOf(direct, runResult.stolenShare) > 0.05 || medianOf(via, runResult.stolenShare) > 0.05 {
		fmt.Fprint(w, ": over 5%, the rates of this run say more about the host than about sekisho")
	}
	fmt.Fprintln(w, ".")
}

// writeDKIMCost is the cost of DKIM verification and DMARC: the same
// signed message through a gateway that verifies it and one that does not.
func writeDKIMCost(w io.Writer, st settings, verified, unverified []runResult) {
	fmt.Fprintf(w, "\nDKIM-signed traffic (rsa-sha256 2048 bits, relaxed/relaxed, d= the From domain, p=reject; %d octets of body), the same message through a gateway with dmarc on and one with dmarc off; medians of %d runs (runs alternate):\n\n",
		st.size, st.runs)
	fmt.Fprintln(w, "| path | msg/s delivered | CPU s per 1,000 msgs (sekisho) | peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(name string, rs []runResult) {
		fmt.Fprintf(w, "| %s | %.0f | %.3f | %.1f MB |\n", name, medianOf(rs, runResult.deliveredRate), medianOf(rs, runResult.cpuPer1000),
			medianOf(rs, func(r runResult) float64 { return float64(r.peakRSS) / 1e6 }))
	}
	row("dmarc on: every signature verified, DMARC evaluated", verified)
	row("dmarc off", unverified)
	cpuRatio := medianOf(verified, runResult.cpuPer1000) / medianOf(unverified, runResult.cpuPer1000)
	rateRatio := medianOf(verified, runResult.deliveredRate) / medianOf(unverified, runResult.deliveredRate)
	fmt.Fprintf(w, "\nCost of verification: %.2f× sekisho's CPU per message; %.0f%% of the rate without it.\n", cpuRatio, 100*rateRatio)
}

// heldInPause opens st.paused connections from 127.0.0.2 that never talk
// (held in the one-minute pause: 127.0.0.2 is not remembered), then
// measures sekisho's memory and a remembered client's time to banner.
func heldInPause(t *testing.T, w io.Writer, st settings, gw *harness.Gateway, httpAddr string) {
	idle := bannerTimes(t, gw.SMTP, 5)
	rss0 := procStatus(t, gw.PID(), "VmRSS")
	resetPeakRSS(t, gw.PID())

	start := time.Now()
	conns := dialMany(t, gw.SMTP, "127.0.0.2", st.paused)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Held means counted in the pause by sekisho itself, not only
	// accepted by the kernel.
	waitMetric(t, httpAddr, `sekisho_connections{state="greet_pause"}`, float64(st.paused), time.Minute)
	opened := time.Since(start)
	rss := procStatus(t, gw.PID(), "VmRSS")
	loaded := bannerTimes(t, gw.SMTP, 5)
	if st.profile != "" {
		fetch(t, "http://"+os.Getenv("SEKISHO_PPROF_ADDR")+"/debug/pprof/heap", filepath.Join(st.profile, "heap-paused.pb.gz"))
		fetch(t, "http://"+os.Getenv("SEKISHO_PPROF_ADDR")+"/debug/pprof/goroutine", filepath.Join(st.profile, "goroutine-paused.pb.gz"))
	}
	peak := procStatus(t, gw.PID(), "VmHWM")
	if took := time.Since(start); took > 55*time.Second {
		t.Errorf("the measurement took %v: the first clients may have left the one-minute pause", took)
	}

	fmt.Fprintf(w, "\n%d clients held in the greet pause (from 127.0.0.2, not remembered, delay 1m), opened in %.1f s:\n\n", st.paused, opened.Seconds())
	fmt.Fprintln(w, "| | sekisho RSS | per held client | remembered client's time to banner (median of 5) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| idle | %.1f MB | | %s |\n", float64(rss0)/1e6, fmtDur(idle))
	fmt.Fprintf(w, "| %d held | %.1f MB (peak %.1f MB) | %.1f kB | %s |\n", st.paused, float64(rss)/1e6, float64(peak)/1e6,
		float64(rss-rss0)/float64(st.paused)/1e3, fmtDur(loaded))
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

// bannerTimes connects n times from 127.0.0.1 (remembered as having waited
// out the pause) and returns the median time from connect to banner.
func bannerTimes(t *testing.T, addr string, n int) time.Duration {
	var ds []float64
	for range n {
		start := time.Now()
		c := harness.DialFrom(t, "127.0.0.1", addr)
		ds = append(ds, float64(time.Since(start)))
		c.Close()
	}
	return time.Duration(median(ds))
}

// dialMany opens n connections from src, in parallel, and keeps them.
func dialMany(t *testing.T, addr, src string, n int) []net.Conn {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					failed.Store(&err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatalf("opening %d connections: %v (is the file descriptor limit raised? bench.sh does)", n, *err)
	}
	return conns
}

// waitMetric polls /metrics until the sample named has at least want.
func waitMetric(t *testing.T, httpAddr, sample string, want float64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	var got float64
	for {
		got = metric(t, httpAddr, sample)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want %v", sample, got, timeout, want)
		}
		time.Sleep(100 * time.Millisecond) // polling a gauge: no other signal
	}
}

func metric(t *testing.T, httpAddr, sample string) float64 {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}

// profileThroughput takes a CPU profile of sekisho during a run through it
// long enough for 10 s of profile, and the allocations of that run.
func profileThroughput(t *testing.T, st settings, src smtpSource, gw *harness.Gateway, sk *sink, via []runResult) {
	pprofAddr := os.Getenv("SEKISHO_PPROF_ADDR")
	if pprofAddr == "" {
		t.Fatal("no SEKISHO_PPROF_ADDR")
	}
	if err := os.MkdirAll(st.profile, 0o755); err != nil {
		t.Fatal(err)
	}
	const seconds = 10
	n := int(medianOf(via, runResult.acceptedRate) * (seconds + 3))
	fetch(t, "http://"+pprofAddr+"/debug/pprof/allocs", filepath.Join(st.profile, "allocs-before.pb.gz"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetch(t, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, seconds), filepath.Join(st.profile, "cpu.pb.gz"))
	}()
	src.run(t, gw.SMTP, n, sk)
	<-done
	fetch(t, "http://"+pprofAddr+"/debug/pprof/allocs", filepath.Join(st.profile, "allocs-after.pb.gz"))
}

func fetch(t *testing.T, url, path string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("fetch %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Errorf("fetch %s: %v", url, err)
	}
}

// clockTicks is USER_HZ, the unit of /proc's CPU times on Linux.
const clockTicks = 100

// cpuTime is utime+stime of pid from /proc/PID/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count from after ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// resetPeakRSS sets VmHWM back to the current RSS (proc(5), clear_refs 5).
func resetPeakRSS(t *testing.T, pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("resetting the peak RSS of %d: %v", pid, err)
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func binaryVersion(t *testing.T) string {
	out, err := exec.Command(harness.Binary(t), "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), "sekisho "))
}
