package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
)

// An abandoned transaction (the client left, a recipient or the message was
// refused, RSET) ends politely between commands: QUIT without a connection
// cache, RSET and the connection kept with one; never a bare close, which a
// Postfix next hop logs as "lost connection after RCPT". Abort does not wait
// for the next hop's answer.

// holdAt makes a next hop hold its answer to verb until release is closed,
// and says on seen when the verb arrived.
func holdAt(verb string, seen chan<- struct{}, release <-chan struct{}) func(*harness.RawNextHop) {
	return func(h *harness.RawNextHop) {
		h.Reply = func(line string) string {
			if verbOf(line) == verb {
				seen <- struct{}{}
				<-release
			}
			return ""
		}
	}
}

// abortReturns runs Abort and fails the test unless it returns while the
// next hop still holds its answer to verb (Abort must not wait for it),
// then lets the next hop answer.
func abortReturns(t *testing.T, tx Transaction, verb string, seen <-chan struct{}, release chan<- struct{}) {
	t.Helper()
	defer close(release)
	returned := make(chan struct{})
	go func() {
		tx.Abort()
		close(returned)
	}()
	// The next hop holds its answer until release: an Abort that waited
	// for it would not return here.
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatalf("Abort waited for the next hop's answer to %s", verb)
	}
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after Abort", verb)
	}
}

// Without a connection cache: QUIT after the last RCPT, nothing else.
func TestAbortAfterRcptQuits(t *testing.T) {
	seen, release := make(chan struct{}, 1), make(chan struct{})
	h := startHop(t, holdAt("QUIT", seen, release))
	tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
	abortReturns(t, tx, "QUIT", seen, release)
	got := transcript(t, h)
	if !strings.HasSuffix(got, "RCPT TO:<"+recipient.String()+">\r\nQUIT\r\n") {
		t.Errorf("transcript %q: want QUIT right after the RCPT", got)
	}
}

// With the connection cache: RSET, and the connection carries the next
// transaction; the abandoned recipient gets nothing.
func TestAbortAfterRcptResetsForReuse(t *testing.T) {
	seen, release := make(chan struct{}, 1), make(chan struct{})
	h := startHop(t, holdAt("RSET", seen, release))
	r := cachingRouter(ConnectionCache{IdleTime: time.Minute}, smtpHop(t, h.Addr))
	defer r.Close()
	tx := beginRcpt(t, r, Envelope{From: sender})
	abortReturns(t, tx, "RSET", seen, release)
	if !h.WaitLine("RSET", 10*time.Second) {
		t.Fatal("no RSET")
	}
	// The connection reaches the cache once RSET's reply is read; a
	// transaction begun before would find the cache empty and dial (still
	// correct, only not reused). No signal says when: the cache is polled.
	hops, err := r.Hops(context.Background(), 0, "campus.test")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.connCache().idleCount(r.hopKey(hops[0])) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reset connection never reached the cache")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sendOne(t, r, "next")
	if n := h.Sessions(); n != 1 {
		t.Errorf("%d connections, want 1: the reset one carries the next message", n)
	}
	msgs := h.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 {
		t.Fatalf("messages %+v, want the next one only", msgs)
	}
	if got := h.Transcripts()[0]; !strings.Contains(got, "RCPT TO:<"+recipient.String()+">\r\nRSET\r\n") {
		t.Errorf("transcript %q: want RSET right after the abandoned RCPT", got)
	}
}

// After the next hop refused the message at the final dot, the connection
// is between transactions again: Abort ends it with QUIT, not a close.
func TestAbortAfterRefusedDataQuits(t *testing.T) {
	h := startHop(t, replyAt(".", "554 5.7.1 no"))
	tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
	wantReply(t, tx.Data(context.Background(), strings.NewReader(testMessage)), 554, [3]int{5, 7, 1})
	tx.Abort()
	if got := transcript(t, h); !strings.HasSuffix(got, "\r\n.\r\nQUIT\r\n") {
		t.Errorf("transcript %q: want QUIT after the refused data", got)
	}
}

// Abort while a command waits for the next hop, or during the data, still
// closes at once: the connection's state is not known, and a DATA ends only
// with its dot, which must not go.
func TestAbortMidCommandCloses(t *testing.T) {
	seen, release := make(chan struct{}, 1), make(chan struct{})
	h := startHop(t, holdAt("RCPT", seen, release))
	tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tx.Rcpt(context.Background(), recipient, RcptDSN{}) }()
	<-seen
	tx.Abort()
	err = <-done
	close(release)
	if err == nil {
		t.Fatal("RCPT succeeded after Abort")
	}
	got := transcript(t, h)
	if strings.Contains(got, "QUIT") || strings.Contains(got, "RSET") {
		t.Errorf("transcript %q: a command was sent over a connection with a command in flight", got)
	}
}

// A next hop that refuses the call-ahead with a reply (to EHLO or MAIL, or a
// SIZE below the message's) gets QUIT before the connection is closed; one
// that says 421 is left as it is, and so is a refused greeting (go-smtp
// closes the connection itself then).
func TestRefusedCallAheadQuits(t *testing.T) {
	cases := []struct {
		name string
		hop  func(*harness.RawNextHop)
		env  Envelope
		quit bool
	}{
		{"greeting 554", greeting("554 5.3.2 go away"), Envelope{From: sender}, false},
		{"EHLO 550", replyAt("EHLO", "550 5.7.1 not you"), Envelope{From: sender}, true},
		{"MAIL 550", replyAt("MAIL", "550 5.7.1 sender refused"), Envelope{From: sender}, true},
		{"MAIL 451", replyAt("MAIL", "451 4.3.0 try later"), Envelope{From: sender}, true},
		{"SIZE below the message's", offering("SIZE 1000"), Envelope{From: sender, Size: 5000}, true},
		{"greeting 421", greeting("421 4.3.2 busy"), Envelope{From: sender}, false},
		{"MAIL 421", replyAt("MAIL", "421 4.3.2 shutting down"), Envelope{From: sender}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := startHop(t, c.hop)
			if _, err := begin(t, newRouter(smtpHop(t, h.Addr)), c.env); err == nil {
				t.Fatal("Begin succeeded")
			}
			got := transcript(t, h)
			if strings.HasSuffix(got, "QUIT\r\n") != c.quit {
				t.Errorf("transcript %q: QUIT at the end %v, want %v", got, !c.quit, c.quit)
			}
		})
	}
}
