package history

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"sekisho/greylist"
)

func TestQueueID(t *testing.T) {
	for text, want := range map[string]string{
		"2.0.0 Ok: queued as 4FQ1XYZ":                      "4FQ1XYZ", // Postfix
		"Ok: queued as 4Fxyz12Ab":                          "4Fxyz12Ab",
		"OK id=1rABCD-000123-Xy":                           "1rABCD-000123-Xy", // Exim
		"2.0.0 4B7LmN012345 Message accepted for delivery": "4B7LmN012345",     // Sendmail
		"ok 1700000000 qp 1234":                            "1700000000 qp 1234",
		"2.0.0 <alice@campus.test> 8Oj3AbC+ZmW0GgAA Saved": "8Oj3AbC+ZmW0GgAA", // Dovecot LMTP
		"2.0.0 ok":           "",
		"queued as <script>": "",
		"2.0.0 Ok: queued as 4FQ1\r\nX-Injected: yes": "4FQ1",
		"2.0.0 Ok: queued as ABC\x00DEF":              "ABC",
		"2.0.0 Ok: queued as ":                        "",
	} {
		if got := QueueID(text); got != want {
			t.Errorf("QueueID(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestMessageID(t *testing.T) {
	for hdr, want := range map[string]string{
		"From: a@b\r\nMessage-ID: <x@y>\r\nSubject: s\r\n":         "<x@y>",
		"message-id:\r\n  <folded@y>\r\nSubject: s\r\n":            "<folded@y>",
		"Subject: Message-ID: <not@this>\r\nX: y\r\n":              "",
		"Subject: s\r\nIn-Reply-To: <a@b>\r\nMessage-Id:<c@d>\r\n": "<c@d>",
	} {
		if got := MessageID([]byte(hdr)); got != want {
			t.Errorf("MessageID(%q) = %q, want %q", hdr, got, want)
		}
	}
}

// TestFilter: -from and -to take an address (any case, with or without
// <>) or @domain (its subdomains too, not a domain that merely ends the
// same); -client an address or a network; -msgid with or without <>.
func TestFilter(t *testing.T) {
	r := Record{From: "Bob@Mail.Example.org", To: []string{"alice@campus.test", "carol@campus.test"},
		Client: "192.0.2.7", MsgID: "<m1@example.org>", Code: 550, Session: "s1"}
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{From: "bob@mail.example.org"}, true},
		{Filter{From: "<BOB@mail.example.org>"}, true},
		{Filter{From: "@example.org"}, true},
		{Filter{From: "@mail.example.org"}, true},
		{Filter{From: "@ample.org"}, false},
		{Filter{From: "@other.org"}, false},
		{Filter{To: "carol@campus.test"}, true},
		{Filter{To: "dave@campus.test"}, false},
		{Filter{Client: "192.0.2.0/24"}, true},
		{Filter{Client: "192.0.2.7"}, true},
		{Filter{Client: "192.0.2.8"}, false},
		{Filter{MsgID: "m1@example.org"}, true},
		{Filter{MsgID: "<m1@example.org>"}, true},
		{Filter{Outcome: "refused"}, true},
		{Filter{Outcome: "deferred"}, false},
		{Filter{Session: "s2"}, false},
		{Filter{From: "@example.org", Outcome: "accepted"}, false},
	} {
		m := matcher{f: c.f}
		if c.f.Client != "" {
			m.client, _ = parseClient(c.f.Client)
		}
		if got := m.match(&r); got != c.want {
			t.Errorf("%+v: %v, want %v", c.f, got, c.want)
		}
	}
	for _, bad := range []Filter{{Outcome: "bounced"}, {Client: "not-an-ip"}, {Limit: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validates", bad)
		}
	}
}

type failingStore struct{ greylist.History }

func (failingStore) AppendHistory(context.Context, []greylist.HistoryEntry, greylist.HistoryLimits) error {
	return errors.New("connection refused")
}

// TestRecorderLosesRecordsNotTime: a store that fails loses the batch,
// counted; a full buffer drops the record, counted; Record returns at once
// either way. Records written are found by Search, newest first, with the
// queue id and without anything that is not in Record.
func TestRecorderLosesRecordsNotTime(t *testing.T) {
	r := NewRecorder(failingStore{}, Options{FlushInterval: -1, MaxPending: 2})
	for i := 0; i < 3; i++ {
		r.Record(Record{Code: 250})
	}
	if r.Lost() != 1 {
		t.Errorf("a full buffer: %d lost, want 1", r.Lost())
	}
	if err := r.Flush(context.Background()); err == nil {
		t.Error("a failing store: Flush said nil")
	}
	if r.Lost() != 3 || r.Written() != 0 {
		t.Errorf("after a failed flush: lost %d written %d, want 3, 0", r.Lost(), r.Written())
	}

	s, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r = NewRecorder(s, Options{FlushInterval: -1})
	now := time.Now()
	r.Record(Record{Time: now.Add(-2 * time.Second), From: "a@example.org", Code: 451, Check: "greylist"})
	r.Record(Record{Time: now.Add(-time.Second), From: "a@example.org", Code: 250, Stage: "data", QueueID: "4FQ1"})
	r.Record(Record{Time: now, From: "b@example.org", Code: 550})
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := Search(context.Background(), s, Filter{From: "a@example.org"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].QueueID != "4FQ1" || got[1].Check != "greylist" || !got[0].Time.Equal(now.Add(-time.Second)) {
		t.Errorf("search: %+v", got)
	}
}

// TestLineIsOneInertLine: sekisho history's text line of a record whose
// fields hold CR, LF, ESC and NUL is one line with those shown as \xNN.
func TestLineIsOneInertLine(t *testing.T) {
	r := Record{Time: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC), Gateway: "mx1", Listener: "smtp", Session: "s1",
		Client: "192.0.2.1", Stage: "rcpt", From: "a\r\nb@x", To: []string{"\x1b[31mred@campus.test"}, Check: "relay",
		Code: 554, Reply: "554 5.7.1 relay access denied", Helo: "h\x00", QueueID: "Q1", Reason: "why\nnot"}
	got := Line(&r)
	want := `2026-12-07T03:00:00Z mx1 smtp s1 192.0.2.1 rcpt <a\x0d\x0ab@x> -> <\x1b[31mred@campus.test> relay refused 554 5.7.1 relay access denied queue_id=Q1 helo=h\x00 reason="why\nnot"`
	if got != want {
		t.Errorf("Line:\n%s\nwant\n%s", got, want)
	}
}
