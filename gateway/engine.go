package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"sekisho/auth"
	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
	"sekisho/relay"
)

// engine is the decision path of one SMTP transaction: relay control, routes,
// the checks of each stage in their order, the call-ahead and the relay of
// the data. A session drives it with the client's commands; `sekisho
// explain` drives the same code with its flags (explain.go), so that what
// explain prints is what a client would be told.
//
// Every method returns the reply for the command, never nil, and reports each
// decision to the observer (the session logs it; explain lists it).
type engine struct {
	srv *Server
	gen *generation // the configuration the session started with
	obs observer

	// What the connection established; copied into each transaction.
	base filters.Transaction
	// tlsInfo is the client connection's TLS version and cipher, for a
	// comment in Received (as Postfix writes it); "" in clear.
	tlsInfo string
	// helo: the client greeted with HELO, not EHLO (Received says SMTP).
	helo bool
	// dryRun stops before the data is relayed (explain sends no mail).
	dryRun bool
	// user is the authenticated user of a submission session.
	user *auth.User
	// lmtp: the LMTP listener's transactions may hold several
	// destinations, each delivered at the end of the data (lmtp.go).
	lmtp      bool
	dataCheck string // the check that decided the data, for the counters
	// The message's size and next hops with their replies to the data,
	// for its history record (history.go).
	msgSize                  int64
	lastHops, lastHopReplies []string
	// dataRefusal is the LMTP message's refusal before any destination
	// (a check of stage data), for each recipient's log line.
	dataRefusal dataOutcome
	// dataClientFailed: the client failed during the LMTP data
	dataClientFailed bool
	// gone reports a session whose client has left (its context ended):
	// nothing is counted then.
	gone      func() bool
	dests     map[string]*destination
	destOrder []string

	tx      *filters.Transaction
	active  bool // MAIL accepted
	from    mailaddr.Address
	params  MailParams
	rcpts   []mailaddr.Address
	rcptDSN []relay.RcptDSN // the LMTP transaction's, by recipient
	// rcptAlias: for an LMTP recipient given twice, the index of its first
	// occurrence (whose answer it gets); -1 otherwise.
	rcptAlias []int
	// ups are the next hop transactions of the transaction, one per route
	// (per destination: Router.Key), in the order of their first RCPT.
	ups     []*routeTx
	headers []filters.Header
	// rawHeader is the header section as the client sent it;
	// refusedDomain is the domain a refusal at stage message was about,
	// for the report.
	rawHeader     []byte
	refusedDomain string
	// finished are the next hop transactions whose data was acknowledged:
	// they are closed (QUIT, or kept for reuse) only after the client has
	// its reply.
	finished []relay.Transaction
}

// routeTx is the next hop transaction of one route of an SMTP transaction,
// begun by the call-ahead at the route's first recipient.
type routeTx struct {
	key   string // Router.Key of the route and domain
	up    relay.Transaction
	err   error // its connection broke: its later RCPTs get this
	rcpts int   // recipients its next hop accepted
}

// MailParams are the MAIL parameters sekisho understands (RFC 1870 SIZE,
// RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET and ENVID).
type MailParams struct {
	Size  int64
	Body  string // "", "7BIT" or "8BITMIME"
	UTF8  bool
	Ret   string // "", "FULL" or "HDRS"
	EnvID string // decoded xtext
}

// RcptParams are the RCPT parameters sekisho understands (RFC 3461 NOTIFY
// and ORCPT), passed on to a next hop that offers DSN.
type RcptParams struct {
	Notify    []string // NEVER, or some of SUCCESS, FAILURE, DELAY
	ORcptType string   // "rfc822", "utf-8", …
	ORcpt     string   // decoded xtext
}

func (p RcptParams) dsn() relay.RcptDSN {
	return relay.RcptDSN{Notify: p.Notify, ORcptType: p.ORcptType, ORcpt: p.ORcpt}
}

