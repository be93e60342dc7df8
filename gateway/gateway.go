// Package gateway is sekisho's SMTP front: the listeners with their limits
// and greet pause, the SMTP sessions (conn.go speaks the protocol, session.go
// answers each verb), and the transaction engine (engine.go) that both the
// sessions and `sekisho explain` drive, and the control socket (control.go)
// on which the running gateway answers the sekisho CLI. The way out to the
// next hops is package relay.
//
// sekisho holds no queue. A message is streamed to the next hop while the
// client sends it — or, when a check needs the whole message (DKIM and
// DMARC of inbound mail) or it is signed, spooled first (spool.go: memory up
// to a bound, then an unlinked temporary file) and sent once decided — and
// the client gets 250 only after the next hop answered 250 to the same
// bytes (DESIGN.md §1). A crash at any instant loses nothing: either the
// client has its 250 and the next hop has the message, or the client has no
// 250 and retries.
package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sekisho/history"
	"sync"
	"sync/atomic"
	"time"

	"sekisho/auth"
	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
	"sekisho/relay"
	"sekisho/report"
)

// Limits bound what one client can take.
type Limits struct {
	MaxConnections      int   // in total, per listener set; 0 = none
	MaxConnectionsPerIP int   // 0 = none
	MaxMessageBytes     int64 // SIZE= at MAIL and the bytes of DATA
	MaxRecipients       int   // per transaction
	MaxLineLength       int   // command and data lines, CRLF included
	MaxErrors           int   // refused commands before 421; 0 = none

	// SpoolMemory is how much of a message read whole (DKIM/DMARC,
	// signing) is held in memory; the rest goes to a private temporary
	// file in SpoolDir ("": os.TempDir()). 0: DefaultSpoolMemory.
	SpoolMemory int
	SpoolDir    string

	CommandTimeout time.Duration // idle time allowed between commands
	DataTimeout    time.Duration // the whole of DATA, from 354 to the dot
	ShutdownGrace  time.Duration // how long transactions may finish at shutdown
}

// Config is what the gateway needs, built by main from the configuration file.
type Config struct {
	Hostname        string
	LocalDomains    mailaddr.DomainSet
	TrustedNetworks []netip.Prefix
	// ProxyFrom are the load balancers that must send a PROXY header
	// (v1 or v2) on every SMTP listener (proxy.go); empty: off.
	ProxyFrom []netip.Prefix
	// PostmasterDomain is where <postmaster> without a domain goes (RFC
	// 5321 §4.5.1): the first local domain.
	PostmasterDomain string
	// Router finds each recipient's route and makes the call-ahead.
	Router *relay.Router
	// NextHopKeepAlive is how often the next hop transactions get a NOOP
	// while a whole message is read from the client before any of it is
	// sent (relay.KeepAlive); 0: never.
	NextHopKeepAlive time.Duration
	Limits           Limits
	Chain            *filters.Chain
	Logger           *slog.Logger

	// TLS, when set, is offered with STARTTLS (RFC 3207) on the smtp
	// listener. Mail is accepted with or without it: an MX cannot require
	// TLS of the whole Internet.
	TLS *tls.Config

	// ObserveNextHop, when set, is told how long each call-ahead took and
	// how it ended ("ok", "deferred", "refused"): the nexthop kind of the
	// lookup duration histogram.
	ObserveNextHop func(kind, outcome string, took time.Duration)

	// Recorder counts every decision for the reports (report.Counter);
	// nil counts nothing.
	Recorder report.Recorder

	// History records every decision (package history); nil records
	// none (history.off).
	History *history.Recorder

	// DKIM signs outbound mail (trusted clients, authenticated users) whose
	// From domain has a key; nil signs nothing.
	DKIM Signer

	// MSA is the submission role (listeners submission and submissions);
	// nil when neither is configured.
	MSA *MSAConfig

	// GreetPause holds the banner of the smtp listener (0: off). Trusted
	// networks and GreetPauseExempt skip it.
	GreetPause       time.Duration
	GreetPauseExempt []netip.Prefix
	// GreetMemory remembers the pause's outcome per client for
	// GreetPassTTL and GreetFailTTL (greetmemory.go); nil pauses every
	// connection.
	GreetMemory                GreetMemory
	GreetPassTTL, GreetFailTTL time.Duration

	// Retire, when set, is called once this configuration has been
	// replaced (Reload) and the last session that started on it has ended:
	// the moment to close what it alone used (an LDAP directory's
	// connections). It runs in a goroutine of its own.
	Retire func()
}

// Signer makes DKIM signatures (relay.Signer).
type Signer interface {
	// KeyFor reports whether mail from a domain is signed.
	KeyFor(fromDomain string) bool
	// Sign returns the DKIM-Signature field, name and CRLF included, for
	// a whole message.
	Sign(msg io.Reader, fromDomain string) (string, error)
}

