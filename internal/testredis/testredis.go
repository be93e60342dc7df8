// Package testredis starts a real redis-server for tests: on a free loopback
// port, in a temporary directory, with no persistence, so that a test can
// stop it, kill it and start it again on the same address to inject a store
// outage for real.
//
// A missing redis-server fails the test under CI=true and skips it elsewhere
// (testenv.Command).
package testredis

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/testenv"
)

// readyTimeout bounds how long a starting server may take to answer PING.
const readyTimeout = 10 * time.Second

// Server is one redis-server process owned by a test. Its address stays the
// same across Stop/Kill and Restart.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	addr    string
	cluster bool
	// replicaOf, if set, is the master this server replicates
	// (--replicaof).
	replicaOf string
	// sentinel, if set, makes this server a Sentinel monitoring the
	// master named sentinel.name at sentinel.master.
	sentinel *sentinelConf

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	output  *lockedBuffer // the server's log, shown when it misbehaves
	running bool
}

// Start starts a standalone redis-server and waits until it answers PING. The
// server is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartCluster starts a redis-server in cluster mode as a single-node cluster
// that owns all 16384 hash slots, and waits until the cluster state is ok. A
// go-redis ClusterClient works against it, and Redis enforces the Cluster
// rules (a script whose keys hash to different slots fails with CROSSSLOT),
// which is what a test of Cluster support needs to see.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

type sentinelConf struct {
	name, master string
	opts         SentinelOptions
}

// SentinelOptions tunes the Sentinels of StartSentinels. Zero values are
// Redis' own defaults (quorum 1 here), which make a failover take more than
// half a minute; a failover test sets small ones.
type SentinelOptions struct {
	// Quorum is how many Sentinels must agree that the master is down
	// before a failover starts (sentinel monitor ... <quorum>); default 1.
	Quorum int
	// DownAfter is sentinel down-after-milliseconds: how long the master
	// may not answer before a Sentinel holds it down; default Redis' 30 s.
	DownAfter time.Duration
	// FailoverTimeout is sentinel failover-timeout; a failover attempt
	// that failed (a split vote) is tried again after twice this; default
	// Redis' 3 minutes.
	FailoverTimeout time.Duration
	// Replicas is how many replicas of the master every Sentinel must
	// know before StartSentinels returns (a Sentinel can only promote a
	// replica it knows).
	Replicas int
}

// conf is the Sentinel's configuration file for this master.
func (c *sentinelConf) conf() string {
	host, port, _ := net.SplitHostPort(c.master)
	q := c.opts.Quorum
	if q <= 0 {
		q = 1
	}
	body := fmt.Sprintf("sentinel monitor %s %s %s %d\n", c.name, host, port, q)
	if c.opts.DownAfter > 0 {
		body += fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", c.name, c.opts.DownAfter.Milliseconds())
	}
	if c.opts.FailoverTimeout > 0 {
		body += fmt.Sprintf("sentinel failover-timeout %s %d\n", c.name, c.opts.FailoverTimeout.Milliseconds())
	}
	return body
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) that
// monitors master under the name masterName, with a quorum of 1, and waits
// until it answers PING and knows the master's address. go-redis'
// failover client (UniversalOptions.MasterName) finds the master through
// it. Stop, Kill and Restart work as for any server.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	return startSentinel(t, master, masterName, SentinelOptions{})
}

func startSentinel(t testing.TB, master *Server, masterName string, o SentinelOptions) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		bin:      testenv.Command(t, "redis-server", "redis-server"),
		dir:      t.TempDir(),
		addr:     testenv.FreePort(t),
		sentinel: &sentinelConf{name: masterName, master: master.Addr(), opts: o},
	}
	t.Cleanup(s.Kill)
	s.launch()
	deadline := time.Now().Add(readyTimeout)
	for {
		reply, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)
		if err == nil && strings.HasPrefix(reply, "*2") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: sentinel on %s does not know %s: %q, %v", s.addr, masterName, reply, err)
		}
		time.Sleep(20 * time.Millisecond) // no other signal than asking
	}
}

