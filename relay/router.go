package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/policy"
)

// Timeouts bound every exchange with a next hop. A zero or negative field
// takes its default; a zero Timeouts is therefore usable (go-smtp would
// otherwise treat a zero command timeout as "already expired").
type Timeouts struct {
	// Connect bounds the TCP (or unix socket) connect and the greeting
	// banner of one next hop, together.
	Connect time.Duration
	// Command bounds the reply to each command: EHLO, MAIL, RCPT, DATA.
	Command time.Duration
	// Data bounds each write of the message to the next hop and the reply
	// to the final dot.
	Data time.Duration
	// CallAhead is one overall budget for Router.Begin: the MX lookup and
	// every next hop of the route tried in turn. Next hops not reached
	// within it are not tried.
	CallAhead time.Duration
}

// Defaults of Timeouts. Command and Data are the minimums RFC 5321
// §4.5.3.2 asks of a client; CallAhead keeps our own client (who is waiting
// for its RCPT reply) well inside its 5-minute RCPT timeout.
const (
	DefaultConnectTimeout   = 30 * time.Second
	DefaultCommandTimeout   = 5 * time.Minute
	DefaultDataTimeout      = 10 * time.Minute
	DefaultCallAheadTimeout = 30 * time.Second
)

// quitTimeout bounds the polite QUIT of Close: the mail is delivered by then,
// and the session should not wait long for a goodbye.
const quitTimeout = 5 * time.Second

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, DefaultConnectTimeout)
	def(&t.Command, DefaultCommandTimeout)
	def(&t.Data, DefaultDataTimeout)
	def(&t.CallAhead, DefaultCallAheadTimeout)
	return t
}

// MailHostResolver finds where a domain's mail goes, for "mx" next hops.
// *lookup.Resolver implements it.
type MailHostResolver interface {
	MailHosts(ctx context.Context, domain string) ([]lookup.MailHost, lookup.DomainResult)
}

// Router is the relay as the gateway sees it: the routing table and how to
// reach the next hops. Its only state of its own is the idle next-hop
// connections of ConnectionCache (besides the counters it is given); it is
// safe for concurrent use.
type Router struct {
	Routes    Routes
	MailHosts MailHostResolver // for "mx" next hops; nil: mx routes get a 4xx
	MXPort    int              // port of "mx" next hops; 0 means 25
	Timeouts  Timeouts
	Hostname  string // our name in EHLO/LHLO; empty: the system's host name
	// Logger receives what happened to TLS at each next hop and MTA-STS
	// decisions; nil: slog.Default().
	Logger *slog.Logger
	// Counters, if set, counts the TLS outcomes (for the metrics).
	Counters *TLSCounters
	// MTASTS, if set, applies the recipient domains' MTA-STS policies
	// (RFC 8461) to "mx" next hops; nil: MTA-STS is not used.
	MTASTS *MTASTS
	// ConnectionCache keeps SMTP and LMTP connections open between
	// transactions (conncache.go); the zero value keeps none. Call Close
	// when the Router is no longer used.
	ConnectionCache ConnectionCache
	// CacheCounters, if set, counts what the connection cache did.
	CacheCounters *CacheCounters

	cacheOnce sync.Once
	cache     *connCache // the idle connections; see connCache()
}

// Envelope is what the client declared in MAIL FROM.
type Envelope struct {
	From mailaddr.Address
	// UTF8: the client gave SMTPUTF8 (RFC 6531). It is passed on when the
	// next hop offers it, and dropped when the addresses are ASCII and the
	// next hop does not.
	UTF8 bool
	// Body is the client's BODY= parameter: "", "7BIT" or "8BITMIME"
	// (RFC 6152). BODY=8BITMIME goes to every next hop that offers
	// 8BITMIME; to one that does not, MAIL goes without BODY= and 8-bit
	// message data is refused (policy.EightBitNotSupported).
	Body string
	// Size is the client's SIZE= estimate (RFC 1870), 0 if none.
	Size int64
	// Ret and EnvID are the client's RFC 3461 RET= ("FULL", "HDRS") and
	// ENVID= (decoded); passed on to a next hop that offers DSN, dropped
	// otherwise (the next hop then gives the usual notifications).
	Ret, EnvID string
}

// RcptDSN are a recipient's RFC 3461 parameters: NOTIFY (NEVER, or some of
// SUCCESS, FAILURE, DELAY) and ORCPT (its address type and the decoded
// address). Passed on to a next hop that offers DSN.
type RcptDSN struct {
	Notify    []string
	ORcptType string
	ORcpt     string
}

