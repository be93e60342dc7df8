// Package history is sekisho's decision history (DESIGN.md §6, `sekisho
// history`): one Record per decision the gateway takes on a recipient or a
// message, and per session refused before MAIL (pregreet, DNSBL, AUTH);
// the Recorder that writes them to the state store in batches, off the
// session's path; the search behind `sekisho history` and the /history
// page. The store's layouts are greylist.History (a bounded log in the
// bbolt file, a stream per day on Redis). What is kept, and for how long,
// is docs/history.md.
package history

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Record is one decision. Never the subject, nor any other header field
// than the Message-ID.
type Record struct {
	// Time is when the decision was taken (stored as Unix nanoseconds,
	// the record's first field: greylist.History's Redis layout reads it).
	Time     time.Time `json:"-"`
	Gateway  string    `json:"gw,omitempty"`  // hostname of the gateway
	Listener string    `json:"l,omitempty"`   // smtp, lmtp, submission, submissions
	Session  string    `json:"s,omitempty"`   // session id, as in the log
	Client   string    `json:"ip,omitempty"`  // client address
	Helo     string    `json:"h,omitempty"`   // HELO/EHLO argument
	Stage    string    `json:"st,omitempty"`  // connect, auth, mail, rcpt, data, session
	From     string    `json:"f,omitempty"`   // envelope sender ("" is <>)
	To       []string  `json:"to,omitempty"`  // the recipient; for the data, every recipient of the message
	Check    string    `json:"c,omitempty"`   // the check or rule that decided; "" when all passed
	Code     int       `json:"code"`          // reply code
	Reply    string    `json:"r,omitempty"`   // the whole reply as the client got it
	Reason   string    `json:"why,omitempty"` // the reason in the log
	NextHop  string    `json:"hop,omitempty"` // next hop(s)
	QueueID  string    `json:"qid,omitempty"` // the next hop's queue id, from its reply to the data
	HopReply string    `json:"hr,omitempty"`  // the next hop's reply to the data
	MsgID    string    `json:"mid,omitempty"` // Message-ID
	Size     int64     `json:"sz,omitempty"`  // message size in bytes, as received
	TLS      string    `json:"tls,omitempty"` // the client connection's TLS version, "" in clear
	User     string    `json:"u,omitempty"`   // the authenticated user (submission)

	// Set on the session's path instead of Client, Reply and To, so that
	// it allocates nothing there: the recorder turns them into those
	// fields when it writes the batch, off the path.
	ClientAddr netip.Addr   `json:"-"`
	ReplyOf    fmt.Stringer `json:"-"`
	Rcpt       string       `json:"-"`
}

// resolve fills Client, Reply and To from ClientAddr, ReplyOf and Rcpt.
func (r *Record) resolve() {
	if r.Client == "" && r.ClientAddr.IsValid() {
		r.Client = r.ClientAddr.String()
	}
	if r.Reply == "" && r.ReplyOf != nil {
		r.Reply = r.ReplyOf.String()
	}
	if r.Rcpt != "" && len(r.To) == 0 {
		r.To = []string{r.Rcpt}
	}
	r.ClientAddr, r.ReplyOf, r.Rcpt = netip.Addr{}, nil, ""
}

// Outcome is accepted (2xx and 3xx), deferred (4xx) or refused (5xx).
func (r *Record) Outcome() string {
	switch {
	case r.Code >= 500:
		return "refused"
	case r.Code >= 400:
		return "deferred"
	}
	return "accepted"
}

// wire is Record with the time first, in nanoseconds: the stored form,
// which Unmarshal reads and appendJSON writes.
type wire struct {
	T int64 `json:"t"`
	Record
}

// Marshal encodes r for the store: JSON, the fields of wire (appendJSON).
func (r *Record) Marshal() ([]byte, error) {
	return r.appendJSON(nil), nil
}

// Unmarshal decodes a stored record.
func Unmarshal(b []byte) (Record, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Record{}, err
	}
	w.Record.Time = time.Unix(0, w.T)
	return w.Record, nil
}

// The queue id in a next hop's 250 reply to the data: Postfix "queued as
// 4Fxyz", Exim "id=1rABCD-000123-Xy", Sendmail "Message accepted for
// delivery" has "<id> Message accepted", qmail "ok 1700000000 qp 1234",
// Dovecot's LMTP "<user@campus> 8Oj3AbC+ZmW0GgAA Saved".
var queueIDPatterns = []*regexp.Regexp{
	regexp.MustCompile(`<[^>]*> ([A-Za-z0-9+/]{6,64}) Saved`),
	regexp.MustCompile(`(?i)\bqueued as ([A-Za-z0-9][A-Za-z0-9._:-]{0,63})`),
	regexp.MustCompile(`(?i)\bid=([A-Za-z0-9][A-Za-z0-9._:-]{0,63})`),
	regexp.MustCompile(`(?i)\b([A-Za-z0-9]{6,32}) Message accepted for delivery`),
	regexp.MustCompile(`(?i)\bok (\d+ qp \d+)`),
}

// QueueID reads the next hop's queue id from its reply text to the data
// (the text after the code and enhanced code); "" when it names none.
func QueueID(text string) string {
	for _, re := range queueIDPatterns {
		if m := re.FindStringSubmatch(text); m != nil {
			return m[1]
		}
	}
	return ""
}

// MessageID is the Message-ID of a raw header section (CRLF line endings),
// unfolded and trimmed, at most 250 bytes; "" when there is none.
func MessageID(header []byte) string {
	lines := strings.Split(string(header), "\n")
	for i := 0; i < len(lines); i++ {
		name, val, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "Message-ID") {
			continue
		}
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			val += lines[i]
		}
		v := strings.Join(strings.Fields(val), " ")
		if len(v) > 250 {
			v = v[:250]
		}
		return v
	}
	return ""
}
