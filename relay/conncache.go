package relay

// The next-hop connection cache: a connection whose transaction ended with
// the next hop's 250 to the data is kept open, idle, for the next
// transaction towards the same next hop, instead of QUIT and a new dial,
// banner, EHLO (and STARTTLS) for every message. Postfix does the same
// (smtp_connection_cache_time_limit, smtp_connection_reuse_time_limit,
// smtp_connection_reuse_count_limit).
//
// What makes reuse safe:
//
//   - A connection is cached only after a clean end: the 250 to the final
//     dot (LMTP: to the one recipient), nothing broken; or a transaction
//     abandoned between commands (Abort: the client left, a recipient or
//     the message was refused) whose RSET the next hop answered 250. A
//     transaction that failed anywhere else, or whose reply is unknown (a
//     timeout, an error mid-data, Abort while a command was in flight),
//     ends with the connection closed, as before. The protocol state of a
//     cached connection is therefore known: between transactions (RFC 5321
//     §4.1.1.2, MAIL may start the next one; after RSET, go-smtp says EHLO
//     again first, which §4.1.4 allows).
//   - The key is everything the connection's state depends on: the kind
//     (SMTP, LMTP), network and address, the TLS mode it was opened
//     under, the name its certificate was checked against, the CAs, our
//     EHLO name. A connection is only ever reused for the same next hop
//     with the same TLS policy; its TLS session and the extensions the
//     next hop announced stay with it.
//   - A cached connection the next hop closed, or that fails at MAIL in
//     any way (write or read error, EOF, 421, any other reply, a slow
//     reply), is closed and a fresh connection is dialled in the same
//     call-ahead: the client never hears a failure caused by a stale
//     cached connection. The MAIL on a cached connection may take at most
//     half of what is left of the call-ahead budget, so that the fresh
//     dial keeps the other half. Nothing has been accepted on it at that
//     point (no RCPT), so nothing can be lost or doubled.
//   - Bounded: at most MaxIdle idle connections per next hop (the number
//     in use is bounded by the sessions, not here), each idle for at most
//     IdleTime, used for at most MaxTransactions transactions and MaxAge
//     since it was opened; then it gets QUIT. Close (a retired
//     configuration, shutdown) sends QUIT on every idle connection, and a
//     connection given back after Close gets QUIT at once.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ConnectionCache sets the reuse of next-hop connections. Its zero value
// keeps no connection (every transaction dials, and QUIT follows the data).
type ConnectionCache struct {
	// IdleTime is how long a connection is kept idle for the next
	// transaction; 0 disables the cache.
	IdleTime time.Duration
	// MaxTransactions is how many transactions one connection carries at
	// most; 0 means DefaultConnectionMaxTransactions.
	MaxTransactions int
	// MaxAge is how long after its dial a connection may still be reused;
	// 0 means DefaultConnectionMaxAge.
	MaxAge time.Duration
	// MaxIdle bounds the idle connections kept per next hop; 0 means
	// DefaultConnectionMaxIdle.
	MaxIdle int
}

// Defaults of ConnectionCache (IdleTime's default, 2 s as Postfix's
// smtp_connection_cache_time_limit, is the configuration's:
// next_hop.connection_cache_time).
const (
	DefaultConnectionMaxTransactions = 100
	DefaultConnectionMaxAge          = 300 * time.Second
	DefaultConnectionMaxIdle         = 16
)

// CacheCounters counts what the connection cache did, for the metrics.
type CacheCounters struct {
	Reused atomic.Uint64 // a cached connection carried a transaction
	Dead   atomic.Uint64 // a cached connection failed at MAIL; a fresh one was dialled
}

// hopKey is everything a next-hop connection's state depends on.
type hopKey struct {
	kind          NextHopKind
	network, addr string
	tls           TLSMode
	tlsName       string
	roots         *x509.CertPool
	ehlo          string
}

func (r *Router) hopKey(h NextHop) hopKey {
	return hopKey{kind: h.Kind, network: h.Network, addr: h.Addr, tls: h.TLS, tlsName: h.TLSName,
		roots: h.TLSRoots, ehlo: r.ehloName()}
}

// idleConn is a connection kept between transactions.
type idleConn struct {
	key    hopKey
	hop    NextHop // as it was dialled, for the logs
	conn   *hopConn
	client *smtp.Client
	tls    *tls.ConnectionState
	born   time.Time // dialled
	uses   int       // transactions carried
	timer  *time.Timer
}

// quit ends an idle connection politely.
func (c *idleConn) quit() {
	c.client.CommandTimeout = quitTimeout
	c.client.Quit()
	c.conn.Close()
}

// connCache holds the idle connections of one Router.
type connCache struct {
	cfg ConnectionCache

	mu     sync.Mutex
	idle   map[hopKey][]*idleConn // the most recently used last
	closed bool
}

func newConnCache(cfg ConnectionCache) *connCache {
	if cfg.MaxTransactions <= 0 {
		cfg.MaxTransactions = DefaultConnectionMaxTransactions
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultConnectionMaxAge
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = DefaultConnectionMaxIdle
	}
	return &connCache{cfg: cfg, idle: make(map[hopKey][]*idleConn)}
}

// connCache returns the Router's cache, nil when reuse is off.
func (r *Router) connCache() *connCache {
	if r.ConnectionCache.IdleTime <= 0 {
		return nil
	}
	r.cacheOnce.Do(func() { r.cache = newConnCache(r.ConnectionCache) })
	return r.cache
}

