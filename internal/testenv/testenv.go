// Package testenv is what sekisho's tests share to start real servers: free
// loopback ports, finding the binaries of slapd, redis-server, swaks and
// Postfix's tools, and the rule that under CI=true a missing component fails
// the run instead of skipping the test.
package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI=true): missing components
// are then failures, never skips.
func InCI() bool { return os.Getenv("CI") == "true" }

// Command returns the path of an external program the test needs. It looks in
// PATH and in the sbin directories Debian puts daemons in. If the program is
// missing the test fails under CI and is skipped elsewhere, with the Debian
// package to install named either way.
func Command(t testing.TB, name, debianPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/lib/postfix/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	msg := name + " not found: apt-get install " + debianPackage + " (make test does this)"
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a loopback address "127.0.0.1:port" whose port was free a
// moment ago, for a server a test starts later. The port is taken below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), so that the
// source port of an outgoing connection (the tests make thousands) never
// takes it meanwhile, and never twice in one test process. Each process
// starts at its own offset, so that the test binaries of other packages
// running at the same time rarely ask for the same port; a server started
// on a port taken anyway fails loudly.
func FreePort(t testing.TB) string {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	lo, hi := freePortRange()
	if portNext == 0 {
		portNext = lo + (os.Getpid()*7919)%(hi-lo)
	}
	for range hi - lo {
		port := portNext
		if portNext++; portNext >= hi {
			portNext = lo
		}
		if portHanded[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		l.Close()
		portHanded[port] = true
		return l.Addr().String()
	}
	t.Fatalf("testenv: no free port in %d-%d", lo, hi-1)
	return ""
}

var (
	portMu     sync.Mutex
	portNext   int
	portHanded = map[int]bool{}
)

// freePortRange is [lo, hi): from 10000 up to the start of the ephemeral
// range; 20000–30000 when that range cannot be read or starts below 11000
// (then nothing keeps clear of it).
func freePortRange() (lo, hi int) {
	const below = 10000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 20000, 30000
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 20000, 30000
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start < below+1000 {
		return 20000, 30000
	}
	return below, start
}

// WaitTCP waits until addr accepts TCP connections or the timeout passes.
// Polling a port is the only signal a foreign daemon gives that it is ready.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not accept connections within %v: %v", addr, timeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