// Transaction is one open mail transaction with a next hop, begun by
// Router.Begin. Its methods are called by one goroutine, in order, except
// Abort, which may be called at any time from any goroutine. Errors a client
// should hear are *policy.Reply (or wrap one).
type Transaction interface {
	// Rcpt passes one recipient on. A 4xx or 5xx of the next hop comes back
	// as the same class; a broken connection as policy.NextHopLost, and every
	// later call then fails the same way.
	Rcpt(ctx context.Context, to mailaddr.Address, dsn RcptDSN) error
	// Data sends the message and returns nil only once the next hop said
	// 250 to it (for LMTP: to the one recipient). On any failure before
	// the final dot, the dot is never sent: the next hop discards.
	Data(ctx context.Context, msg io.Reader) error
	// Abort drops the transaction without the final dot, so that the next
	// hop discards whatever it has. It does not wait: between commands the
	// next hop is told so politely in the background (RSET, or QUIT),
	// otherwise the connection is closed.
	Abort()
	// Close ends the transaction politely (QUIT). Call it after the client
	// has its reply: Data does not wait for it.
	Close()
	// Hop names the next hop, for the logs.
	Hop() string
	// LMTP reports an LMTP next hop: one recipient per transaction, whose
	// own reply is the answer to the data (RFC 2033 §4.2).
	LMTP() bool
	// TLS is the state of the TLS session with the next hop (after
	// STARTTLS, RFC 3207), for the logs; nil in clear and for a Maildir.
	TLS() *tls.ConnectionState
}

// KeepAlive keeps a transaction whose next hop waits for DATA alive with a
// NOOP (RFC 5321 §4.1.1.9), for a gateway that reads the whole message
// before sending it. A transaction without a connection (a Maildir) needs
// none. An error is a lost connection: the transaction's Data then fails.
func KeepAlive(ctx context.Context, tx Transaction) error {
	if n, ok := tx.(interface{ Noop(context.Context) error }); ok {
		return n.Noop(ctx)
	}
	return nil
}

// DataReplier is a Transaction that keeps its next hop's reply text to the
// data (which names the next hop's queue id: Postfix's "queued as 4Fxyz",
// Exim's "id=…"), for the decision history; "" before a 250 to the data.
type DataReplier interface {
	DataReply() string
}

// Lookup returns the index of the route for a recipient domain, or -1.
func (r *Router) Lookup(domain string) int { return r.Routes.Lookup(domain) }

// Key is the identity of a route for one recipient domain: recipients with
// the same key can share one transaction. A route with an "mx" next hop
// goes to each domain's own hosts, so its key includes the domain (in the
// folded form of mailaddr.Fold).
func (r *Router) Key(route int, domain string) string {
	k := strconv.Itoa(route)
	if route >= 0 && route < len(r.Routes) && r.Routes[route].hasMX() {
		k += "/" + mailaddr.Fold(domain)
	}
	return k
}

// maxMXAddrs bounds how many addresses of a domain's mail hosts one
// call-ahead tries, so that a domain with many dead hosts cannot hold the
// client for long: the sending MTA retries later anyway.
const maxMXAddrs = 5

