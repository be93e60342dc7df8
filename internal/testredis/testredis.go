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
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) that
// monitors master under the name masterName, with a quorum of 1, and waits
// until it answers PING and knows the master's address. go-redis'
// failover client (UniversalOptions.MasterName) finds the master through
// it. Stop, Kill and Restart work as for any server.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		bin:      testenv.Command(t, "redis-server", "redis-server"),
		dir:      t.TempDir(),
		addr:     testenv.FreePort(t),
		sentinel: &sentinelConf{name: masterName, master: master.Addr()},
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
	}
	if s.sentinel != nil {
		// Sentinel needs a writable config file of its own (it rewrites it),
		// and takes no persistence options.
		host, mport, _ := net.SplitHostPort(s.sentinel.master)
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			body := fmt.Sprintf("sentinel monitor %s %s %s 1\n", s.sentinel.name, host, mport)
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
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
