package gateway

import (
	"bytes"
	"context"
	"io"
	"sync"

	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
	"sekisho/relay"
)

// The LMTP listener (RFC 2033) is how the campus mail servers hand outbound
// mail over. LMTP answers the data once per recipient, so one transaction
// may hold recipients of different routes and remote domains: the engine
// keeps them grouped by destination, accepts each recipient once its checks
// pass, and at the end of the data delivers to every destination in
// parallel, each recipient getting its own destination's answer. A dead
// destination holds up no other: each has its own call-ahead budget, and
// they run side by side.

// maxParallelDestinations bounds the next hop transactions one message
// opens at once: an LMTP message's destinations, delivered in parallel at
// the end of the data, and the routes of an SMTP transaction that may relay
// (engine.Rcpt), each open from its first RCPT to the end of the data (a
// recipient of one more route gets 452 4.5.3 and comes again in another
// transaction).
const maxParallelDestinations = 8

// destination is the recipients of one LMTP transaction that go out
// together: the same route and, for mx routes, the same domain.
type destination struct {
	route  int
	domain string
	rcpts  []int // indexes into engine.rcpts
}

// lmtpRcpt accepts a recipient whose checks passed into its destination;
// the next hop is asked at the end of the data.
func (e *engine) lmtpRcpt(route int, key string, to mailaddr.Address, rp RcptParams) {
	if e.dests == nil {
		e.dests = map[string]*destination{}
	}
	if e.gen.router.IsLMTP(route) {
		// An LMTP next hop gets one recipient per transaction: its
		// per-recipient answer then is the answer for that recipient.
		key += "/" + to.String()
	}
	for i, prev := range e.rcpts {
		if prev == to && e.rcptAlias[i] < 0 {
			// The same recipient twice: one delivery; the second RCPT
			// gets the first one's answer (RFC 2033 §4.2 wants a reply
			// for each).
			e.rcptAlias = append(e.rcptAlias, i)
			e.rcpts = append(e.rcpts, to)
			e.rcptDSN = append(e.rcptDSN, rp.dsn())
			e.tx.Rcpts = append(e.tx.Rcpts, to.String())
			return
		}
	}
	d := e.dests[key]
	if d == nil {
		d = &destination{route: route, domain: asciiDomain(to.Domain)}
		e.dests[key] = d
		e.destOrder = append(e.destOrder, key)
	}
	d.rcpts = append(d.rcpts, len(e.rcpts))
	e.rcptAlias = append(e.rcptAlias, -1)
	e.rcpts = append(e.rcpts, to)
	e.rcptDSN = append(e.rcptDSN, rp.dsn())
	e.tx.Rcpts = append(e.tx.Rcpts, to.String())
}

// DataLMTP reads the message and delivers it to every destination of the
// transaction, returning one reply per accepted recipient, in RCPT order
// (RFC 2033 §4.2). The message is read whole first (it goes to several
// next hops), bounded by limits.max_message_bytes.
func (e *engine) DataLMTP(ctx context.Context, msg io.Reader) []*policy.Reply {
	e.msgSize, e.lastHops, e.lastHopReplies = 0, nil, nil
	replies := e.dataLMTP(ctx, msg)
	for i, r := range replies {
		if !e.dataClientFailed {
			e.count(e.dataCheck, r, "", e.rcpts[i])
		}
		kv := []any{"to", e.rcpts[i].String()}
		if i < len(e.lastHops) && e.lastHops[i] != "" {
			kv = append(kv, "next_hop", e.lastHops[i], "next_hop_reply", e.lastHopReplies[i])
		}
		if added := e.added(); r.Code/100 == 2 && len(added) > 0 {
			kv = append(kv, "tags", tagSummary(added))
		}
		// A refusal of the message itself (a check of stage data) names
		// its check and reason on each recipient's line; a destination's
		// answer is the next hop's, logged with its destination.
		e.obs.decided("data", e.dataRefusal.check, r, e.dataRefusal.reason, kv...)
	}
	e.reset()
	return replies
}