// StartSentinels starts n Sentinels monitoring master under masterName with
// the options o, and waits until every one of them knows the other n-1
// (Sentinels find each other through the master's __sentinel__:hello
// channel, every 2 s) and o.Replicas replicas: only then can they elect a
// leader and fail over. Start the replicas first (StartReplica).
func StartSentinels(t testing.TB, master *Server, masterName string, n int, o SentinelOptions) []*Server {
	t.Helper()
	var ss []*Server
	for i := 0; i < n; i++ {
		ss = append(ss, startSentinel(t, master, masterName, o))
	}
	deadline := time.Now().Add(30 * time.Second) // discovery takes a few hello periods
	for _, s := range ss {
		for {
			info, err := s.Do("SENTINEL", "MASTER", masterName)
			others, replicas := fieldOf(info, "num-other-sentinels"), fieldOf(info, "num-slaves")
			if err == nil && others == strconv.Itoa(n-1) && replicas == strconv.Itoa(o.Replicas) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testredis: sentinel on %s knows %q other sentinels and %q replicas, want %d and %d (%v)",
					s.addr, others, replicas, n-1, o.Replicas, err)
			}
			time.Sleep(50 * time.Millisecond) // no other signal than asking
		}
	}
	return ss
}

// fieldOf finds name in a flat array reply as Do returns it (one element
// per line: "*n", then "$len" and the value for each bulk string) and
// returns the value after it.
func fieldOf(reply, name string) string {
	lines := strings.Split(reply, "\n")
	for i := 2; i+2 < len(lines); i += 4 { // "$len", name, "$len", value
		if lines[i] == name {
			return lines[i+2]
		}
	}
	return ""
}

// MasterAddrByName asks a Sentinel for the address of the master it knows
// as name (SENTINEL GET-MASTER-ADDR-BY-NAME), as "host:port".
func (s *Server) MasterAddrByName(name string) (string, error) {
	reply, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
	if err != nil {
		return "", err
	}
	l := strings.Split(reply, "\n")
	if len(l) != 5 || l[0] != "*2" {
		return "", fmt.Errorf("testredis: GET-MASTER-ADDR-BY-NAME %s: %q", name, reply)
	}
	return net.JoinHostPort(l[2], l[4]), nil
}

// StartReplica starts a redis-server that replicates master (--replicaof)
// and waits until its link to the master is up and the first
// synchronisation is done. Restart keeps it a replica of the same master.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		bin:       testenv.Command(t, "redis-server", "redis-server"),
		dir:       t.TempDir(),
		addr:      testenv.FreePort(t),
		replicaOf: master.Addr(),
	}
	t.Cleanup(s.Kill)
	s.launch()
	deadline := time.Now().Add(readyTimeout)
	for {
		info, err := s.Do("INFO", "replication")
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: replica on %s has no link to %s: %q, %v", s.addr, master.Addr(), info, err)
		}
		time.Sleep(20 * time.Millisecond) // no other signal than asking
	}
}

// Info returns one field of INFO (for example "role" or
// "master_repl_offset"), "" if the server does not report it.
func (s *Server) Info(field string) (string, error) {
	info, err := s.Do("INFO")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return v, nil
		}
	}
	return "", nil
}

// WaitReplicated waits until replica has everything master had written
// when it was called: the replica's slave_repl_offset reaches the master's
// master_repl_offset. Replication is asynchronous, so this is how a test
// knows that data written before a failover is on the replica.
func WaitReplicated(t testing.TB, master, replica *Server, timeout time.Duration) {
	t.Helper()
	v, err := master.Info("master_repl_offset")
	want, perr := strconv.ParseInt(v, 10, 64)
	if err != nil || perr != nil {
		t.Fatalf("testredis: master_repl_offset of %s: %q, %v", master.addr, v, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		v, err := replica.Info("slave_repl_offset")
		got, _ := strconv.ParseInt(v, 10, 64)
		if err == nil && got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: replica %s at offset %q, master %s at %d after %v (%v)", replica.addr, v, master.addr, want, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // no other signal than asking
	}
}

func start(t testing.TB, cluster bool) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		bin:     testenv.Command(t, "redis-server", "redis-server"),
		dir:     t.TempDir(),
		addr:    testenv.FreePort(t),
		cluster: cluster,
	}
	t.Cleanup(s.Kill)
	s.launch()
	if cluster {
		s.assignAllSlots()
	}
	return s
}

// Addr is the server's "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr }

