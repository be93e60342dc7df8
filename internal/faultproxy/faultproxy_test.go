package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// startEcho runs a line echo server on loopback: each line read is written
// back upper-cased, so a test can tell the reply came through the server.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	harness.ServeConns(t, ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, strings.ToUpper(line)); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends line and reads the echo with a deadline.
func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	s, err := r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func TestForwardsAndCounts(t *testing.T) {
	p := Start(t, startEcho(t))
	var mu sync.Mutex
	var seen strings.Builder
	p.ObserveClientToServer(func(b []byte) {
		mu.Lock()
		seen.Write(b)
		mu.Unlock()
	})
	c := dial(t, p.Addr())
	r := bufio.NewReader(c)
	got, err := roundTrip(c, r, "hello", 5*time.Second)
	if err != nil || got != "HELLO" {
		t.Fatalf("round trip = %q, %v; want HELLO", got, err)
	}
	st := p.Stats()
	if st.Accepted != 1 || st.Active != 1 || st.ClientToServer != 6 || st.ServerToClient != 6 {
		t.Errorf("stats = %+v, want 1 accepted, 1 active, 6 bytes each way", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen.String() != "hello\n" {
		t.Errorf("observer saw %q, want %q", seen.String(), "hello\n")
	}
}

func TestFreezeHangsWithoutClosingAndThawDelivers(t *testing.T) {
	p := Start(t, startEcho(t))
	c := dial(t, p.Addr())
	r := bufio.NewReader(c)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Freeze()
	if !p.Frozen() {
		t.Fatal("Frozen() = false after Freeze")
	}
	_, err := roundTrip(c, r, "during", 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while frozen: err = %v, want a hang (deadline exceeded), not data or a close", err)
	}
	if st := p.Stats(); st.ClientToServer != int64(len("before\n")) {
		t.Errorf("bytes forwarded while frozen: %d, want only the %d before", st.ClientToServer, len("before\n"))
	}

	// A connection made while frozen is accepted but gets nothing.
	c2 := dial(t, p.Addr())
	r2 := bufio.NewReader(c2)
	if _, err := roundTrip(c2, r2, "new", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection while frozen: err = %v, want a hang", err)
	}
	if st := p.Stats(); st.Accepted != 2 {
		t.Errorf("accepted = %d, want 2", st.Accepted)
	}

	p.Thaw()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "DURING\n" {
		t.Fatalf("after thaw: %q, %v; want the held DURING", got, err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r2.ReadString('\n'); err != nil || got != "NEW\n" {
		t.Fatalf("new connection after thaw: %q, %v; want NEW", got, err)
	}
}

func TestCloseAllResets(t *testing.T) {
	p := Start(t, startEcho(t))
	c := dial(t, p.Addr())
	r := bufio.NewReader(c)
	if _, err := roundTrip(c, r, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.CloseAll()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.ReadByte()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after CloseAll: err = %v, want the connection closed", err)
	}
	// The proxy still serves new connections.
	c2 := dial(t, p.Addr())
	if got, err := roundTrip(c2, bufio.NewReader(c2), "again", 5*time.Second); err != nil || got != "AGAIN" {
		t.Fatalf("after CloseAll: %q, %v", got, err)
	}
}

func TestCloseAllWhileFrozenStaysFrozen(t *testing.T) {
	p := Start(t, startEcho(t))
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, bufio.NewReader(c), "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Freeze()
	p.CloseAll()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("frozen connection after CloseAll: err = %v, want closed", err)
	}
	if !p.Frozen() {
		t.Error("CloseAll thawed the proxy")
	}
}

func TestUpstreamDownClosesClient(t *testing.T) {
	p := Start(t, testenv.FreePort(t)) // nothing listens there
	c := dial(t, p.Addr())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through proxy to a dead upstream: err = %v, want closed", err)
	}
}
