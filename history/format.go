package history

import (
	"fmt"
	"strings"
	"time"
)

// JSONRecord is a record as `sekisho history -format json` prints it and
// the control socket answers: every field by its full name.
type JSONRecord struct {
	Time     string   `json:"time"` // RFC 3339 with nanoseconds, UTC
	Gateway  string   `json:"gateway"`
	Listener string   `json:"listener"`
	Session  string   `json:"session"`
	Client   string   `json:"client"`
	Helo     string   `json:"helo"`
	Stage    string   `json:"stage"`
	From     string   `json:"from"`
	To       []string `json:"to"`
	Check    string   `json:"check"`
	Outcome  string   `json:"outcome"`
	Code     int      `json:"code"`
	Reply    string   `json:"reply"`
	Reason   string   `json:"reason"`
	NextHop  string   `json:"next_hop"`
	QueueID  string   `json:"queue_id"`
	HopReply string   `json:"next_hop_reply"`
	MsgID    string   `json:"message_id"`
	Size     int64    `json:"size"`
	TLS      string   `json:"tls"`
	User     string   `json:"user"`
}

// ToJSON converts records for printing or for the control socket.
func ToJSON(recs []Record) []JSONRecord {
	out := make([]JSONRecord, len(recs))
	for i, r := range recs {
		to := r.To
		if to == nil {
			to = []string{}
		}
		out[i] = JSONRecord{Time: r.Time.UTC().Format(time.RFC3339Nano), Gateway: r.Gateway, Listener: r.Listener,
			Session: r.Session, Client: r.Client, Helo: r.Helo, Stage: r.Stage, From: r.From, To: to,
			Check: r.Check, Outcome: r.Outcome(), Code: r.Code, Reply: r.Reply, Reason: r.Reason,
			NextHop: r.NextHop, QueueID: r.QueueID, HopReply: r.HopReply, MsgID: r.MsgID, Size: r.Size, TLS: r.TLS, User: r.User}
	}
	return out
}

// FromJSON is ToJSON's inverse.
func FromJSON(js []JSONRecord) []Record {
	out := make([]Record, len(js))
	for i, j := range js {
		t, _ := time.Parse(time.RFC3339Nano, j.Time)
		out[i] = Record{Time: t, Gateway: j.Gateway, Listener: j.Listener, Session: j.Session, Client: j.Client,
			Helo: j.Helo, Stage: j.Stage, From: j.From, To: j.To, Check: j.Check, Code: j.Code, Reply: j.Reply,
			Reason: j.Reason, NextHop: j.NextHop, QueueID: j.QueueID, HopReply: j.HopReply, MsgID: j.MsgID,
			Size: j.Size, TLS: j.TLS, User: j.User}
	}
	return out
}

// inert makes attacker-chosen text one printable line: control characters
// (CR, LF, ESC: a terminal's escape sequences) are shown as \xNN.
func inert(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			fmt.Fprintf(&b, `\x%02x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Line is a record as one line of `sekisho history`: time, gateway,
// session, client, from → to, check, reply; then what is known of the
// message (queue id, next hop, Message-ID, size) and the reason.
func Line(r *Record) string {
	from := "<" + r.From + ">"
	to := "<" + strings.Join(r.To, ">,<") + ">"
	if len(r.To) == 0 {
		to = "-"
	}
	check := r.Check
	if check == "" {
		check = "-"
	}
	parts := []string{
		r.Time.UTC().Format("2006-01-02T15:04:05Z"), r.Gateway, r.Listener, r.Session, r.Client,
		r.Stage, from, "->", to, check, r.Outcome(), strings.TrimSpace(r.Reply),
	}
	extra := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	extra("next_hop", r.NextHop)
	extra("queue_id", r.QueueID)
	extra("msgid", r.MsgID)
	if r.Size > 0 {
		extra("size", fmt.Sprint(r.Size))
	}
	extra("helo", r.Helo)
	extra("tls", r.TLS)
	extra("user", r.User)
	if r.Reason != "" {
		parts = append(parts, "reason="+fmt.Sprintf("%q", r.Reason))
	}
	return inert(strings.Join(parts, " "))
}
