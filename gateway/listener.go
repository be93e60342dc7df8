package gateway

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"sekisho/filters"
	"sekisho/policy"
)

// connTracker counts connections in total and per client IP, refuses the
// excess with 421, and knows which sessions are inside a transaction so that
// a shutdown can let those finish while the idle ones are told 421 at once.
// It lives as long as the server: a reload changes its limits (setLimits),
// never its counts.
type connTracker struct {
	maxTotal, maxPerIP int // under mu

	mu       sync.Mutex
	total    int
	perIP    map[netip.Addr]int
	conns    map[*trackedConn]struct{}
	draining bool
	idle     chan struct{} // closed when draining and no connection is left
	pausing  int           // connections held in the greet pause (metrics)
}

func newConnTracker(maxTotal, maxPerIP int) *connTracker {
	return &connTracker{maxTotal: maxTotal, maxPerIP: maxPerIP, perIP: map[netip.Addr]int{}, conns: map[*trackedConn]struct{}{}}
}

// setLimits changes the limits for the connections still to come. The
// connections counted stay counted: above a lowered limit, new ones are
// refused until enough have ended; none is closed for it.
func (t *connTracker) setLimits(maxTotal, maxPerIP int) {
	t.mu.Lock()
	t.maxTotal, t.maxPerIP = maxTotal, maxPerIP
	t.mu.Unlock()
}

// admit registers a connection, or returns the reply for the excess.
func (t *connTracker) admit(c net.Conn) (*trackedConn, *policy.Reply) {
	ip := remoteIP(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.draining:
		return nil, policy.ServiceUnavailable
	case t.maxTotal > 0 && t.total >= t.maxTotal:
		return nil, policy.TooManyConnections
	case t.maxPerIP > 0 && t.perIP[ip] >= t.maxPerIP:
		return nil, policy.TooManyConnections.Withf("too many connections from your address, try again later")
	}
	t.total++
	t.perIP[ip]++
	tc := &trackedConn{Conn: c, t: t, ip: ip}
	t.conns[tc] = struct{}{}
	return tc, nil
}

func (t *connTracker) release(tc *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[tc]; !ok {
		return
	}
	delete(t.conns, tc)
	t.total--
	if t.perIP[tc.ip]--; t.perIP[tc.ip] <= 0 {
		delete(t.perIP, tc.ip)
	}
	if t.draining && len(t.conns) == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// drain refuses new connections and closes idle ones with 421; a session in
// a transaction is closed right after its transaction's final reply. The
// returned channel is closed when no connection is left.
func (t *connTracker) drain() <-chan struct{} {
	t.mu.Lock()
	t.draining = true
	done := make(chan struct{})
	if len(t.conns) == 0 {
		close(done)
	} else {
		t.idle = done
	}
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle()
	}
	return done
}

// closeAll sends 421 to every remaining connection and closes it: the end of
// the shutdown grace period. A session cut off in DATA never got its 250, so
// its sender retries; nothing acknowledged is lost.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.say421(policy.ServiceUnavailable)
	}
}

// states returns how many connections are held in the greet pause and how
// many are past it (sekisho_connections).
func (t *connTracker) states() (pausing, session int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pausing, t.total - t.pausing
}

func (t *connTracker) pauseStarted(d int) {
	t.mu.Lock()
	t.pausing += d
	t.mu.Unlock()
}

func (t *connTracker) isDraining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.draining
}