// envelope is what the call-ahead sends in MAIL.
func (e *engine) envelope() relay.Envelope {
	return relay.Envelope{From: e.from, UTF8: e.params.UTF8, Body: e.params.Body, Size: e.params.Size,
		Ret: e.params.Ret, EnvID: e.params.EnvID}
}

// observer receives what the engine does. The session logs and counts; the
// explain command lists steps with their lookups.
type observer interface {
	// run runs one stage of the chain. label names the step ("rcpt <a@b>").
	run(ctx context.Context, label string, st filters.Stage, tx *filters.Transaction) (filters.Verdict, []filters.Result)
	// decided records a decision that answers a command. check is the
	// check or gateway rule that decided ("" when all passed).
	decided(stage, check string, r *policy.Reply, reason string, kv ...any)
}

func newEngine(srv *Server, gen *generation, obs observer, base filters.Transaction) *engine {
	e := &engine{srv: srv, gen: gen, obs: obs, base: base}
	e.reset()
	return e
}

// reset ends the transaction; every open next hop transaction is abandoned
// so that the next hop discards whatever it has (politely, without waiting:
// relay.Transaction's Abort).
func (e *engine) reset() {
	e.abandon()
	tx := e.base
	tx.Values = map[string]any{}
	if tx.Conn == nil {
		tx.Conn = map[string]any{}
	}
	e.tx = &tx
	e.active, e.from, e.params, e.rcpts, e.rcptDSN, e.rcptAlias = false, mailaddr.Address{}, MailParams{}, nil, nil, nil
	e.headers = nil
	e.rawHeader, e.refusedDomain = nil, ""
	e.dests, e.destOrder = nil, nil
}

// abandon abandons every next hop transaction still open.
func (e *engine) abandon() {
	for _, rt := range e.ups {
		rt.up.Abort()
	}
	e.ups = nil
}

// openRoute returns the open next hop transaction for a route key, or nil.
func (e *engine) openRoute(key string) *routeTx {
	for _, rt := range e.ups {
		if rt.key == key {
			return rt
		}
	}
	return nil
}

// setUser makes the session's transactions those of an authenticated user
// (RFC 4954): they may relay, they must send as themselves, and the
// Received field says ESMTPSA (RFC 3848).
func (e *engine) setUser(u *auth.User) {
	e.user = u
	e.base.Authenticated = u.Name
	e.reset()
}

// protocol is the Received field's "with" (RFC 3848): ESMTP or LMTP, with S
// after STARTTLS or on the submissions listener, and A once authenticated;
// SMTP for a client that said HELO in clear (RFC 5321 §4.4; RFC 3848 names
// no protocol for HELO over TLS, which stays ESMTPS).
func (e *engine) protocol() string {
	p := "ESMTP"
	if e.lmtp {
		p = "LMTP"
	} else if e.helo && e.tlsInfo == "" && e.user == nil {
		return "SMTP"
	}
	if e.tlsInfo != "" {
		p += "S"
	}
	if e.user != nil {
		p += "A"
	}
	return p
}

// afterReply is called once the client has the reply to the data: only now
// is the next hop's connection closed politely.
func (e *engine) afterReply() {
	for _, up := range e.finished {
		go up.Close()
	}
	e.finished = nil
}

// Mail begins a transaction (RFC 5321 §4.1.1.2).
func (e *engine) Mail(ctx context.Context, from mailaddr.Address, p MailParams) *policy.Reply {
	e.reset()
	e.from, e.params = from, p
	e.tx.From, e.tx.SMTPUTF8 = from.String(), p.UTF8
	if r, reason := e.submitter(from); r != nil {
		e.obs.decided("mail", "submission", r, reason, "from", e.tx.From)
		return r
	}
	v, results := e.obs.run(ctx, "mail", filters.StageMail, e.tx)
	if r := verdictReply(v); r != nil {
		e.count(lastCheck(results), r, v.Cause, mailaddr.Address{})
		e.obs.decided("mail", lastCheck(results), r, v.Reason, "from", e.tx.From)
		return r
	}
	e.headers = append(e.headers, v.Headers...)
	e.active = true
	r := policy.MailOK.Withf("sender <%s> ok", e.tx.From)
	e.obs.decided("mail", "", r, passReasons(results), "from", e.tx.From)
	return r
}