// Hops returns the next hops of a route for a recipient domain, with an "mx"
// next hop replaced by the domain's mail hosts in order of preference (at
// most maxMXAddrs addresses, each once). A domain with a null MX (RFC 7505)
// gets policy.NullMXRecipient (556 5.1.10); one whose mail hosts cannot be
// found, policy.NoMailHosts (4xx): whether a domain exists is for the domain
// check to judge with the DNS canary, not for the relay.
//
// Each next hop carries its TLS policy (the route's, see TLSMode). For an
// "mx" next hop with Router.MTASTS set and a TLS mode other than none, the
// domain's MTA-STS policy applies (RFC 8461 §5): in mode enforce, mail hosts
// that match none of the policy's mx patterns are left out and the others
// are TLSVerify for their MX host name; none left is
// policy.NextHopTLSRequired (451 4.7.5). In mode testing, what enforce would
// refuse is only logged.
func (r *Router) Hops(ctx context.Context, route int, domain string) ([]NextHop, error) {
	if route < 0 || route >= len(r.Routes) {
		return nil, fmt.Errorf("%w (route %d of %d)", policy.NoRoute, route, len(r.Routes))
	}
	rt := r.Routes[route]
	var out []NextHop
	for _, h := range rt.NextHops {
		if h.Kind != HopMX {
			h.TLS, h.TLSRoots = rt.TLS.resolve(h.Kind), rt.TLSRoots
			if h.Network == "tcp" {
				h.TLSName, _, _ = net.SplitHostPort(h.Addr)
			}
			out = append(out, h)
			continue
		}
		if r.MailHosts == nil {
			return nil, policy.NoRoute.Withf("mx next hops need a DNS resolver")
		}
		name := mailaddr.Fold(domain)
		hosts, res := r.MailHosts.MailHosts(ctx, name)
		switch res.Outcome {
		case lookup.DomainNullMX:
			return nil, policy.NullMXRecipient
		case lookup.DomainFound:
		default:
			return nil, fmt.Errorf("%w: %s: %s", policy.NoMailHosts.Withf("cannot find the mail hosts of %s now, please try again later", name), res.Outcome, res.Reason)
		}
		mode := rt.TLS.resolve(HopMX)
		var sts *STSPolicy
		if r.MTASTS != nil && mode != TLSNone {
			sts = r.MTASTS.Policy(ctx, name)
		}
		port := r.MXPort
		if port <= 0 {
			port = 25
		}
		seen := make(map[netip.Addr]bool)
		var skipped []string
	hosts:
		for _, host := range hosts {
			hmode, testing := mode, false
			if sts != nil && sts.Mode != STSModeNone {
				match := sts.Matches(host.Name)
				switch {
				case sts.Mode == STSModeEnforce && !match:
					skipped = append(skipped, host.Name)
					r.log().Warn("MTA-STS: mail host not in the policy, skipped (mode enforce)", "domain", name, "mx", host.Name, "policy_id", sts.ID)
					continue hosts
				case sts.Mode == STSModeEnforce:
					hmode = TLSVerify
				case !match:
					r.log().Warn("MTA-STS testing: mail host not in the policy; used anyway (mode testing)", "domain", name, "mx", host.Name, "policy_id", sts.ID)
					testing = true
				default:
					testing = true
				}
			}
			for _, ip := range host.Addrs {
				ip = ip.Unmap()
				if len(seen) == maxMXAddrs {
					break hosts
				}
				if !ip.IsValid() || ip.IsUnspecified() || seen[ip] {
					continue
				}
				seen[ip] = true
				out = append(out, NextHop{Kind: HopSMTP, Network: "tcp",
					Addr:   net.JoinHostPort(ip.String(), strconv.Itoa(port)),
					MXHost: host.Name,
					TLS:    hmode, TLSName: host.Name, TLSRoots: rt.TLSRoots, stsTesting: testing,
					raw: "mx " + host.Name + " [" + ip.String() + "]"})
			}
		}
		if len(seen) == 0 && len(skipped) > 0 {
			return nil, fmt.Errorf("%w: MTA-STS policy %s of %s (mode enforce, mx %v) matches none of its mail hosts %v",
				policy.NextHopTLSRequired.Withf("no mail host of %s matches its MTA-STS policy, try again later", name), sts.ID, name, sts.MX, skipped)
		}
		if len(seen) == 0 {
			return nil, policy.NoMailHosts.Withf("the mail hosts of %s have no usable address, please try again later", name)
		}
	}
	return out, nil
}

// errBudget is the cause of a call-ahead that ran out of Timeouts.CallAhead.
var errBudget = errors.New("call-ahead time budget spent")

// capabilityError is a next hop that works but cannot take this mail as it
// is (no SMTPUTF8 for a non-ASCII sender, a SIZE limit below the declared
// size). If every next hop of the route says so, the reply is certain: 5xx.
type capabilityError struct {
	reply *policy.Reply
	why   string
}

func (e *capabilityError) Error() string { return e.why }

