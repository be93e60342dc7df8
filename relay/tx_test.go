package relay

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// Only a next hop's reply to RCPT or to the data is its verdict on this
// mail: its class is passed on (5xx stays 5xx, 4xx stays 4xx), with the
// enhanced code kept when its class agrees. A 421 is the next hop closing
// its channel, not a verdict: 451 4.4.2, and the transaction is over.
func TestRcptAndDataRepliesPassedOn(t *testing.T) {
	cases := []struct {
		name     string
		verb     string // the next hop answers this command ("." the final dot)
		reply    string // with this
		code     int
		enhanced [3]int
	}{
		{"RCPT 550", "RCPT", "550 5.1.1 no such user", 550, [3]int{5, 1, 1}},
		{"RCPT 450", "RCPT", "450 4.2.1 mailbox busy", 450, [3]int{4, 2, 1}},
		{"RCPT 552 bad enhanced", "RCPT", "552 4.2.2 over quota", 552, [3]int{5, 0, 0}},
		{"RCPT 421", "RCPT", "421 4.3.2 shutting down", 451, [3]int{4, 4, 2}},
		{"DATA 554", "DATA", "554 5.5.1 no valid recipients", 554, [3]int{5, 5, 1}},
		{"dot 554", ".", "554 5.7.1 spam", 554, [3]int{5, 7, 1}},
		{"dot 452", ".", "452 4.3.1 disk full", 452, [3]int{4, 3, 1}},
		{"dot 421", ".", "421 4.3.2 bye", 451, [3]int{4, 4, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := startHop(t, replyAt(c.verb, c.reply))
			tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
			if err != nil {
				t.Fatal(err)
			}
			err = tx.Rcpt(context.Background(), recipient, RcptDSN{})
			if strings.HasPrefix(c.name, "RCPT") {
				wantReply(t, err, c.code, c.enhanced)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = tx.Data(context.Background(), strings.NewReader(testMessage))
			wantReply(t, err, c.code, c.enhanced)
		})
	}
}

// After the connection broke, every later command fails with 451 4.4.2
// without touching the network.
func TestBrokenTransactionStaysBroken(t *testing.T) {
	h := startHop(t, replyAt("RCPT", harness.HangUp))
	tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	err = tx.Rcpt(context.Background(), recipient, RcptDSN{})
	wantReply(t, err, 451, [3]int{4, 4, 2})
	err = tx.Rcpt(context.Background(), mailaddr.Address{Local: "carol", Domain: "campus.test"}, RcptDSN{})
	wantReply(t, err, 451, [3]int{4, 4, 2})
	err = tx.Data(context.Background(), strings.NewReader(testMessage))
	wantReply(t, err, 451, [3]int{4, 4, 2})
	tx.Close()
}

// Every address goes out in RFC 5321 §4.1.2 wire form: a local part that is
// not a dot-string is quoted, so it stays one path and cannot add
// parameters. Read from the exact lines the next hop received.
func TestAddressesQuotedOnTheWire(t *testing.T) {
	h := startHop(t)
	from := mailaddr.Address{Local: "boss@campus.zz> RET=HDRS ENVID=x", Domain: "sender1.zz"}
	tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: from})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []mailaddr.Address{
		{Local: "a b", Domain: "x"},
		{Local: `say "hi"`, Domain: "campus.test"},
		{Local: "plain.user", Domain: "campus.test"},
	} {
		if err := tx.Rcpt(context.Background(), to, RcptDSN{}); err != nil {
			t.Fatal(err)
		}
	}
	tx.Close()
	got := transcript(t, h)
	for _, line := range []string{
		"\r\nMAIL FROM:<\"boss@campus.zz> RET=HDRS ENVID=x\"@sender1.zz>\r\n",
		"\r\nRCPT TO:<\"a b\"@x>\r\n",
		"\r\nRCPT TO:<\"say \\\"hi\\\"\"@campus.test>\r\n",
		"\r\nRCPT TO:<plain.user@campus.test>\r\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("next hop did not receive %q; transcript:\n%s", line, got)
		}
	}
}

// The null reverse-path goes out as MAIL FROM:<>.
func TestNullSender(t *testing.T) {
	h := startHop(t)
	tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if got := transcript(t, h); !strings.Contains(got, "\r\nMAIL FROM:<>\r\n") {
		t.Errorf("transcript %q has no MAIL FROM:<>", got)
	}
}