// Rcpt adds a recipient (RFC 5321 §4.1.1.3): relay control, the route, the
// checks of stage rcpt, then the call-ahead to the route's next hop, which
// must accept the recipient before the client hears 250.
//
// Mail that may relay (a submission, a trusted client) may hold recipients
// of several routes, up to maxParallelDestinations next hop transactions,
// each begun at its route's first recipient (docs/msa.md, "Several routes
// in one message"); Data sends the message to all of them. Inbound mail has
// one route per transaction: a recipient of another gets 452 4.5.3 and
// comes again in a transaction of its own (RFC 5321 §4.5.3.1.10).
func (e *engine) Rcpt(ctx context.Context, to mailaddr.Address, rp RcptParams) *policy.Reply {
	if to.IsPostmaster() {
		// RFC 5321 §4.5.1: <postmaster> without a domain must be accepted;
		// it is the postmaster of our first local domain.
		to.Domain = e.gen.cfg.PostmasterDomain
		if to.Domain == "" {
			return e.refuse("relay", policy.NoRoute, "no local domain for <postmaster>", to)
		}
	}
	local := e.gen.cfg.LocalDomains.Contains(to.Domain)
	if r, reason := e.srv.relayControl(to, local, e.base.Trusted || e.base.Authenticated != ""); r != nil {
		return e.refuse("relay", r, reason, to)
	}
	route := e.gen.router.Lookup(to.Domain)
	if route < 0 {
		e.srv.log.Error("no route matches a recipient domain: fix the routes of the configuration", "domain", to.Domain)
		return e.refuse("route", policy.NoRoute, "no route", to)
	}
	key := e.gen.router.Key(route, to.Domain)
	if e.lmtp {
		return e.lmtpRcptChecked(ctx, route, key, to, rp, local)
	}
	multi := e.outbound()
	if multi && e.gen.router.IsLMTP(route) {
		// One LMTP DATA gives one reply per recipient; an SMTP client
		// takes one: each recipient has a next hop transaction of its own.
		key += "/" + to.String()
	}
	rt := e.openRoute(key)
	switch {
	case rt == nil && !multi && len(e.ups) > 0:
		return e.refuse("route", policy.OtherRoute, "recipient's route differs from the transaction's", to)
	case rt == nil && len(e.ups) >= maxParallelDestinations:
		return e.refuse("route", policy.OtherRoute, fmt.Sprintf("the transaction has next hop transactions for %d routes already", len(e.ups)), to)
	case rt != nil && rt.up.LMTP() && rt.rcpts > 0:
		// As above, for inbound mail (and a mirror with an LMTP next hop).
		return e.refuse("route", policy.OtherRoute, "one recipient per transaction towards an LMTP next hop", to)
	case rt != nil && rt.err != nil:
		return e.refuse("next_hop", policy.FromError(rt.err), "next hop connection lost earlier in this transaction", to)
	}

	e.tx.Rcpt, e.tx.Local = to.String(), local
	v, results := e.obs.run(ctx, "rcpt "+to.String(), filters.StageRcpt, e.tx)
	if r := verdictReply(v); r != nil {
		// Refused by a check: the next hop is never asked. (An unknown
		// recipient costs no call-ahead; a directory-harvest session meets
		// the error limit after limits.max_errors searches.)
		e.count(lastCheck(results), r, v.Cause, to)
		return e.refuse(lastCheck(results), r, v.Reason, to)
	}

	if e.user != nil {
		// A phished account's campaign meets these limits first. The
		// message counts at its first accepted recipient.
		if len(e.rcpts) == 0 {
			if r := e.gen.cfg.MSA.Auth.AllowMessage(*e.user); r != nil {
				return e.refuse("submission", r, "hourly message limit of "+e.user.Name, to)
			}
		}
		if r := e.gen.cfg.MSA.Auth.AllowRecipient(*e.user); r != nil {
			return e.refuse("submission", r, "hourly recipient limit of "+e.user.Name, to)
		}
	}
	if rt == nil {
		up, err := e.gen.begin(ctx, route, asciiDomain(to.Domain), e.envelope())
		if err != nil {
			return e.refuse("call_ahead", policy.FromError(err), "call-ahead: "+err.Error(), to)
		}
		rt = &routeTx{key: key, up: up}
		e.ups = append(e.ups, rt)
	}
	if err := rt.up.Rcpt(ctx, to, rp.dsn()); err != nil {
		if _, isReply := asReply(err); !isReply || errors.Is(err, policy.NextHopLost) {
			rt.err = err
		}
		return e.refuse("next_hop", policy.FromError(err), "next hop "+rt.up.Hop()+": "+err.Error(), to)
	}
	rt.rcpts++
	e.rcpts = append(e.rcpts, to)
	e.tx.Rcpts = append(e.tx.Rcpts, to.String())
	e.headers = append(e.headers, v.Headers...)
	r := policy.RcptOK.Withf("recipient <%s> ok", to.String())
	e.countPassed(results, r, to)
	e.obs.decided("rcpt", "", r, passReasons(results), "to", to.String(), "next_hop", rt.up.Hop(), "next_hop_tls", tlsName(rt.up.TLS()))
	return r
}

