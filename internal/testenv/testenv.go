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
// moment ago. The race with other processes is accepted: servers started on it
// fail loudly if it was taken.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
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