// Our EHLO (LHLO towards LMTP) name is Router.Hostname.
func TestEHLOIsHostname(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		h := startHop(t, func(h *harness.RawNextHop) { h.LMTP = lmtp })
		nh := smtpHop(t, h.Addr)
		if lmtp {
			nh = mustHop(t, "lmtp://"+h.Addr)
		}
		r := newRouter(nh)
		r.Hostname = "relay7.campus.test"
		tx, err := begin(t, r, Envelope{From: sender})
		if err != nil {
			t.Fatal(err)
		}
		tx.Close()
		want := "EHLO relay7.campus.test\r\n"
		if lmtp {
			want = "LHLO relay7.campus.test\r\n"
		}
		if got := transcript(t, h); !strings.HasPrefix(got, want) {
			t.Errorf("lmtp=%v: transcript starts %q, want %q", lmtp, got, want)
		}
	}
}

// Data returns as soon as the next hop said 250 to the final dot; QUIT is
// Close's business (a next hop that never answers QUIT cannot delay the
// client's 250), and Close itself is bounded.
func TestDataReturnsBeforeQuit(t *testing.T) {
	h := startHop(t, replyAt("QUIT", harness.Silence))
	r := newRouter(smtpHop(t, h.Addr))
	r.Timeouts.Command = 500 * time.Millisecond
	tx := beginRcpt(t, r, Envelope{From: sender})
	done := make(chan error, 1)
	go func() { done <- tx.Data(context.Background(), strings.NewReader(testMessage)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Data: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Data did not return after the next hop's 250")
	}
	if strings.Contains(strings.Join(h.Transcripts(), ""), "QUIT") {
		t.Fatal("Data sent QUIT")
	}
	start := time.Now()
	tx.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close waited %v for a silent QUIT", d)
	}
	waitAt(t, h, "QUIT")
	got := transcript(t, h)
	if !strings.Contains(got, "\r\n.\r\nQUIT\r\n") {
		t.Errorf("transcript does not end with the dot then QUIT: %q", got)
	}
}

// A happy path against a real SMTP server (go-smtp), with zero Timeouts:
// the defaults apply (go-smtp alone would take a zero command timeout as
// already expired).
func TestDeliverToRealServerWithDefaultTimeouts(t *testing.T) {
	nh := harness.StartNextHop(t, false)
	r := newRouter(mustHop(t, "smtp://"+nh.Addr))
	r.Timeouts = Timeouts{}
	tx, err := begin(t, r, Envelope{From: sender, Size: int64(len(testMessage))})
	if err != nil {
		t.Fatal(err)
	}
	if tx.LMTP() {
		t.Error("SMTP next hop reports LMTP")
	}
	for _, to := range []mailaddr.Address{recipient, {Local: "carol", Domain: "campus.test"}} {
		if err := tx.Rcpt(context.Background(), to, RcptDSN{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	msgs := nh.Messages()
	if len(msgs) != 1 || msgs[0].From != sender.String() || len(msgs[0].To) != 2 || string(msgs[0].Data) != testMessage {
		t.Fatalf("next hop has %+v", msgs)
	}
}

// A failing reader (the client side broke, or a check refused the data)
// ends the transfer without the final dot: the next hop discards it. The
// reader's own error (with its reply) is returned. io.ErrUnexpectedEOF is
// a failure too, not the end of a short message (copyData fills whole
// buffers, which io.ReadFull would have confused).
func TestDataReaderErrorNeverSendsDot(t *testing.T) {
	for _, readerErr := range []error{policy.BareLineEnding, io.ErrUnexpectedEOF} {
		h := startHop(t)
		tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
		msg := io.MultiReader(strings.NewReader(testMessage), errReader{readerErr})
		err := tx.Data(context.Background(), msg)
		if !errors.Is(err, readerErr) {
			t.Fatalf("Data returned %v, want the reader's error %v", err, readerErr)
		}
		got := transcript(t, h) // Data dropped the connection
		if !strings.Contains(got, "\r\nDATA\r\n") || strings.Contains(got, "\r\n.\r\n") {
			t.Errorf("reader error %v: transcript %q: want DATA and no final dot", readerErr, got)
		}
		tx.Close()
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// Abort mid-data (from another goroutine) drops the connection without the
// dot, and Data fails.
func TestAbortDuringData(t *testing.T) {
	h := startHop(t)
	tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- tx.Data(context.Background(), pr) }()
	pw.Write([]byte("Subject: x\r\n\r\nfirst part\r\n")) // returns once Data has read it
	waitAt(t, h, "DATA")
	tx.Abort()
	pw.Write([]byte("rest\r\n"))
	pw.Close()
	if err := <-done; err == nil {
		t.Fatal("Data succeeded after Abort")
	}
	if got := transcript(t, h); strings.Contains(got, "\r\n.\r\n") {
		t.Errorf("the final dot was sent after Abort: %q", got)
	}
	tx.Close() // after Abort: nothing, and no panic
}
