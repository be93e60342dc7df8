package harness

import (
	"net"
	"testing"
	"time"
)

// HoldHop is a next hop that accepts TCP connections and then does not speak
// SMTP: it writes an optional greeting and either holds the connection open,
// answering nothing, or closes it. It records when each connection was
// accepted and when the gateway closed it, so a test can see a call-ahead
// begin and be abandoned from the next hop's side.
type HoldHop struct {
	Addr string

	greeting string
	closeNow bool

	changes  // guards accepted and closed
	accepted []time.Time
	closed   []time.Time
}

// StartHoldHop starts a holding next hop on a free loopback port. greeting,
// if not empty, is written (CRLF added) on every connection; closeAfter
// closes the connection right after it. Otherwise the connection is held
// until the peer closes it (or the test ends), and whatever the peer sends is
// read and dropped.
func StartHoldHop(t testing.TB, greeting string, closeAfter bool) *HoldHop {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &HoldHop{Addr: l.Addr().String(), greeting: greeting, closeNow: closeAfter}
	ServeConns(t, l, func(c net.Conn) {
		h.event(&h.accepted)
		h.serve(c)
		c.Close()
		h.event(&h.closed)
	})
	return h
}

func (h *HoldHop) serve(c net.Conn) {
	if h.greeting != "" {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(h.greeting + "\r\n")); err != nil {
			return
		}
	}
	if h.closeNow {
		return
	}
	// Hold: read until the peer closes (EOF or reset) and answer nothing.
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}

func (h *HoldHop) event(list *[]time.Time) {
	h.update(func() { *list = append(*list, time.Now()) })
}

// Accepted returns the times at which connections were accepted.
func (h *HoldHop) Accepted() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.accepted...)
}

// Closed returns the times at which the peer's side of a connection ended
// (for a held connection: the gateway closed it).
func (h *HoldHop) Closed() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.closed...)
}

// WaitAccepted waits until n connections were accepted; it reports false if
// that did not happen within timeout.
func (h *HoldHop) WaitAccepted(n int, timeout time.Duration) bool {
	return h.wait(func() bool { return len(h.accepted) >= n }, timeout)
}

// WaitClosed waits until n connections have ended; it reports false if that
// did not happen within timeout.
func (h *HoldHop) WaitClosed(n int, timeout time.Duration) bool {
	return h.wait(func() bool { return len(h.closed) >= n }, timeout)
}
