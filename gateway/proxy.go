package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// proxyHeaderTimeout bounds how long a connection from a load balancer
// (proxy_protocol.from) may take to send its PROXY header; one that has not
// sent it by then is closed. It never holds the accept loop: headers are
// read in a goroutine per connection.
var proxyHeaderTimeout = 5 * time.Second

// proxyListener speaks the PROXY protocol (v1 and v2) with the load
// balancers in from (issue 9, "Behind load balancers"):
//
//   - a connection from one of them must start with a valid header (policy
//     REQUIRE), or it is closed without a banner; the session then sees the
//     header's source address as the client's, for everything (limits,
//     greet pause, DNSBL, greylisting, SPF, logs, Received), since
//     RemoteAddr returns it;
//   - any other connection is passed through untouched (policy SKIP): a
//     PROXY line it sends reaches the SMTP session as an unknown command
//     (500), and the session keeps the socket's address. REJECT is not
//     usable here: it peeks at the first bytes, and an SMTP client says
//     nothing before the banner.
//
// Accept never waits for a header: the inner accept loop hands each
// balancer connection to a goroutine that reads the header (bounded by
// proxyHeaderTimeout), and Accept returns whichever connection is ready
// first. A balancer connection that never sends its header costs a
// goroutine until the timeout, not the other clients.
type proxyListener struct {
	net.Listener // the go-proxyproto listener: Addr, and Close of the socket
	log          *slog.Logger
	from         []netip.Prefix

	ready chan acceptResult
	done  chan struct{}
	once  sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

// newProxyListener wraps l; with no from networks it returns l itself (the
// PROXY protocol off, the default).
func newProxyListener(l net.Listener, from []netip.Prefix, log *slog.Logger) net.Listener {
	if len(from) == 0 {
		return l
	}
	pl := &proxyListener{log: log, from: from, ready: make(chan acceptResult), done: make(chan struct{})}
	pl.Listener = &proxyproto.Listener{
		Listener:          l,
		ConnPolicy:        pl.policy,
		ValidateHeader:    validateProxyHeader,
		ReadHeaderTimeout: proxyHeaderTimeout,
	}
	go pl.acceptLoop()
	return pl
}

// policy is go-proxyproto's per-connection policy: REQUIRE from the
// balancers, SKIP (no PROXY protocol at all) from anyone else.
func (l *proxyListener) policy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	if ta, ok := o.Upstream.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok && inPrefixes(l.from, a.Unmap()) {
			return proxyproto.REQUIRE, nil
		}
	}
	return proxyproto.SKIP, nil
}

// validateProxyHeader accepts a TCP source (v1 TCP4/TCP6, v2 STREAM over
// IPv4/IPv6) and LOCAL (the balancer's own health check, which keeps the
// balancer's address); anything else would leave the session without a
// client IP.
func validateProxyHeader(h *proxyproto.Header) error {
	if h.Command.IsLocal() {
		return nil
	}
	if !h.TransportProtocol.IsStream() || (!h.TransportProtocol.IsIPv4() && !h.TransportProtocol.IsIPv6()) {
		return fmt.Errorf("proxy header: unsupported transport %#x", byte(h.TransportProtocol))
	}
	if _, ok := h.SourceAddr.(*net.TCPAddr); !ok {
		return errors.New("proxy header: no TCP source address")
	}
	return nil
}

func (l *proxyListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !l.deliver(acceptResult{err: err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pc, ok := c.(*proxyproto.Conn)
		if !ok { // SKIP: not from a balancer
			if !l.deliver(acceptResult{c: c}) {
				c.Close()
				return
			}
			continue
		}
		go l.readHeader(pc)
	}
}

// readHeader reads a balancer connection's header, then hands the
// connection to Accept; without a valid one, the connection is closed
// before the banner.
func (l *proxyListener) readHeader(pc *proxyproto.Conn) {
	if pc.ProxyHeader() == nil {
		// Under REQUIRE a missing, late or invalid header leaves no header;
		// Read returns the error kept from reading it.
		_, err := pc.Read(nil)
		l.log.Info("connect", "outcome", "closed", "proxy", pc.Raw().RemoteAddr().String(),
			"reason", "no valid PROXY header from a proxy_protocol.from address", "err", err)
		pc.Close()
		return
	}
	if !l.deliver(acceptResult{c: pc}) {
		pc.Close()
	}
}

// deliver hands a result to Accept, or reports false once the listener is
// closed.
func (l *proxyListener) deliver(r acceptResult) bool {
	select {
	case l.ready <- r:
		return true
	case <-l.done:
		return false
	}
}

func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case r := <-l.ready:
		return r.c, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *proxyListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
