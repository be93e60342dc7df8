// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a real server: it can freeze the path (stop forwarding
// in both directions without closing anything, like a dead router or a
// dropped VPN: the client's reads hang instead of failing), thaw it again, and
// reset every connection. It counts connections and bytes, and can show the
// client→server bytes to a test, e.g. to count LDAP requests or SMTP commands.
//
// It is protocol-agnostic and used for the LDAP, SMTP next-hop and Redis fault
// tests:
//
//	p := faultproxy.Start(t, slapd.Addr())
//	// point the client at p.Addr() instead of the server
//	p.Freeze()   // the client's next request gets no answer, and no error
//	p.Thaw()     // held bytes flow again
//	p.CloseAll() // every open connection is reset (TCP RST to both ends)
//
// The proxy is stopped by t.Cleanup.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections from its listening address to one upstream
// address. All methods are safe for concurrent use.
type Proxy struct {
	t        testing.TB
	upstream string
	ln       net.Listener

	mu      sync.Mutex
	thawed  chan struct{} // nil while not frozen; closed by Thaw
	conns   map[*proxiedConn]struct{}
	observe func([]byte)
	stopped bool

	accepted       atomic.Int64
	clientToServer atomic.Int64
	serverToClient atomic.Int64

	done chan struct{} // closed when the proxy stops
	wg   sync.WaitGroup
}

// Stats are the proxy's counters since Start.
type Stats struct {
	Accepted       int64 // connections accepted from clients (forwarded or not)
	Active         int64 // connections currently open
	ClientToServer int64 // bytes forwarded from clients to the upstream
	ServerToClient int64 // bytes forwarded from the upstream to clients
}

// Start listens on a free loopback port and forwards every connection to
// upstream ("host:port"). The upstream need not be up: a connection the
// proxy cannot forward is closed, as a dead server would do. t.Cleanup stops
// the proxy and closes every connection.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{
		t:        t,
		upstream: upstream,
		ln:       ln,
		conns:    map[*proxiedConn]struct{}{},
		done:     make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.stop)
	return p
}

// Addr is the address clients connect to instead of the upstream.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Freeze stops forwarding in both directions without closing any
// connection. Bytes already read are held, not dropped; reads by either end
// simply get nothing more. New connections are accepted (the kernel completes
// the handshake) but not connected upstream until Thaw. Freezing a frozen
// proxy does nothing.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed == nil {
		p.thawed = make(chan struct{})
	}
}

// Thaw resumes forwarding: held bytes and connections accepted while frozen
// go on as if the path had only been slow.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed != nil {
		close(p.thawed)
		p.thawed = nil
	}
}

// Frozen reports whether the proxy is frozen.
func (p *Proxy) Frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.thawed != nil
}

// CloseAll resets every open connection, on both sides (SO_LINGER 0, so the
// peers get a TCP RST rather than an orderly FIN). The proxy keeps accepting
// new connections, and stays frozen if it was.
func (p *Proxy) CloseAll() {
	p.mu.Lock()
	conns := make([]*proxiedConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.reset()
	}
}

// ObserveClientToServer installs f to be called with every chunk of bytes
// forwarded from a client to the upstream, at the moment it is forwarded
// (never while frozen). Chunks follow TCP reads, not protocol messages: f must
// reassemble if it needs messages. f is called from the forwarding
// goroutines, possibly concurrently for different connections, and must not
// keep the slice. nil removes the observer.
func (p *Proxy) ObserveClientToServer(f func(chunk []byte)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observe = f
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := int64(len(p.conns))
	p.mu.Unlock()
	return Stats{
		Accepted:       p.accepted.Load(),
		Active:         active,
		ClientToServer: p.clientToServer.Load(),
		ServerToClient: p.serverToClient.Load(),
	}
}

func (p *Proxy) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.done)
	p.mu.Unlock()
	p.ln.Close()
	p.CloseAll()
	p.wg.Wait()
}

// gate blocks while the proxy is frozen. It returns false if the connection
// was closed or the proxy stopped while waiting.
func (p *Proxy) gate(c *proxiedConn) bool {
	for {
		p.mu.Lock()
		ch := p.thawed
		p.mu.Unlock()
		if ch == nil {
			select {
			case <-c.closed:
				return false
			default:
				return true
			}
		}
		select {
		case <-ch:
		case <-c.closed:
			return false
		case <-p.done:
			return false
		}
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (EMFILE...): keep serving.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		c := &proxiedConn{client: client, closed: make(chan struct{})}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *Proxy) serve(c *proxiedConn) {
	defer p.wg.Done()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	// While frozen, a new connection is held without contacting the upstream.
	if !p.gate(c) {
		return
	}
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		// The upstream refused or is unreachable: close the client, as the
		// server itself would have (through the proxy it looks like a reset).
		return
	}
	if !c.setServer(server) {
		server.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(c, c.client, server, &p.clientToServer, true)
	}()
	go func() {
		defer wg.Done()
		p.pipe(c, server, c.client, &p.serverToClient, false)
	}()
	wg.Wait()
}

// pipe copies src to dst through the freeze gate. When src ends, the whole
// connection is closed — but only once the gate is open, so that a server
// closing behind a frozen path is not seen by the client either.
func (p *Proxy) pipe(c *proxiedConn, src, dst net.Conn, counter *atomic.Int64, clientToServer bool) {
	defer c.close()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(c) {
				return
			}
			if clientToServer {
				p.mu.Lock()
				observe := p.observe
				p.mu.Unlock()
				if observe != nil {
					observe(buf[:n])
				}
			}
			// Counted before the write, so that a test that has seen the
			// bytes arrive also sees them counted.
			counter.Add(int64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			p.gate(c)
			return
		}
	}
}

// proxiedConn is one client connection and, once dialled, its upstream.
type proxiedConn struct {
	client net.Conn

	mu       sync.Mutex
	server   net.Conn
	isClosed bool
	closed   chan struct{}
}

func (c *proxiedConn) setServer(s net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return false
	}
	c.server = s
	return true
}

func (c *proxiedConn) close() { c.shut(false) }

func (c *proxiedConn) reset() { c.shut(true) }

func (c *proxiedConn) shut(rst bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return
	}
	c.isClosed = true
	close(c.closed)
	for _, nc := range []net.Conn{c.client, c.server} {
		if nc == nil {
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok && rst {
			tc.SetLinger(0)
		}
		nc.Close()
	}
}