func (e *engine) dataLMTP(ctx context.Context, msg io.Reader) []*policy.Reply {
	all := func(r *policy.Reply) []*policy.Reply {
		out := make([]*policy.Reply, len(e.rcpts))
		for i := range out {
			out[i] = r
		}
		return out
	}
	hdr, r, rest := e.prepare(ctx, msg)
	e.dataCheck, e.dataClientFailed, e.dataRefusal = r.check, r.clientFailed, dataOutcome{}
	if r.reply != nil {
		e.dataRefusal = r // each recipient's line names it (DataLMTP)
		return all(r.reply)
	}
	e.dataCheck = "next_hop" // from here on, each answer is a destination's
	// The whole message, for every destination. (The LMTP listener takes
	// trusted clients only: no check of stage message wants it.)
	var spool bytes.Buffer
	e.writeHead(&spool, hdr)
	if _, err := io.Copy(&spool, rest); err != nil {
		e.dataClientFailed = clientSide(ctx, err)
		return all(policy.FromError(err))
	}
	body := spool.Bytes()
	e.msgSize = int64(len(body))
	// Each recipient's next hop and its reply to the data, for the
	// history (history.go); each destination writes its recipients' own.
	e.lastHops, e.lastHopReplies = make([]string, len(e.rcpts)), make([]string, len(e.rcpts))
	if f, err := e.sign(bytes.NewReader(body), body); err != nil {
		return all(policy.FromError(err))
	} else if f != "" {
		body = append([]byte(f), body...)
	}

	out := make([]*policy.Reply, len(e.rcpts))
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxParallelDestinations)
	for _, key := range e.destOrder {
		d := e.dests[key]
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			e.deliver(ctx, d, body, out)
		}()
	}
	wg.Wait()
	for i, a := range e.rcptAlias {
		if a >= 0 {
			out[i] = out[a]
			e.lastHops[i], e.lastHopReplies[i] = e.lastHops[a], e.lastHopReplies[a]
		}
	}
	return out
}

// deliver makes one destination's transaction: call-ahead, its
// recipients, the data; each recipient's slot in out gets its answer.
func (e *engine) deliver(ctx context.Context, d *destination, body []byte, out []*policy.Reply) {
	env := e.envelope()
	env.Size = int64(len(body))
	up, err := e.gen.begin(ctx, d.route, d.domain, env)
	if err != nil {
		r := policy.FromError(err)
		e.srv.log.Info("lmtp", "session", e.base.SessionID, "destination", d.domain, "destination_reply", r.String(), "reason", "call-ahead: "+err.Error())
		for _, i := range d.rcpts {
			out[i] = r
		}
		return
	}
	defer up.Close()
	var accepted []int
	for _, i := range d.rcpts {
		if err := up.Rcpt(ctx, e.rcpts[i], e.rcptDSN[i]); err != nil {
			out[i] = policy.FromError(err)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		up.Abort()
		return
	}
	r := policy.Accepted
	if err := up.Data(ctx, bytes.NewReader(body)); err != nil {
		up.Abort()
		r = policy.FromError(err)
	}
	e.srv.log.Info("lmtp", "session", e.base.SessionID, "destination", d.domain, "next_hop", up.Hop(),
		"next_hop_tls", tlsName(up.TLS()), "recipients", len(accepted), "destination_reply", r.String())
	reply := ""
	if dr, ok := up.(relay.DataReplier); ok && r == policy.Accepted {
		reply = dr.DataReply()
	}
	for _, i := range accepted {
		out[i] = r
		e.lastHops[i], e.lastHopReplies[i] = up.Hop(), reply
	}
}

// lmtpRcptChecked runs the checks of stage rcpt for a recipient of an LMTP
// transaction and, when they pass, accepts it into its destination.
func (e *engine) lmtpRcptChecked(ctx context.Context, route int, key string, to mailaddr.Address, rp RcptParams, local bool) *policy.Reply {
	e.tx.Rcpt, e.tx.Local = to.String(), local
	v, results := e.obs.run(ctx, "rcpt "+to.String(), filters.StageRcpt, e.tx)
	if r := verdictReply(v); r != nil {
		e.count(lastCheck(results), r, v.Cause, to)
		return e.refuse(lastCheck(results), r, v.Reason, to)
	}
	e.headers = append(e.headers, v.Headers...)
	e.lmtpRcpt(route, key, to, rp)
	r := policy.RcptOK.Withf("recipient <%s> ok", to.String())
	e.countPassed(results, r, to)
	e.obs.decided("rcpt", "", r, passReasons(results), "to", to.String(), "next_hop", "at the end of the data")
	return r
}