// refuse answers a recipient that the gateway's own rules refuse (relay
// control, route, call-ahead, next hop, submission limits), counted by its
// rule; a check's refusal is counted where the verdict is at hand.
func (e *engine) refuse(check string, r *policy.Reply, reason string, to mailaddr.Address) *policy.Reply {
	switch check {
	case "relay", "route", "call_ahead", "next_hop", "submission":
		e.count(check, r, "", to)
	}
	e.obs.decided("rcpt", check, r, reason, "to", to.String())
	return r
}

// Data relays the message (RFC 5321 §4.1.1.4, RFC 3030 BDAT): the header
// section is read and checked, our trace fields are put on top, and the
// whole is streamed to the next hop of every route (Router.DataAll). The
// reply is 250 only once every next hop answered 250 to these bytes; any
// failure on either side abandons the next hops' transactions, so they
// discard what they have. The transaction ends here.
func (e *engine) Data(ctx context.Context, msg io.Reader) *policy.Reply {
	cr := &countingReader{r: msg}
	r := e.data(ctx, cr)
	e.msgSize = cr.n
	e.noteHops()
	e.abandon()
	for _, to := range e.rcpts {
		if !r.clientFailed {
			e.count(r.check, r.reply, "", to)
		}
	}
	kv := []any{"rcpts", e.tx.Rcpts}
	if added := e.added(); r.reply.Code/100 == 2 && len(added) > 0 {
		kv = append(kv, "tags", tagSummary(added))
	}
	e.obs.decided("data", r.check, r.reply, r.reason, kv...)
	e.reset()
	return r.reply
}

// tagSummary names the header fields the checks added to an accepted
// message, each with its result, for the message's log line:
// "Authentication-Results: spf=pass dkim=pass dmarc=pass; Received-SPF: pass;
// X-Sekisho-Header-Violation: duplicate-field". The result is the first word
// of the field's value; of an Authentication-Results field (RFC 8601 §2.2),
// whose first word is our authserv-id, it is each method=result.
func tagSummary(hs []filters.Header) string {
	parts := make([]string, 0, len(hs))
	for _, h := range hs {
		v := strings.Join(strings.Fields(h.Value), " ")
		var result string
		if strings.EqualFold(h.Name, "Authentication-Results") {
			_, rest, _ := strings.Cut(v, ";")
			var methods []string
			for _, ri := range strings.Split(rest, ";") {
				if f := strings.Fields(ri); len(f) > 0 && strings.Contains(f[0], "=") {
					methods = append(methods, f[0])
				}
			}
			result = strings.Join(methods, " ")
		} else {
			result, _, _ = strings.Cut(v, " ")
			result = strings.TrimRight(result, ";")
		}
		parts = append(parts, h.Name+": "+result)
	}
	return strings.Join(parts, "; ")
}

