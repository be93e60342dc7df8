package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/filters"
	"sekisho/policy"
)

// session is one SMTP session. Each verb is a method that returns nil (the
// positive reply go-smtp sends) or an error that policy turns into the reply.
// Every method logs one line per decision.
type session struct {
	srv      *Server
	conn     *smtp.Conn
	id       string
	client   netip.Addr
	trusted  bool
	listener string
	log      *slog.Logger
	// connState is what the connect stage prepared (tx.Conn).
	connState map[string]any

	// The transaction; reset by Reset (RSET, a new EHLO, after DATA).
	tx       *filters.Transaction
	mailOpts *smtp.MailOptions
	route    int    // index into Routes of the transaction's route, -1 before the first RCPT
	routeKey string // route and, for mx routes, the domain
	up       upstream
	upErr    error // the next hop connection broke: every later command gets this
	headers  []filters.Header
}

// Mail handles MAIL FROM (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) (err error) {
	defer s.recoverTo(&err, "mail")
	s.Reset()
	if _, ok := ParseAddress(from); !ok {
		return s.decide("mail", policy.BadSenderSyntax, "sender address unparsable", "from", from)
	}
	s.tx.From = from
	s.mailOpts = opts
	if opts != nil {
		s.tx.SMTPUTF8 = opts.UTF8
	}
	v, results := s.srv.chain.Run(s.ctx(), filters.StageMail, s.tx)
	if r := verdictReply(v); r != nil {
		return s.decideBy("mail", lastCheck(results), r, v.Reason, "from", from)
	}
	s.headers = append(s.headers, v.Headers...)
	s.srv.tracker.setBusy(s.conn.Conn(), true)
	s.srv.metrics.decision("mail", "accepted")
	s.log.Info("mail", "from", from, "outcome", "accepted")
	return nil
}

// Rcpt handles RCPT TO (RFC 5321 §4.1.1.3): relay control, the checks of
// stage rcpt, then the call-ahead to the route's next hop.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) (err error) {
	defer s.recoverTo(&err, "rcpt")
	addr, ok := ParseAddress(to)
	if !ok || to == "" {
		return s.decide("rcpt", policy.BadRecipientSyntax, "recipient address unparsable", "to", to)
	}
	local := s.srv.cfg.LocalDomains.Contains(addr.Domain)
	if r, reason := s.srv.relayControl(addr, local, s.trusted || s.tx.Authenticated != ""); r != nil {
		return s.decideBy("rcpt", "relay", r, reason, "to", to)
	}
	route := s.srv.cfg.Routes.Lookup(addr.Domain)
	if route < 0 {
		s.log.Error("no route matches a recipient domain: fix the routes of the configuration", "domain", addr.Domain)
		return s.decide("rcpt", policy.NoRoute, "no route", "to", to)
	}
	key := s.srv.routeKeyFor(route, addr.Domain)
	if s.route >= 0 && key != s.routeKey {
		return s.decide("rcpt", policy.OtherRoute, "recipient's route differs from the transaction's", "to", to)
	}
	if s.up != nil && s.isLMTPHop() && len(s.tx.Rcpts) > 0 {
		// One LMTP DATA gives one reply per recipient; an SMTP client takes
		// one. One recipient per transaction keeps the answer whole.
		return s.decide("rcpt", policy.OtherRoute, "one recipient per transaction towards an LMTP next hop", "to", to)
	}
	if s.upErr != nil {
		return s.decide("rcpt", policy.FromError(s.upErr), "next hop connection lost earlier in this transaction", "to", to)
	}

	s.tx.Rcpt, s.tx.Local = to, local
	v, results := s.srv.chain.Run(s.ctx(), filters.StageRcpt, s.tx)
	if r := verdictReply(v); r != nil {
		if r.Permanent() && lastCheck(results) == "account" && s.up == nil {
			// The directory says the user does not exist. If the next hop
			// cannot be reached either, one side could not tell, and a 4xx
			// beats the 5xx (the stricter answer wins, could-not-tell
			// first). The recipient itself is never passed on: a next hop
			// that accepted it would hold a recipient we refused.
			up, err := s.begin(route, addr.Domain)
			if err != nil {
				if hr := policy.FromError(err); hr.Temporary() {
					return s.decideBy("rcpt", "account", hr, v.Reason+"; and call-ahead: "+err.Error(), "to", to)
				}
			} else {
				s.up, s.route, s.routeKey = up, route, key
			}
		}
		return s.decideBy("rcpt", lastCheck(results), r, v.Reason, "to", to)
	}

	if s.up == nil {
		up, err := s.begin(route, addr.Domain)
		if err != nil {
			return s.decide("rcpt", policy.FromError(err), "call-ahead: "+err.Error(), "to", to)
		}
		s.up, s.route, s.routeKey = up, route, key
	}
	if err := s.up.Rcpt(s.ctx(), to); err != nil {
		if _, isReply := asReply(err); !isReply || errors.Is(err, policy.NextHopLost) {
			s.upErr = err
		}
		return s.decide("rcpt", policy.FromError(err), "next hop "+s.up.Hop()+": "+err.Error(), "to", to)
	}
	s.tx.Rcpts = append(s.tx.Rcpts, to)
	s.headers = append(s.headers, v.Headers...)
	s.srv.metrics.decision("rcpt", "accepted")
	s.log.Info("rcpt", "from", s.tx.From, "to", to, "outcome", "accepted", "next_hop", s.up.Hop(), "reason", passReasons(results))
	return nil
}