// take returns the most recently used idle connection for key, or nil.
// Connections past MaxAge met on the way get QUIT.
func (c *connCache) take(key hopKey) *idleConn {
	now := time.Now()
	var stale []*idleConn
	defer func() {
		for _, s := range stale {
			go s.quit()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		list := c.idle[key]
		if len(list) == 0 {
			return nil
		}
		e := list[len(list)-1]
		list[len(list)-1] = nil
		if len(list) == 1 {
			delete(c.idle, key)
		} else {
			c.idle[key] = list[:len(list)-1]
		}
		// A timer that already fired finds e gone and does nothing.
		e.timer.Stop()
		if now.Sub(e.born) >= c.cfg.MaxAge {
			stale = append(stale, e)
			continue
		}
		return e
	}
}

// put keeps a connection whose transaction ended cleanly, or gives it QUIT
// when it has done its share, the next hop already has MaxIdle idle ones,
// or the cache is closed. It reports whether the connection was kept.
func (c *connCache) put(e *idleConn) bool {
	c.mu.Lock()
	list := c.idle[e.key]
	if c.closed || len(list) >= c.cfg.MaxIdle || e.uses >= c.cfg.MaxTransactions || time.Since(e.born) >= c.cfg.MaxAge {
		c.mu.Unlock()
		e.quit()
		return false
	}
	e.timer = time.AfterFunc(c.cfg.IdleTime, func() { c.expire(e) })
	c.idle[e.key] = append(list, e)
	c.mu.Unlock()
	return true
}

// expire gives QUIT to a connection idle for IdleTime, if it is still in
// the cache.
func (c *connCache) expire(e *idleConn) {
	c.mu.Lock()
	list := c.idle[e.key]
	found := false
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			found = true
			break
		}
	}
	if found {
		if len(list) == 0 {
			delete(c.idle, e.key)
		} else {
			c.idle[e.key] = list
		}
	}
	c.mu.Unlock()
	if found {
		e.quit()
	}
}

// close gives QUIT to every idle connection, in parallel, and makes put
// close what it is given from now on.
func (c *connCache) close() {
	c.mu.Lock()
	c.closed = true
	var all []*idleConn
	for _, list := range c.idle {
		for _, e := range list {
			e.timer.Stop()
			all = append(all, e)
		}
	}
	c.idle = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.quit()
		}()
	}
	wg.Wait()
}

// idleCount is the number of idle connections for a next hop (tests).
func (c *connCache) idleCount(key hopKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle[key])
}

// Close ends the Router's use of its next hops: every idle connection gets
// QUIT, and connections of transactions still running get QUIT when they
// end instead of being kept. Call it when the Router is retired (a
// configuration reload replaced it and its last session ended) and at
// shutdown. The Router still works afterwards, without reuse.
func (r *Router) Close() {
	if r.ConnectionCache.IdleTime <= 0 {
		return
	}
	r.connCache().close()
}

// reuse begins a transaction on a cached connection to h: MAIL (with the
// envelope's parameters for the capabilities the connection has). It returns
// nil when there is none, or when the one taken failed: it is then closed,
// and the caller dials a fresh one. Only half of what is left of ctx's time
// goes to MAIL here. The error is a *capabilityError: the next hop cannot
// take this mail (the connection stays cached).
func (r *Router) reuse(ctx context.Context, h NextHop, env Envelope, t Timeouts) (*smtpTx, error) {
	c := r.connCache()
	if c == nil {
		return nil, nil
	}
	e := c.take(r.hopKey(h))
	if e == nil {
		return nil, nil
	}
	u := &smtpTx{hop: e.hop, conn: e.conn, client: e.client, tls: e.tls, t: t, lmtp: h.Kind == HopLMTP,
		cache: c, key: e.key, born: e.born, uses: e.uses, log: r.log()}
	u.client.CommandTimeout = t.Command
	u.client.SubmissionTimeout = t.Data
	mctx := ctx
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		mctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(d)/2))
		defer cancel()
	}
	stop := context.AfterFunc(mctx, func() { e.conn.Close() })
	err := u.beginMail(mctx, env)
	if !stop() && err == nil {
		err = stepErr(mctx, "MAIL", net.ErrClosed) // the reply came as the time ran out
	}
	var ce *capabilityError
	if errors.As(err, &ce) {
		// Nothing was sent: the connection is as it was, and this mail
		// cannot go to this next hop whichever connection carries it.
		c.put(e)
		return nil, err
	}
	if err == nil {
		r.countCache(func(cc *CacheCounters) *atomic.Uint64 { return &cc.Reused })
		r.log().Debug("next hop connection reused", "next_hop", h.String(), "transactions", e.uses, "age", time.Since(e.born).Round(time.Millisecond).String())
		return u, nil
	}
	u.conn.Close()
	r.countCache(func(cc *CacheCounters) *atomic.Uint64 { return &cc.Dead })
	r.log().Debug("cached next hop connection failed, dialling a fresh one", "next_hop", h.String(), "err", err.Error())
	return nil, nil
}

func (r *Router) countCache(f func(*CacheCounters) *atomic.Uint64) {
	if r.CacheCounters != nil {
		f(r.CacheCounters).Add(1)
	}
}