type dataOutcome struct {
	reply         *policy.Reply
	check, reason string
	// clientFailed: the client stalled or left; nothing to count.
	clientFailed bool
}

// clientSide reports whether an error of the data came from the client's
// side (or the session ended under it).
func clientSide(ctx context.Context, err error) bool {
	return errors.Is(err, errClientFailed) || ctx.Err() != nil
}

func (e *engine) data(ctx context.Context, msg io.Reader) dataOutcome {
	if !e.active || len(e.rcpts) == 0 {
		return dataOutcome{reply: policy.NoValidRecipients}
	}
	var ups []relay.Transaction
	for _, rt := range e.ups {
		if rt.rcpts > 0 {
			ups = append(ups, rt.up)
		}
	}
	if len(ups) == 0 && !e.dryRun {
		return dataOutcome{reply: policy.NextHopLost, reason: "no next hop transaction"}
	}
	hdr, out, rest := e.prepare(ctx, msg)
	if out.reply != nil {
		return out
	}
	var body io.Reader = rest
	var sp *spool
	signs := e.signs(hdr)
	if signs || e.gen.chain.WantsMessage(e.tx) {
		// The whole message before any of it goes on (docs/flow.md, "The
		// whole message before the next hop"): spooled, memory bounded.
		sp = newSpool(e.gen.cfg.Limits.SpoolDir, e.gen.cfg.Limits.SpoolMemory)
		defer sp.Close()
		stop := e.keepAlive(ctx, ups)
		_, err := io.Copy(sp, rest)
		stop()
		if err != nil {
			return dataOutcome{reply: policy.FromError(err), reason: "reading the message: " + err.Error(), clientFailed: clientSide(ctx, err)}
		}
		if out := e.messageStage(ctx, sp); out.reply != nil {
			return out
		}
		body = sp.Reader()
	}
	var head bytes.Buffer
	e.writeHead(&head, hdr)
	if e.dryRun {
		var added []string
		for _, h := range e.added() {
			added = append(added, h.Name+": "+strings.ReplaceAll(h.Value, "\r\n\t", " "))
		}
		return dataOutcome{reply: policy.Accepted.Withf("would be relayed (explain sends no mail)"), reason: "with " + strings.Join(added, "; ")}
	}
	if signs {
		// A DKIM signature covers the whole body: read from the spool.
		f, err := e.sign(io.MultiReader(bytes.NewReader(head.Bytes()), body), head.Bytes())
		if err != nil {
			return dataOutcome{reply: policy.FromError(err), check: "dkim", reason: err.Error()}
		}
		body = io.MultiReader(strings.NewReader(f), &head, sp.Reader())
	} else {
		body = io.MultiReader(&head, body)
	}
	if err := e.gen.router.DataAll(ctx, ups, body); err != nil {
		return dataOutcome{reply: policy.FromError(err), check: "next_hop", reason: "relay: " + err.Error(), clientFailed: clientSide(ctx, err)}
	}
	// Delivered: closed after the reply (afterReply); the routes whose
	// recipients were all refused are abandoned by Data.
	kept := e.ups[:0]
	for _, rt := range e.ups {
		if rt.rcpts == 0 {
			kept = append(kept, rt)
		}
	}
	e.finished, e.ups = ups, kept
	return dataOutcome{reply: policy.Accepted}
}