// Data handles DATA (RFC 5321 §4.1.1.4). The client gets 250 only after the
// next hop answered 250 to the same bytes; any failure on either side
// abandons the next hop's transaction, so it discards what it has.
func (s *session) Data(r io.Reader) (err error) {
	defer s.recoverTo(&err, "data")
	defer s.Reset()
	s.conn.Conn().SetReadDeadline(time.Now().Add(s.srv.cfg.Limits.DataTimeout))
	ctx, cancel := context.WithTimeout(s.ctx(), s.srv.cfg.Limits.DataTimeout+s.srv.cfg.HopTimeouts.Data)
	defer cancel()

	if s.up == nil {
		// go-smtp calls Data only after an accepted RCPT, which opened
		// the next hop's transaction; this is a bug if it ever happens.
		return s.decide("data", policy.NextHopLost, "no next hop transaction", "rcpts", s.tx.Rcpts)
	}
	br := bufio.NewReaderSize(&strictReader{r: r}, 64<<10)
	hdr, err := readHeader(br)
	if err != nil {
		s.up.Abort()
		return s.decide("data", policy.FromError(err), "reading header: "+err.Error(), "rcpts", s.tx.Rcpts)
	}
	if n := countReceived(hdr); n > maxReceived {
		s.up.Abort()
		return s.decide("data", policy.MailLoop, "received headers: "+itoa(n), "rcpts", s.tx.Rcpts)
	}
	hdr = stripOwnFields(hdr, s.srv.cfg.Hostname)
	s.tx.Header = hdr
	v, results := s.srv.chain.Run(ctx, filters.StageData, s.tx)
	if rep := verdictReply(v); rep != nil {
		s.up.Abort()
		return s.decideBy("data", lastCheck(results), rep, v.Reason, "rcpts", s.tx.Rcpts)
	}
	s.headers = append(s.headers, v.Headers...)

	var prefix bytes.Buffer
	prefix.WriteString(receivedHeader(s.conn.Hostname(), s.client.String(), s.srv.cfg.Hostname, s.protocol(), s.id, s.tx.Rcpts, time.Now()))
	for _, h := range s.headers {
		prefix.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	msg := io.MultiReader(&prefix, bytes.NewReader(hdr), br)
	if err := s.up.Data(ctx, msg); err != nil {
		s.up.Abort()
		s.up = nil
		return s.decide("data", policy.FromError(err), "relay: "+err.Error(), "rcpts", s.tx.Rcpts)
	}
	s.up.Close()
	s.up = nil
	s.srv.metrics.decision("data", "accepted")
	s.log.Info("data", "from", s.tx.From, "rcpts", s.tx.Rcpts, "outcome", "accepted", "reply", policy.Accepted.String())
	return policy.Accepted.SMTPError()
}

// Reset handles RSET and ends a transaction: an open next hop transaction is
// abandoned.
func (s *session) Reset() {
	if s.up != nil {
		s.up.Abort()
		s.up = nil
	}
	s.tx = &filters.Transaction{
		SessionID: s.id, Client: s.client, Helo: s.conn.Hostname(),
		Trusted: s.trusted, Listener: s.listener, Authenticated: s.authUser(),
		Conn: s.connState, Values: map[string]any{},
	}
	s.mailOpts, s.route, s.routeKey, s.upErr, s.headers = nil, -1, "", nil, nil
	s.srv.tracker.setBusy(s.conn.Conn(), false)
}

// Logout ends the session.
func (s *session) Logout() error {
	if s.up != nil {
		s.up.Abort()
		s.up = nil
	}
	s.log.Debug("session closed")
	return nil
}

func (s *session) authUser() string {
	if s.tx != nil {
		return s.tx.Authenticated
	}
	return ""
}

// decide logs one decision and returns the reply as go-smtp's error type.
func (s *session) decide(stage string, r *policy.Reply, reason string, kv ...any) error {
	return s.decideBy(stage, "", r, reason, kv...)
}

// decideBy is decide naming the check that decided ("" for the gateway's
// own rules: syntax, relay control, routes, limits, next hop).
func (s *session) decideBy(stage, check string, r *policy.Reply, reason string, kv ...any) error {
	outcome := "deferred"
	if r.Permanent() {
		outcome = "rejected"
	} else if r.Code/100 == 2 {
		outcome = "accepted"
	}
	var args []any
	if stage != "mail" {
		args = append(args, "from", s.tx.From)
	}
	args = append(args, kv...)
	if check != "" {
		args = append(args, "check", check)
	}
	args = append(args, "outcome", outcome, "reply", r.String(), "reason", reason)
	s.log.Info(stage, args...)
	s.srv.metrics.decision(stage, outcome)
	return r.SMTPError()
}

// recoverTo turns a panic in a verb into the generic temporary reply: a bug
// may delay mail, never bounce it.
func (s *session) recoverTo(err *error, stage string) {
	if p := recover(); p != nil {
		s.log.Error("panic", "stage", stage, "panic", p)
		if s.up != nil {
			s.up.Abort()
			s.up = nil
		}
		*err = policy.TempLocal.SMTPError()
	}
}

func (s *session) ctx() context.Context { return s.srv.ctx }

func (s *session) isLMTPHop() bool {
	su, ok := s.up.(*smtpUpstream)
	return ok && su.lmtp
}

func (s *session) protocol() string {
	p := "ESMTP"
	if _, tls := s.conn.TLSConnectionState(); tls {
		p += "S"
	}
	if s.tx.Authenticated != "" {
		p += "A"
	}
	return p
}

// relayControl decides whether a recipient may be accepted from this client
// at all (DESIGN.md §2: no open relay). A client that may not relay (neither
// trusted nor authenticated) may only send to local domains, and there
// without routing syntax in the local part; address literals are never
// routed.
func (s *Server) relayControl(addr Address, local, mayRelay bool) (*policy.Reply, string) {
	switch {
	case !mayRelay && !local:
		return policy.RelayDenied, "recipient domain is not local and client may not relay"
	case !mayRelay && addr.HasRoutingSyntax():
		return policy.RelayDenied, "routing syntax in local part (" + addr.Local + ")"
	case addr.IsLiteral():
		return policy.AddressLiteral, "address literal"
	}
	return nil, ""
}

// begin opens the transaction with the route's next hops for a domain.
func (s *session) begin(route int, domain string) (upstream, error) {
	hops, err := s.srv.hopsFor(s.ctx(), route, domain)
	if err != nil {
		return nil, err
	}
	return beginTransaction(s.ctx(), hops, s.srv.cfg.Hostname, s.tx.From, s.mailOpts, s.srv.cfg.HopTimeouts)
}

// passReasons joins what each check found for an accepted recipient
// ("dnsbl: not listed; greylist: passed after 312 s"), so that the log says
// why mail was let through, not only why it was refused.
func passReasons(results []filters.Result) string {
	var parts []string
	for _, r := range results {
		if r.Verdict.Reason != "" {
			parts = append(parts, r.Verdict.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// lastCheck names the check whose result ended a chain run.
func lastCheck(results []filters.Result) string {
	if len(results) == 0 {
		return ""
	}
	return results[len(results)-1].Check
}

// verdictReply is the reply for a Defer or Reject verdict, nil otherwise.
func verdictReply(v filters.Verdict) *policy.Reply {
	if v.Action == filters.Defer || v.Action == filters.Reject {
		return v.Reply
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
