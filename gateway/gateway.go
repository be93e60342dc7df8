// Package gateway is sekisho's SMTP front: the listeners with their limits,
// the go-smtp backend and sessions, and the relay to the next hops.
//
// sekisho holds no queue. A message is streamed to the next hop while the
// client sends it, and the client gets 250 only after the next hop answered
// 250 to the same bytes (DESIGN.md §1). A crash at any instant loses nothing:
// either the client has its 250 and the next hop has the message, or the
// client has no 250 and retries.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/filters"
	"sekisho/policy"
)

// Limits bound what one client can take.
type Limits struct {
	MaxConnections      int   // in total, per listener set; 0 = none
	MaxConnectionsPerIP int   // 0 = none
	MaxMessageBytes     int64 // SIZE= at MAIL and the bytes of DATA
	MaxRecipients       int   // per transaction
	MaxLineLength       int   // command and data lines, CRLF included

	CommandTimeout time.Duration // idle time allowed between commands
	DataTimeout    time.Duration // the whole of DATA, from 354 to the dot
	ShutdownGrace  time.Duration // how long transactions may finish at shutdown
}

// Config is what the gateway needs, built by main from the configuration file.
type Config struct {
	Hostname        string
	LocalDomains    DomainSet
	TrustedNetworks []netip.Prefix
	Routes          Routes
	HopTimeouts     HopTimeouts
	Limits          Limits
	Chain           *filters.Chain
	Logger          *slog.Logger

	// TLS, when set, is offered with STARTTLS (RFC 3207) on the smtp
	// listener. Mail is accepted with or without it: an MX cannot require
	// TLS of the whole Internet.
	TLS *tls.Config

	// MailHosts resolves "mx" next hops; MXPort is the port they are
	// reached on (25; tests change it).
	MailHosts MailHostResolver
	MXPort    int

	// GreetPause holds the banner of the smtp listener (0: off). Trusted
	// networks and GreetPauseExempt skip it.
	GreetPause       time.Duration
	GreetPauseExempt []netip.Prefix
}

// Server runs the SMTP listeners.
type Server struct {
	cfg     Config
	chain   *filters.Chain
	log     *slog.Logger
	tracker *connTracker
	metrics *metrics

	ctx    context.Context // ends when the server is forced to stop
	cancel context.CancelFunc

	mu      sync.Mutex
	servers []*smtp.Server
}

// New checks the configuration and builds a server.
func New(cfg Config) (*Server, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("gateway: hostname is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Chain == nil {
		cfg.Chain = filters.NewChain()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, chain: cfg.Chain, log: cfg.Logger,
		tracker: newConnTracker(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP),
		metrics: newMetrics(),
		ctx:     ctx, cancel: cancel,
	}, nil
}

// ServeSMTP serves the smtp listener (port 25 role) on l until Shutdown.
func (s *Server) ServeSMTP(l net.Listener) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(c, "smtp"), nil
	}))
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.Limits.MaxMessageBytes
	srv.MaxRecipients = s.cfg.Limits.MaxRecipients
	if s.cfg.Limits.MaxLineLength > 0 {
		srv.MaxLineLength = s.cfg.Limits.MaxLineLength
	}
	srv.ReadTimeout = s.cfg.Limits.CommandTimeout
	srv.WriteTimeout = s.cfg.Limits.CommandTimeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = s.cfg.TLS
	srv.ErrorLog = slogPrinter{s.log}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(&limitListener{Listener: l, t: s.tracker, admitted: s.admitSMTP})
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, tells idle sessions 421, lets
// transactions in flight finish until ctx ends, then tells the rest 421.
// Nothing acknowledged is lost: a message cut off never got its 250.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	done := s.tracker.drain()
	for _, srv := range servers {
		srv.Shutdown(expired()) // closes the listeners; the sessions are ours to end
	}
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

func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// admitSMTP prepares a connection of the smtp listener: its session id and
// connect-stage state, the checks that start at connect (DNSBL lookups), and
// the greet pause. It runs in the accept loop and does not block.
func (s *Server) admitSMTP(tc *trackedConn) {
	id := newSessionID()
	tc.connState = &filters.Transaction{
		SessionID: id, Client: tc.ip, Trusted: s.isTrusted(tc.ip), Listener: "smtp",
		Conn: map[string]any{},
	}
	s.chain.StartConnect(s.ctx, tc.connState)
	if s.cfg.GreetPause > 0 && !tc.connState.Trusted && !inPrefixes(s.cfg.GreetPauseExempt, tc.ip) {
		tc.pause = s.cfg.GreetPause
		tc.onPause = func(pregreet bool) {
			if pregreet {
				s.log.Info("connect", "session", id, "client", tc.ip.String(), "check", "greet_pause",
					"outcome", "rejected", "reply", policy.Pregreet.String(), "reason", "client talked before the greeting")
				s.metrics.decision("connect", "rejected")
			}
		}
	}
}

func (s *Server) newSession(c *smtp.Conn, listener string) *session {
	var base filters.Transaction
	if tc, ok := c.Conn().(*trackedConn); ok && tc.connState != nil {
		base = *tc.connState
	} else {
		ip := remoteIP(c.Conn())
		base = filters.Transaction{SessionID: newSessionID(), Client: ip, Trusted: s.isTrusted(ip), Listener: listener, Conn: map[string]any{}}
	}
	sess := &session{
		srv: s, conn: c, id: base.SessionID, client: base.Client, listener: listener,
		trusted: base.Trusted, connState: base.Conn,
		log: s.log.With("session", base.SessionID, "client", base.Client.String(), "helo", c.Hostname()),
	}
	sess.Reset()
	return sess
}

func (s *Server) isTrusted(ip netip.Addr) bool { return inPrefixes(s.cfg.TrustedNetworks, ip) }

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

// slogPrinter routes go-smtp's own error log into slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.log.Warn("smtp: " + sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.log.Warn("smtp: " + sprint(v...)) }