// prepare reads the header section and decides on it: the loop count, our
// own fields removed, a submission's completion and From check, the checks
// of stage data. It returns the header section as it goes on (hdr) and rest,
// the remainder of the message; out.reply is set when the message is
// refused.
func (e *engine) prepare(ctx context.Context, msg io.Reader) (hdr []byte, out dataOutcome, rest io.Reader) {
	// bufio's default 4 KiB: readHeader takes longer lines in pieces, and
	// the relay's reads of the rest, larger than the buffer, bypass it.
	br := bufio.NewReader(msg)
	raw, err := readHeader(br)
	if err != nil {
		return nil, dataOutcome{reply: policy.FromError(err), reason: "reading header: " + err.Error(), clientFailed: clientSide(ctx, err)}, br
	}
	if n := countReceived(raw); n > maxReceived {
		return nil, dataOutcome{reply: policy.MailLoop, check: "loop", reason: fmt.Sprintf("received headers: %d", n)}, br
	}
	e.rawHeader = raw
	hdr = stripOwnFields(raw, e.gen.cfg.Hostname)
	if e.user != nil {
		// Message completion (RFC 6409 §8.3, §8.4) before the header
		// check, which requires a Date.
		hdr = completeHeader(hdr, e.gen.cfg.Hostname, time.Now())
		if e.gen.cfg.MSA.FromCheck {
			if r, reason := e.fromOwned(hdr); r != nil {
				return nil, dataOutcome{reply: r, check: "submission", reason: reason}, br
			}
		}
	}
	e.tx.Header = hdr
	v, results := e.obs.run(ctx, "data", filters.StageData, e.tx)
	if rep := verdictReply(v); rep != nil {
		return nil, dataOutcome{reply: rep, check: lastCheck(results), reason: v.Reason}, br
	}
	e.headers = append(e.headers, v.Headers...)
	return hdr, dataOutcome{}, br
}

