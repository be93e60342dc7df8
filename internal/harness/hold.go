package harness

import (
	"net"
	"sync"
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

	l        net.Listener
	greeting string
	closeNow bool

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at every accept and close
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
	h := &HoldHop{Addr: l.Addr().String(), l: l, greeting: greeting, closeNow: closeAfter, changed: make(chan struct{})}
	var wg sync.WaitGroup
	var cmu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
			h.event(&h.accepted)
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.serve(c)
				h.event(&h.closed)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	return h
}

func (h *HoldHop) serve(c net.Conn) {
	defer c.Close()
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
	h.mu.Lock()
	*list = append(*list, time.Now())
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
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

func (h *HoldHop) wait(done func() bool, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		ok, ch := done(), h.changed
		h.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}
