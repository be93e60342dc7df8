package history

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// jsonMarshal is the stored form as encoding/json gives it, the format
// appendJSON must keep.
func jsonMarshal(t testing.TB, r *Record) []byte {
	b, err := json.Marshal(wire{T: r.Time.UnixNano(), Record: *r})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendJSONIsJSONMarshal: the hand-written encoder writes the bytes
// encoding/json wrote before it, for every field empty or set, and for
// every string an attacker could send (quotes, backslashes, CR/LF, NUL and
// other controls, HTML characters, invalid UTF-8, U+2028/2029, non-ASCII).
func TestAppendJSONIsJSONMarshal(t *testing.T) {
	nasty := []string{
		"", "plain", `"quoted" \back\slash`, "CR\rLF\nTAB\tNUL\x00BS\bFF\fDEL\x7f\x1f",
		"<script>&amp;</script>", "bad\xff\xfeutf8\xc3", "\u2028line\u2029para", "日本語 é ✓ 𝄞",
		"trailing\\", "\xed\xa0\x80 surrogate",
	}
	full := Record{
		Time: time.Unix(1700000000, 123456789), Gateway: "mx.campus.test", Listener: "smtp",
		Session: "a1b2", Client: "192.0.2.1", Helo: "h", Stage: "rcpt", From: "f@x", To: []string{"a@b", "c@d"},
		Check: "dnsbl", Code: 554, Reply: "554 5.7.1 no", Reason: "listed", NextHop: "hop", QueueID: "Q1",
		HopReply: "250 ok", MsgID: "<m@x>", Size: 1234, TLS: "TLS 1.3", User: "alice",
	}
	recs := []Record{{}, {Time: time.Unix(0, -5)}, {To: []string{}}, full}
	for _, s := range nasty {
		r := full
		r.Gateway, r.Listener, r.Session, r.Client, r.Helo, r.Stage, r.From = s, s, s, s, s, s, s
		r.To = []string{s, s + "x"}
		r.Check, r.Reply, r.Reason, r.NextHop, r.QueueID, r.HopReply, r.MsgID, r.TLS, r.User = s, s, s, s, s, s, s, s, s
		r.Code, r.Size = -1, -7
		recs = append(recs, r)
	}
	for i := range recs {
		want := jsonMarshal(t, &recs[i])
		if got := recs[i].appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// FuzzAppendJSON: for any string in any field, appendJSON writes what
// json.Marshal writes.
func FuzzAppendJSON(f *testing.F) {
	for _, s := range []string{"", "a", "<\x00\xff\u2028\"\\"} {
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		r := Record{Time: time.Unix(0, n), Helo: s, To: []string{s}, Reply: s, Size: n, Code: int(n)}
		if got, want := r.appendJSON(nil), jsonMarshal(t, &r); !bytes.Equal(got, want) {
			t.Errorf("got %s\nwant %s", got, want)
		}
	})
}
