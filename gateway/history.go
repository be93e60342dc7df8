package gateway

import (
	"crypto/tls"
	"io"
	"strings"
	"time"

	"sekisho/history"
	"sekisho/policy"
	"sekisho/relay"
)

// The decision history (package history): every decision the session logs
// (sessionObserver.decided) is also one record, and so is every other
// refusal of 400 or more that is logged on its own (logReplyLocked: AUTH
// failures, protocol errors) and the pregreet refusal of the greet pause.
// Recording is one append under a mutex (history.Recorder); a gateway
// without a recorder (history.off) records nothing.

// countingReader counts the bytes of the message as received.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// noteHops keeps, before the transaction's next hops are let go, their
// names and their replies to the data, for the message's record.
func (e *engine) noteHops() {
	e.lastHops, e.lastHopReplies = e.lastHops[:0], e.lastHopReplies[:0]
	add := func(up relay.Transaction) {
		e.lastHops = append(e.lastHops, up.Hop())
		reply := ""
		if dr, ok := up.(relay.DataReplier); ok {
			reply = dr.DataReply()
		}
		e.lastHopReplies = append(e.lastHopReplies, reply)
	}
	if len(e.finished) > 0 {
		for _, up := range e.finished {
			add(up)
		}
		return
	}
	for _, rt := range e.ups {
		if rt.rcpts > 0 {
			add(rt.up)
		}
	}
}

// tlsVersion names the client connection's TLS version, "" in clear.
func tlsVersion(st *tls.ConnectionState) string {
	if st == nil {
		return ""
	}
	return tls.VersionName(st.Version)
}

// newRecord is a record of the session with what every record carries.
func (c *conn) newRecord(stage, check string, r *policy.Reply, reason string) history.Record {
	rec := history.Record{
		Time: time.Now(), Gateway: c.gen.cfg.Hostname, Listener: c.listener, Session: c.id,
		ClientAddr: c.client, Helo: c.helo, Stage: stage, Check: check,
		Code: r.Code, ReplyOf: r, Reason: reason, TLS: tlsVersion(c.tls),
	}
	if c.user != nil {
		rec.User = c.user.Name
	}
	if c.tx != nil && c.tx.active {
		rec.From = c.tx.tx.From
	}
	return rec
}

// recordDecision is sessionObserver.decided's record: kv are the decision
// line's fields ("to", "next_hop", "rcpts").
func (c *conn) recordDecision(stage, check string, r *policy.Reply, reason string, kv []any) {
	h := c.gen.cfg.History
	if h == nil {
		return
	}
	rec := c.newRecord(stage, check, r, reason)
	for i := 0; i+1 < len(kv); i += 2 {
		switch kv[i] {
		case "from":
			rec.From, _ = kv[i+1].(string)
		case "to":
			rec.Rcpt, _ = kv[i+1].(string)
		case "rcpts":
			rec.To, _ = kv[i+1].([]string)
			rec.To = append([]string(nil), rec.To...)
		case "next_hop":
			rec.NextHop, _ = kv[i+1].(string)
		case "next_hop_reply": // an LMTP recipient's own
			rec.HopReply, _ = kv[i+1].(string)
			rec.QueueID = history.QueueID(rec.HopReply)
		}
	}
	if stage == "data" && c.tx != nil {
		e := c.tx
		rec.MsgID = history.MessageID(e.tx.Header)
		rec.Size = e.msgSize
		if !c.lmtp && rec.NextHop == "" {
			rec.NextHop = strings.Join(e.lastHops, " ")
		}
		if !c.lmtp && r.Code/100 == 2 { // LMTP: each recipient's own, above
			var ids []string
			for _, t := range e.lastHopReplies {
				if id := history.QueueID(t); id != "" {
					ids = append(ids, id)
				}
			}
			rec.QueueID = strings.Join(ids, " ")
			rec.HopReply = strings.Join(e.lastHopReplies, " | ")
		}
	}
	h.Record(rec)
	if r.Code >= 400 {
		c.wmu.Lock()
		if c.recorded == nil {
			c.recorded = map[*policy.Reply]int{}
		}
		c.recorded[r]++
		c.wmu.Unlock()
	}
}

// recordReplyLocked records a reply of 400 or more that no decision
// recorded (AUTH, a bad HELO, a command out of sequence, the error limit,
// an idle timeout), as it is written; c.wmu is held.
func (c *conn) recordReplyLocked(r *policy.Reply, verb string) {
	h := c.gen.cfg.History
	if h == nil || r.Code < 400 {
		return
	}
	if c.recorded[r] > 0 {
		c.recorded[r]--
		return
	}
	check := "protocol"
	switch verb {
	case "AUTH":
		check = "auth"
	case "":
		verb = "session"
	}
	h.Record(c.newRecord(strings.ToLower(verb), check, r, ""))
}