// Stop shuts the server down gracefully (SIGTERM; no persistence is
// configured, so nothing is saved) and waits for the process to exit. Clients
// then get "connection refused".
func (s *Server) Stop() {
	s.t.Helper()
	s.signalAndWait(syscall.SIGTERM)
}

// Kill kills the server with SIGKILL and waits for the process to exit, as a
// crash would. Calling it on a stopped server does nothing.
func (s *Server) Kill() {
	s.signalAndWait(syscall.SIGKILL)
}

// Freeze stops the server process with SIGSTOP: connections stay open and
// nothing is answered, as on a hung server or a black-holed path. Thaw
// resumes it. The test cleanup kills a frozen server as well.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		s.t.Fatalf("testredis: %v sent to a server that is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testredis: %v: %v", sig, err)
	}
}

// Restart starts the server again on the same port after Stop or Kill (or
// stops it first if it is still running). The data is gone: there is no
// persistence. In cluster mode the node forgets its configuration too and all
// slots are assigned again.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.launch()
	if s.cluster {
		s.assignAllSlots()
	}
}

// Do sends one command to the server on a fresh connection and returns its
// reply as text: a status, error or integer reply as its line ("+OK",
// "-ERR ...", ":1"), a bulk string as "$<len>" and its content on the next
// line ("$-1" for nil), an array as "*<n>" followed by its elements, one per
// line. It is for test set-up and inspection, not for the code under test,
// which uses go-redis.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(encodeCommand(args)); err != nil {
		return "", err
	}
	var lines []string
	if err := readReply(bufio.NewReader(c), &lines); err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	*out = append(*out, line)
	if line == "" {
		return fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return err
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		*out = append(*out, string(body[:n]))
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) launch() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	args := []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
		"--protected-mode", "no",
		// A replica that attaches is served at once, not after the
		// default 5 s that diskless sync waits for more replicas.
		"--repl-diskless-sync-delay", "0",
	}
	if s.replicaOf != "" {
		host, port, _ := net.SplitHostPort(s.replicaOf)
		args = append(args, "--replicaof", host, port)
	}
	if s.sentinel != nil {
		// Sentinel needs a writable config file of its own (it rewrites it),
		// and takes no persistence options.
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			if err := os.WriteFile(conf, []byte(s.sentinel.conf()), 0o644); err != nil {
				s.t.Fatal(err)
			}
		}
		args = []string{conf, "--sentinel",
			"--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
			"--daemonize", "no", "--logfile", "", "--protected-mode", "no"}
	}
	if s.cluster {
		// A fresh node configuration for every start: the restarted node is
		// a new, empty node, as a crashed node without persistence would be.
		conf := fmt.Sprintf("nodes-%d.conf", time.Now().UnixNano())
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", conf)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testredis: starting %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.output, s.running = cmd, exited, out, true
	s.mu.Unlock()

	// Ready means: answers PING. A process that exits first (port taken,
	// bad option) fails the test with its log.
	deadline := time.Now().Add(readyTimeout)
	for {
		reply, err := s.Do("PING")
		if err == nil && reply == "+PONG" {
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("testredis: redis-server on %s exited during start-up:\n%s", s.addr, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: redis-server on %s did not answer PING within %v (last: %q, %v):\n%s",
				s.addr, readyTimeout, reply, err, out.String())
		}
	}
}

func (s *Server) assignAllSlots() {
	s.t.Helper()
	if reply, err := s.Do("CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil || reply != "+OK" {
		s.t.Fatalf("testredis: CLUSTER ADDSLOTSRANGE: %q, %v", reply, err)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		info, err := s.Do("CLUSTER", "INFO")
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: cluster on %s not ok within %v: %q, %v", s.addr, readyTimeout, info, err)
		}
		time.Sleep(20 * time.Millisecond) // the cluster state has no other signal than CLUSTER INFO
	}
}

func (s *Server) signalAndWait(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited, running := s.cmd, s.exited, s.running
	s.running = false
	s.mu.Unlock()
	if !running {
		return
	}
	cmd.Process.Signal(sig)
	cmd.Process.Signal(syscall.SIGCONT) // a frozen server handles SIGTERM only once resumed
	select {
	case <-exited:
	case <-time.After(readyTimeout):
		cmd.Process.Kill()
		<-exited
	}
}

// encodeCommand writes args as a RESP array of bulk strings.
func encodeCommand(args []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