// Begin is the call-ahead: it finds the next hops of the route for the
// domain (Hops) and opens a transaction with the first that works —
// connect, greeting, EHLO (LHLO for LMTP), MAIL. A next hop that fails at
// any of these steps, whatever its reply, is skipped. All of it runs within
// Timeouts.CallAhead and stops at once when ctx ends. A route in ModeAll
// opens every next hop at once instead, and none may fail (beginAll).
//
// When no next hop works the error wraps policy.NextHopUnreachable (451
// 4.4.1) and its text names every next hop and why it failed, for the log.
// When every next hop was reached but none can carry the mail (see
// capabilityError), the error wraps that certain 5xx instead.
func (r *Router) Begin(ctx context.Context, route int, domain string, env Envelope) (Transaction, error) {
	t := r.Timeouts.withDefaults()
	cctx, cancel := context.WithTimeoutCause(ctx, t.CallAhead, fmt.Errorf("%w (%v)", errBudget, t.CallAhead))
	defer cancel()

	hops, err := r.Hops(cctx, route, domain)
	if err != nil {
		return nil, err
	}
	if len(hops) == 0 {
		return nil, fmt.Errorf("%w: route %d has no next hops", policy.NoRoute, route)
	}
	var (
		tried       []string
		capability  *policy.Reply
		unreachable bool
		tlsRequired bool // a next hop failed the TLS its route requires
		last        error
	)
	if r.Routes[route].Mode == ModeAll {
		return r.beginAll(ctx, cctx, hops, env, t)
	}
	for i, h := range hops {
		if cctx.Err() != nil {
			cause := context.Cause(cctx)
			for _, rest := range hops[i:] {
				tried = append(tried, rest.String()+": not tried: "+cause.Error())
			}
			unreachable, last = true, cause
			break
		}
		tx, notes, err := r.openHop(cctx, h, env, t)
		tried = append(tried, notes...)
		if err == nil {
			return tx, nil
		}
		var te *tlsError
		if errors.As(err, &te) {
			tlsRequired = true
		}
		var ce *capabilityError
		if errors.As(err, &ce) {
			if capability == nil {
				capability = ce.reply
			}
			continue
		}
		unreachable, last = true, err
	}
	list := strings.Join(tried, "; ")
	if !unreachable && capability != nil {
		// Every next hop answered, and none can take this mail: certain.
		return nil, fmt.Errorf("%w; tried %s", capability, list)
	}
	if tlsRequired {
		// At least one next hop was reached and could not give the TLS
		// the route requires: say so (4.7.5), the log has the details.
		return nil, fmt.Errorf("%w; tried %s", policy.NextHopTLSRequired, list)
	}
	// The client's reply says what kind of failure it was; the log (this
	// error's text) names every next hop tried and why it failed.
	reply := policy.NextHopUnreachable.Withf("no next hop answered (%s), try another MX or later", shortErr(last))
	return nil, fmt.Errorf("%w; tried %s", reply, list)
}

// openHop opens a transaction with one next hop; under tls: may a failed
// TLS handshake is retried once in clear. notes say, for the log, what each
// try gave ("smtp://…: EHLO: 554 …").
func (r *Router) openHop(ctx context.Context, h NextHop, env Envelope, t Timeouts) (Transaction, []string, error) {
	var notes []string
	tx, err := r.open(ctx, h, env, t)
	var he *handshakeError
	if errors.As(err, &he) && ctx.Err() == nil {
		// tls: may, and the handshake failed: once more in clear, as
		// Postfix does, so that a broken TLS stack does not stop mail.
		r.count(func(c *TLSCounters) *atomic.Uint64 { return &c.ClearAfterHandshakeFailure })
		r.log().Warn("next hop TLS", "next_hop", h.String(), "tls", "clear", "why", "TLS handshake failed, retrying in clear", "mode", h.TLS.String(), "err", he.err.Error())
		notes = append(notes, h.String()+": "+err.Error()+" (retried in clear)")
		clear := h
		clear.TLS = TLSNone
		tx, err = r.open(ctx, clear, env, t)
	}
	if err == nil {
		return tx, notes, nil
	}
	notes = append(notes, h.String()+": "+err.Error())
	var te *tlsError
	if errors.As(err, &te) {
		r.count(func(c *TLSCounters) *atomic.Uint64 { return &c.Refused })
		r.log().Warn("next hop TLS", "next_hop", h.String(), "tls", "refused", "mode", h.TLS.String(), "err", te.why)
	}
	return nil, notes, err
}

// open opens a transaction with one next hop.
func (r *Router) open(ctx context.Context, h NextHop, env Envelope, t Timeouts) (Transaction, error) {
	// (Each case checks err itself: a nil *smtpTx in a Transaction would
	// not be a nil Transaction.)
	switch h.Kind {
	case HopSMTP, HopLMTP:
		// A cached connection first; a dead one is dropped quietly and a
		// fresh one dialled within the same ctx (conncache.go).
		if tx, err := r.reuse(ctx, h, env, t); tx != nil || err != nil {
			if err != nil {
				return nil, err
			}
			return tx, nil
		}
		tx, err := r.dialSMTP(ctx, h, env, t)
		if err != nil {
			return nil, err
		}
		return tx, nil
	case HopMaildir:
		tx, err := openMaildir(h.Path)
		if err != nil {
			return nil, err
		}
		return tx, nil
	}
	return nil, fmt.Errorf("next hop kind %s cannot be opened", h.Kind)
}

// ehloName is our name in EHLO/LHLO (RFC 5321 §4.1.1.1).
func (r *Router) ehloName() string {
	if r.Hostname != "" {
		return r.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// shortErr says what kind of failure err was, for the client's reply text:
// the details (a next hop's own reply text, addresses) stay in the log.
func shortErr(err error) string {
	var se *smtp.SMTPError
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, errBudget):
		return "time budget spent"
	case errors.Is(err, context.Canceled):
		return "call-ahead abandoned"
	case errors.As(err, &se):
		return "last replied " + strconv.Itoa(se.Code)
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connection failed"
	}
	return "failed"
}
