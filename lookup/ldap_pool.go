package lookup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// ldapPool holds service connections bound as the BindDN.
//
// At most PoolSize connections are lent out at once (slots); returned
// healthy connections wait in idle. A connection is never lent out if
// go-ldap has seen it close (IsClosing), and one that failed a request is
// closed instead of returned. Getting a connection — waiting for a slot,
// dialling, binding — is bounded by the caller's context.
type ldapPool struct {
	urls                 []string
	bindDN, bindPassword string

	slots chan struct{}
	idle  chan *ldap.Conn
	done  chan struct{} // closed by close

	mu        sync.Mutex
	preferred int // index in urls of the server that last worked
	closed    bool
}

var errLDAPClosed = errors.New("directory closed")

func newLDAPPool(cfg LDAPConfig) *ldapPool {
	p := &ldapPool{
		urls:         cfg.URLs,
		bindDN:       cfg.BindDN,
		bindPassword: cfg.BindPassword,
		slots:        make(chan struct{}, cfg.PoolSize),
		idle:         make(chan *ldap.Conn, cfg.PoolSize),
		done:         make(chan struct{}),
	}
	for range cfg.PoolSize {
		p.slots <- struct{}{}
	}
	return p
}

// get lends a bound service connection: an idle one unless fresh is set,
// else a new one. reused says whether it was idle. Every successful get
// must be followed by put.
func (p *ldapPool) get(ctx context.Context, fresh bool) (conn *ldap.Conn, reused bool, err error) {
	select {
	case <-p.done:
		return nil, false, errLDAPClosed
	default:
	}
	select {
	case <-p.slots:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("all %d connections busy: %w", cap(p.slots), ctx.Err())
	case <-p.done:
		return nil, false, errLDAPClosed
	}
	for !fresh {
		c := p.takeIdle()
		if c == nil {
			break
		}
		if c.IsClosing() {
			go c.Close()
			continue
		}
		return c, true, nil
	}
	conn, err = p.dialBind(ctx, p.bindDN, p.bindPassword)
	if err != nil {
		p.slots <- struct{}{}
		return nil, false, err
	}
	return conn, false, nil
}

// takeIdle returns an idle connection, or nil if there is none.
func (p *ldapPool) takeIdle() *ldap.Conn {
	select {
	case c := <-p.idle:
		return c
	default:
		return nil
	}
}

// put returns a lent connection. healthy is false when a request on it
// failed other than with an LDAP result: it is then closed, not reused.
func (p *ldapPool) put(conn *ldap.Conn, healthy bool) {
	defer func() { p.slots <- struct{}{} }()
	if healthy && !conn.IsClosing() {
		p.mu.Lock()
		if !p.closed {
			select {
			case p.idle <- conn:
				p.mu.Unlock()
				return
			default:
			}
		}
		p.mu.Unlock()
	}
	// Close in the background: go-ldap's Close may wait for its reader.
	go conn.Close()
}

func (p *ldapPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	var conns []*ldap.Conn
	for c := p.takeIdle(); c != nil; c = p.takeIdle() {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// dialBind connects to the first server that answers, starting with the one
// that last worked, and binds as dn (no bind if dn is empty). Each server
// gets an equal share of the time left, so one that hangs cannot use up the
// time of the next. An invalid-credentials answer ends the search: it is the
// directory's answer, and asking the next server would only count one more
// failed attempt against the account.
func (p *ldapPool) dialBind(ctx context.Context, dn, password string) (*ldap.Conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultLDAPTimeout)
	}
	p.mu.Lock()
	start := p.preferred
	p.mu.Unlock()
	n := len(p.urls)
	var failures []string
	for i := range n {
		idx := (start + i) % n
		u := p.urls[idx]
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			failures = append(failures, u+": not tried, time is up")
			break
		}
		conn, err := ldapDialBindOne(ctx, u, time.Now().Add(left/time.Duration(n-i)), dn, password)
		if err == nil {
			p.mu.Lock()
			p.preferred = idx
			p.mu.Unlock()
			return conn, nil
		}
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		failures = append(failures, u+": "+err.Error())
	}
	return nil, errors.New(strings.Join(failures, "; "))
}

// ldapDialBindOne connects to one server and binds, all before deadline.
func ldapDialBindOne(ctx context.Context, u string, deadline time.Time, dn, password string) (*ldap.Conn, error) {
	conn, err := ldap.DialURL(u, ldap.DialWithDialer(&net.Dialer{Deadline: deadline}))
	if err != nil {
		return nil, err
	}
	if dn == "" {
		return conn, nil
	}
	left := time.Until(deadline)
	if left <= 0 {
		go conn.Close()
		return nil, errors.New("connected, but no time left to bind")
	}
	conn.SetTimeout(left)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = conn.Bind(dn, password)
	if !stop() {
		return nil, fmt.Errorf("bind: %w", ctx.Err())
	}
	if err != nil {
		go conn.Close()
		return nil, fmt.Errorf("bind as %s: %w", dn, err)
	}
	return conn, nil
}