// MSAConfig is what the submission listeners need (RFC 6409): users log in
// with SMTP AUTH over TLS, and may then send as themselves only.
type MSAConfig struct {
	Auth *auth.Service
	// SenderCheck refuses an envelope sender that is not one of the user's
	// addresses (553 5.7.1); FromCheck does the same for the From field
	// (550 5.7.1 at the end of the data, RFC 6409 §8.1).
	SenderCheck, FromCheck bool
	// ReceivedFull names the user and the client's address in Received;
	// without it the field has neither (the default: privacy).
	ReceivedFull bool
}

// Server runs the SMTP listeners. Its configuration is a generation
// (reload.go) that Reload replaces while it runs: each connection takes the
// generation in force when it is accepted and keeps it to its end.
type Server struct {
	gen      atomic.Pointer[generation] // what new connections take
	reloadMu sync.Mutex                 // one Reload at a time
	log      *slog.Logger
	tracker  *connTracker
	metrics  *metrics

	ctx    context.Context // ends when the server is forced to stop
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	serving   map[string]bool // the listener roles served (Reload checks them)
	stopping  bool
}

// New checks the configuration and builds a server.
func New(cfg Config) (*Server, error) {
	g, err := newGeneration(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:     g.cfg.Logger,
		tracker: newConnTracker(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP),
		metrics: newMetrics(),
		serving: map[string]bool{},
		ctx:     ctx, cancel: cancel,
	}
	s.gen.Store(g)
	return s, nil
}

// ServeSMTP serves the smtp listener (port 25 role) on l until Shutdown.
func (s *Server) ServeSMTP(l net.Listener) error { return s.serve(l, listenerSMTP) }

// ServeLMTP serves the LMTP listener (RFC 2033) for the campus mail
// servers' outbound mail: trusted_networks only, one reply per recipient.
func (s *Server) ServeLMTP(l net.Listener) error { return s.serve(l, listenerLMTP) }

// ServeSubmission serves the submission listener (port 587, RFC 6409):
// STARTTLS, then AUTH, before any mail.
func (s *Server) ServeSubmission(l net.Listener) error { return s.serve(l, listenerSubmission) }

// ServeSubmissions serves the submissions listener (port 465, RFC 8314):
// TLS from the first byte, then AUTH.
func (s *Server) ServeSubmissions(l net.Listener) error { return s.serve(l, listenerSubmissions) }

// The listeners, by role (DESIGN.md §2).
const (
	listenerSMTP        = "smtp"
	listenerLMTP        = "lmtp"
	listenerSubmission  = "submission"
	listenerSubmissions = "submissions"
)

func (s *Server) serve(l net.Listener, listener string) error {
	// The check and the registration are one step under reloadMu, so that
	// a Reload cannot take tls or auth away in between.
	s.reloadMu.Lock()
	cfg := &s.gen.Load().cfg
	if (listener == listenerSubmission || listener == listenerSubmissions) && (cfg.MSA == nil || cfg.TLS == nil) {
		s.reloadMu.Unlock()
		l.Close()
		return errors.New("gateway: the " + listener + " listener needs tls and auth")
	}
	// PROXY protocol from the balancers (proxy.go); proxy_protocol.from is
	// read once per listener: changing it needs a restart.
	l = newProxyListener(l, cfg.ProxyFrom, s.log)
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.reloadMu.Unlock()
		l.Close()
		return nil
	}
	s.listeners = append(s.listeners, l)
	s.serving[listener] = true
	s.mu.Unlock()
	s.reloadMu.Unlock()
	admit := s.admitSMTP
	if listener != listenerSMTP {
		// No greet pause, no DNSBL: submission users log in, and the
		// LMTP clients are the campus servers.
		admit = func(tc *trackedConn) { s.admitPlain(tc, listener) }
	}
	ll := &limitListener{Listener: l, t: s.tracker, admitted: admit, log: s.log.With("listener", listener)}
	var backoff time.Duration
	for {
		c, err := ll.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// EMFILE and the like: wait and try again, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go s.serveConn(c.(*trackedConn), listener)
	}
}

// isTemporaryAccept reports accept errors that pass (out of file
// descriptors, a connection reset before it was accepted).
func isTemporaryAccept(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se)
}

