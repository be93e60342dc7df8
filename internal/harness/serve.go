package harness

import (
	"net"
	"sync"
	"testing"
	"time"
)

// ServeConns accepts connections on l until the test ends, each served by
// serve in its own goroutine. At cleanup it closes the listener and every
// connection still open (a peer that holds one cannot hold the test), and
// waits for the goroutines.
func ServeConns(t testing.TB, l net.Listener, serve func(net.Conn)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	ended := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if ended {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		ended = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// changes guards what a server's goroutines record and lets a test wait for
// it: every update closes and replaces a channel that waiters watch.
type changes struct {
	mu      sync.Mutex
	changed chan struct{}
}

// update runs f under the lock and wakes the waiters.
func (c *changes) update(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

// wait waits until done (called under the lock) is true; it reports false
// if that did not happen within timeout.
func (c *changes) wait(done func() bool, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := done()
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
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