// keepAlive sends a NOOP to every next hop transaction every
// NextHopKeepAlive until stop is called, while the message is spooled: the
// next hops wait for DATA meanwhile, and would time out (Postfix: 300 s)
// on a large message from a slow client. stop returns once no NOOP is in
// flight, so that the transactions are the caller's again.
func (e *engine) keepAlive(ctx context.Context, ups []relay.Transaction) (stop func()) {
	every := e.gen.cfg.NextHopKeepAlive
	if every <= 0 || len(ups) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				for _, up := range ups {
					if err := relay.KeepAlive(ctx, up); err != nil {
						e.srv.log.Debug("next hop keep-alive failed", "session", e.base.SessionID, "next_hop", up.Hop(), "err", err.Error())
					}
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// messageStage runs the checks of stage message on the spooled message, as
// the client sent it (its header section before our own fields were
// removed: a signature may cover them).
func (e *engine) messageStage(ctx context.Context, sp *spool) dataOutcome {
	raw := e.rawHeader
	e.tx.Message = func() io.Reader { return io.MultiReader(bytes.NewReader(raw), sp.Reader()) }
	v, results := e.obs.run(ctx, "message", filters.StageMessage, e.tx)
	if rep := verdictReply(v); rep != nil {
		if rep.Permanent() {
			// The report's top spoofed From domains: refusals only, not
			// what could not be told (a 451 says nothing of the sender).
			e.refusedDomain = v.Domain
		}
		return dataOutcome{reply: rep, check: lastCheck(results), reason: v.Reason}
	}
	e.headers = append(e.headers, v.Headers...)
	return dataOutcome{}
}

// writeHead writes what goes out before the body: the one
// Authentication-Results field of the transaction on top, the checks'
// fields (Received-SPF, the tags), above our Received field as RFC 8601 §5
// and RFC 7208 §9.1 ask of the receiver that writes them, then the header
// section.
func (e *engine) writeHead(head *bytes.Buffer, hdr []byte) {
	for _, h := range e.added() {
		head.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	head.WriteString(e.received(time.Now()))
	head.Write(hdr)
}

// added is every header field the checks give the message, in the order
// it goes out: the one Authentication-Results field of the transaction (if
// any method ran), then the checks' own fields.
func (e *engine) added() []filters.Header {
	ar, ok := filters.AuthenticationResults(e.gen.cfg.Hostname, e.tx)
	if !ok {
		return e.headers
	}
	return append([]filters.Header{ar}, e.headers...)
}

// outbound reports mail that leaves the campus on a user's or a campus
// server's behalf: the only mail sekisho signs with DKIM.
func (e *engine) outbound() bool { return e.base.Trusted || e.base.Authenticated != "" }

// signs reports whether this message gets a DKIM signature: outbound, and
// a key for its From domain.
func (e *engine) signs(head []byte) bool {
	return e.dkimDomain(head) != ""
}

func (e *engine) dkimDomain(head []byte) string {
	if e.gen.cfg.DKIM == nil || !e.outbound() {
		return ""
	}
	domain, err := relay.FromDomain(head)
	if err != nil || !e.gen.cfg.DKIM.KeyFor(domain) {
		return ""
	}
	return domain
}

// sign returns the DKIM-Signature field for a whole message (msg; head is
// its header section, which names the From domain), or "" when it is not
// signed. A signing failure is a temporary refusal: never a message the
// admin believes signed going out unsigned.
func (e *engine) sign(msg io.Reader, head []byte) (string, error) {
	domain := e.dkimDomain(head)
	if domain == "" {
		return "", nil
	}
	f, err := e.gen.cfg.DKIM.Sign(msg, domain)
	if err != nil {
		return "", fmt.Errorf("%w: dkim signing for %s: %v", policy.SigningFailed, domain, err)
	}
	return f, nil
}

// submitter applies the submission rules to an authenticated user's sender
// (RFC 6409 §8.1 lets the MSA enforce them): the null sender is refused
// (users do not send bounces), the sender must be one of the user's
// addresses (auth.sender_check). (The hourly limits are applied at RCPT,
// where RFC 5321 §4.3.2 allows their 450.)
func (e *engine) submitter(from mailaddr.Address) (*policy.Reply, string) {
	u := e.user
	if u == nil {
		return nil, ""
	}
	msa := e.gen.cfg.MSA
	switch {
	case from.IsNull():
		return policy.NullSenderOnSubmission, "null sender from an authenticated user"
	case msa.SenderCheck && !u.Owns(from.String()):
		return policy.SenderNotOwned, "sender is not an address of " + u.Name
	}
	return nil, ""
}

// fromOwned checks that the From field is one field holding one mailbox,
// the user's own (auth.from_check; RFC 6409 §8.1). It parses the whole
// header section as the header check and the DKIM signer do
// (filters.FromAddresses): what it cannot read as one address is refused,
// never left to the header check's tag, since a receiver may well read it
// as another address (a group, an unclosed angle bracket, a second From
// field far down the header).
func (e *engine) fromOwned(hdr []byte) (*policy.Reply, string) {
	addrs, err := filters.FromAddresses(hdr, e.params.UTF8)
	switch {
	case err != nil:
		return policy.FromNotOneAddress, "From field of " + e.user.Name + ": " + err.Error()
	case len(addrs) != 1:
		return policy.FromNotOneAddress, fmt.Sprintf("From field of %s has %d mailboxes", e.user.Name, len(addrs))
	case !e.user.Owns(addrs[0]):
		return policy.FromNotOwned, "From " + addrs[0] + " is not an address of " + e.user.Name
	}
	return nil, ""
}

// completeHeader adds the Date and Message-ID fields a submitted message
// lacks (RFC 6409 §8.3, §8.4), at the end of the header section.
func completeHeader(hdr []byte, hostname string, now time.Time) []byte {
	var add []byte
	if !hasField(hdr, "date") {
		add = append(add, "Date: "+now.Format(time.RFC1123Z)+"\r\n"...)
	}
	if !hasField(hdr, "message-id") {
		add = append(add, "Message-ID: <"+newSessionID()+newSessionID()+"@"+hostname+">\r\n"...)
	}
	if add == nil {
		return hdr
	}
	body := hdr
	end := []byte{}
	if bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
		body, end = hdr[:len(hdr)-2], []byte("\r\n")
	}
	out := make([]byte, 0, len(hdr)+len(add))
	out = append(append(append(out, body...), add...), end...)
	return out
}

// hasField reports whether a header section has a field of that name.
func hasField(hdr []byte, name string) bool {
	for _, line := range bytes.Split(hdr, []byte("\r\n")) {
		n, _, ok := bytes.Cut(line, []byte(":"))
		if ok && len(line) > 0 && line[0] != ' ' && line[0] != '\t' && strings.EqualFold(strings.TrimSpace(string(n)), name) {
			return true
		}
	}
	return false
}

// received is our trace field for this transaction. A submitted message's
// field names neither the user nor the client's address unless the
// configuration asks for it (auth.received: full): the user's home network
// is nobody's business downstream.
func (e *engine) received(now time.Time) string {
	if e.user != nil && !e.gen.cfg.MSA.ReceivedFull {
		var b strings.Builder
		fmt.Fprintf(&b, "Received: by %s (sekisho) with %s id %s", e.gen.cfg.Hostname, e.protocol(), e.base.SessionID)
		if e.tlsInfo != "" {
			fmt.Fprintf(&b, "\r\n\t(%s)", e.tlsInfo)
		}
		fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
		return b.String()
	}
	r := receivedHeader(e.base.Helo, e.base.Client, e.gen.cfg.Hostname, e.protocol(), e.base.SessionID, e.rcpts, now)
	if e.tlsInfo != "" {
		r = strings.Replace(r, ")\r\n\tby ", ")\r\n\t("+e.tlsInfo+")\r\n\tby ", 1)
	}
	if e.user != nil {
		// auth.received: full. The user is named by the directory's first
		// address, never by what the client typed (LDAP matching folds
		// spaces and line breaks, so a typed name could carry a CRLF).
		who := e.user.DN
		if len(e.user.Addresses) > 0 {
			who = e.user.Addresses[0]
		}
		if !printableASCII(who) {
			who = "a local user"
		}
		r = strings.Replace(r, ")\r\n\tby ", ")\r\n\t(authenticated as "+who+")\r\n\tby ", 1)
	}
	return r
}

// receivedHeader builds our trace field (RFC 5321 §4.4, with the protocol
// names of RFC 3848). The HELO name was validated as a domain or address
// literal when the client gave it, and the recipient is written in wire form,
// so nothing the client typed can break out of the field.
func receivedHeader(helo string, client netip.Addr, hostname, protocol, id string, rcpts []mailaddr.Address, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (sekisho) with %s id %s", helo, addressLiteral(client), hostname, protocol, id)
	if len(rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", rcpts[0].String())
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// addressLiteral writes an IP address as RFC 5321 §4.1.3 does: [192.0.2.1],
// [IPv6:2001:db8::1].
func addressLiteral(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.Unmap().String() + "]"
}

// begin is the call-ahead, timed for the metrics.
func (g *generation) begin(ctx context.Context, route int, domain string, env relay.Envelope) (relay.Transaction, error) {
	start := time.Now()
	up, err := g.router.Begin(ctx, route, domain, env)
	if obs := g.cfg.ObserveNextHop; obs != nil {
		outcome := "ok"
		if err != nil {
			outcome = "deferred"
			if policy.FromError(err).Permanent() {
				outcome = "refused"
			}
		}
		obs("nexthop", outcome, time.Since(start))
	}
	return up, err
}

// tlsName says how the connection to a next hop is protected, for the log.
func tlsName(st *tls.ConnectionState) string {
	if st == nil {
		return "none"
	}
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// asciiDomain is the domain as DNS knows it (U-labels as A-labels); a name
// that does not convert is left as it is, for the lookup to fail on.
func asciiDomain(d string) string {
	if a, err := mailaddr.ToASCII(d); err == nil {
		return a
	}
	return d
}

// asReply reports whether err carries a deliberate reply.
func asReply(err error) (*policy.Reply, bool) {
	var r *policy.Reply
	ok := errors.As(err, &r)
	return r, ok
}

// passReasons joins what each check found for an accepted command ("dnsbl:
// not listed; greylist: passed after 312 s"), so that the log says why mail
// was let through, not only why it was refused.
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

// relayControl decides whether a recipient may be accepted from this client
// at all (DESIGN.md §2: no open relay). A client that may not relay (neither
// trusted nor authenticated) may only send to local domains, and there
// without routing syntax in the local part; address literals are never
// routed.
func (s *Server) relayControl(addr mailaddr.Address, local, mayRelay bool) (*policy.Reply, string) {
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