// serveConn runs one session, on the generation its connection took when
// it was accepted (admitSMTP, admitPlain).
func (s *Server) serveConn(tc *trackedConn, listener string) {
	gen := tc.gen
	defer gen.release()
	base := filters.Transaction{SessionID: newSessionID(), Client: tc.ip, Trusted: gen.isTrusted(tc.ip), Listener: listener, Conn: map[string]any{}}
	if tc.connState != nil {
		base = *tc.connState
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		srv: s, gen: gen, tc: tc, listener: listener, id: base.SessionID, client: base.Client, trusted: base.Trusted,
		nc: tc, in: &stashReader{r: tc}, bw: bufio.NewWriterSize(tc, 4<<10),
		ctx: ctx, cancel: cancel,
	}
	// 4 KiB like the writer: every reader of c.br takes lines longer than
	// the buffer in pieces, and the buffer is allocated before the greet
	// pause, so it is what each held client costs (docs/performance.md).
	c.br = bufio.NewReaderSize(c.in, 4<<10)
	c.msa = listener == listenerSubmission || listener == listenerSubmissions
	c.lmtp = listener == listenerLMTP
	c.log = c.baseLog()
	c.tx = newEngine(s, gen, sessionObserver{c}, base)
	c.tx.lmtp = c.lmtp
	c.tx.gone = func() bool { return c.ctx.Err() != nil }
	tc.setSay(c.say421)
	defer func() {
		if p := recover(); p != nil {
			// A bug may cost a session, never a bounce: the client hears
			// 421 and retries.
			c.log.Error("panic", "panic", p, "stack", string(debug.Stack()))
			c.say421(policy.InternalError)
		}
		c.close()
		c.abandonBDAT()
		c.tx.reset()
	}()
	if listener == listenerSubmissions && !c.startTLS() {
		c.close()
		return
	}
	if c.lmtp && !base.Trusted {
		c.log.Info("connect", "outcome", "rejected", "reply", policy.LMTPNotTrusted.String(), "reason", "client not in trusted_networks")
		c.noteLogged(policy.LMTPNotTrusted)
		c.reply(policy.LMTPNotTrusted)
		c.close()
		return
	}
	c.serve()
}

// Shutdown stops accepting connections, tells idle sessions 421, lets
// transactions in flight finish until ctx ends, then tells the rest 421.
// Nothing acknowledged is lost: a message cut off never got its 250.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	listeners := s.listeners
	s.mu.Unlock()
	for _, l := range listeners {
		l.Close()
	}
	done := s.tracker.drain()
	// The router's idle next-hop connections get QUIT once the sessions
	// are over (relay.Router.Close).
	defer s.gen.Load().router.Close()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.tracker.closeAll()
		s.cancel()
		return ctx.Err()
	}
}

// Metrics writes the decision counters in Prometheus' text format.
func (s *Server) Metrics(w io.Writer) { s.metrics.WriteTo(w) }

// admitSMTP prepares a connection of the smtp listener: its session id and
// connect-stage state, the checks that start at connect (DNSBL lookups), and
// the greet pause. It runs in the accept loop and does not block.
func (s *Server) admitSMTP(tc *trackedConn) {
	g := s.acquire()
	tc.gen = g
	id := newSessionID()
	tc.connState = &filters.Transaction{
		SessionID: id, Client: tc.ip, Trusted: g.isTrusted(tc.ip), Listener: "smtp",
		Conn: map[string]any{},
	}
	g.chain.StartConnect(s.ctx, tc.connState)
	if g.cfg.GreetPause > 0 && !tc.connState.Trusted && !inPrefixes(g.cfg.GreetPauseExempt, tc.ip) {
		tc.pause = g.cfg.GreetPause
		tc.recalled = s.recall(g, tc.ip)
		tc.onPause = func(outcome string, remembered bool, err error) {
			if outcome == greetLeft {
				// Nothing to remember: the next connection waits again.
				s.log.Debug("connect", "session", id, "client", tc.ip.String(), "check", "greet_pause",
					"outcome", "left", "err", err)
				return
			}
			pregreet := outcome == greetPregreet
			if !remembered {
				s.remember(g, tc.ip, outcome)
			}
			if pregreet {
				if g.cfg.Recorder != nil {
					g.cfg.Recorder.Record(report.Event{Time: time.Now(), Cause: report.Pregreet, Listener: "smtp", Client: tc.ip})
				}
				reason := "client talked before the greeting"
				if remembered {
					reason = "client talked before the greeting earlier (remembered)"
				}
				s.log.Info("connect", "session", id, "client", tc.ip.String(), "check", "greet_pause",
					"outcome", "rejected", "reply", policy.Pregreet.String(), "reason", reason)
				s.metrics.decision("connect", "rejected")
				g.cfg.History.Record(history.Record{Time: time.Now(), Gateway: g.cfg.Hostname, Listener: "smtp",
					Session: id, Client: tc.ip.String(), Stage: "connect", Check: "greet_pause",
					Code: policy.Pregreet.Code, Reply: policy.Pregreet.String(), Reason: reason})
			}
		}
	}
}

// admitPlain prepares a connection of the submission and LMTP listeners: no
// greet pause and no connect-stage checks (DNSBL): submission users log in
// (a user on a blocklisted home network must still be able to send), and the
// LMTP clients are the campus's own servers. A submission client is never
// trusted by its address: it logs in.
func (s *Server) admitPlain(tc *trackedConn, listener string) {
	g := s.acquire()
	tc.gen = g
	tc.connState = &filters.Transaction{
		SessionID: newSessionID(), Client: tc.ip, Trusted: listener == listenerLMTP && g.isTrusted(tc.ip),
		Listener: listener, Conn: map[string]any{},
	}
}

func inPrefixes(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func newSessionID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