// trackedConn is a client connection as the tracker sees it: counted while
// open, held for the greet pause before its first write, and reachable by a
// shutdown. The session (conn.go) registers how to tell it 421, so that the
// 421 goes through whatever the session speaks by then (clear or TLS).
type trackedConn struct {
	net.Conn
	t  *connTracker
	ip netip.Addr

	mu    sync.Mutex
	busy  bool                // inside a transaction
	say   func(*policy.Reply) // the session's way to send 421 and close
	once  sync.Once
	pause time.Duration // greet pause still to hold before the banner

	// Set at accept, before the session starts.
	// onPause reports the greet pause's outcome: greetPassed,
	// greetPregreet or greetLeft (with the read error), and whether it
	// was remembered from an earlier connection.
	onPause   func(outcome string, remembered bool, err error)
	recalled  <-chan string        // what the greet memory knows of the client
	connState *filters.Transaction // what the connect stage prepared
	gen       *generation          // the configuration taken at accept; the session releases it
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if d := c.pause; d > 0 {
		// The first write is the banner: hold it, unless the client is
		// remembered from an earlier connection (at this gateway or
		// another on the same store).
		c.pause = 0
		verdict := ""
		if c.recalled != nil {
			select {
			case verdict = <-c.recalled:
			case <-time.After(greetMemoryTimeout):
			}
		}
		var err error
		switch verdict {
		case greetPassed:
		case greetPregreet:
			err = errPregreet
		default:
			c.t.pauseStarted(1)
			err = c.greetPause(d)
			c.t.pauseStarted(-1)
		}
		pregreet := errors.Is(err, errPregreet)
		if c.onPause != nil && verdict != greetPassed {
			// Noted (logged, counted, remembered) before the client hears
			// the refusal: its next connection, anywhere, finds it. A
			// client that hung up during the pause (FIN or RST) did not
			// wait it out: it is never remembered as having passed.
			outcome := greetPassed
			switch {
			case pregreet:
				outcome = greetPregreet
			case err != nil:
				outcome = greetLeft
			}
			c.onPause(outcome, verdict == greetPregreet, err)
		}
		if pregreet {
			c.refusePregreet()
		}
		if err != nil {
			c.Close()
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// setBusy marks the session as inside a transaction (MAIL accepted, the
// data not yet answered) or not.
func (c *trackedConn) setBusy(busy bool) {
	c.mu.Lock()
	c.busy = busy
	c.mu.Unlock()
}

// idleWhileDraining reports a session outside a transaction while the
// server shuts down: it is told 421 after its current reply.
func (c *trackedConn) idleWhileDraining() bool {
	c.mu.Lock()
	busy := c.busy
	c.mu.Unlock()
	return !busy && c.t.isDraining()
}

func (c *trackedConn) setSay(say func(*policy.Reply)) {
	c.mu.Lock()
	c.say = say
	c.mu.Unlock()
}

func (c *trackedConn) closeIfIdle() {
	c.mu.Lock()
	busy := c.busy
	c.mu.Unlock()
	if !busy {
		c.say421(policy.ServiceUnavailable)
	}
}

func (c *trackedConn) say421(r *policy.Reply) {
	c.mu.Lock()
	say := c.say
	c.mu.Unlock()
	if say != nil {
		say(r)
		return
	}
	c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Conn.Write([]byte(r.Wire()))
	c.Close()
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.t.release(c)
	})
	return err
}

// limitListener admits connections through the tracker; the excess gets 421
// from a goroutine of its own, so a flood never blocks Accept.
type limitListener struct {
	net.Listener
	t *connTracker
	// admitted prepares an admitted connection (greet pause, connect-stage
	// checks) before go-smtp gets it; it must not block.
	admitted func(*trackedConn)
	// log gets the line of each refusal: a session of its own, which ends
	// with its one reply.
	log *slog.Logger
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, refusal := l.t.admit(c)
		if refusal == nil {
			if l.admitted != nil {
				l.admitted(tc)
			}
			return tc, nil
		}
		reason := "connection limit (limits.max_connections, max_connections_per_ip)"
		if refusal == policy.ServiceUnavailable {
			reason = "shutting down"
		}
		l.log.Info("connect", "session", newSessionID(), "client", remoteIP(c).String(),
			"outcome", "refused", "reply", refusal.String(), "reason", reason)
		go func() {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte(refusal.String() + "\r\n"))
			c.Close()
		}()
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}
