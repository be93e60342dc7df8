package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// Mirror routes (mode all, mirror.go): every next hop gets the same
// transaction; the client hears 250 only when all said 250.

// mirrorRouter is a router with one catch-all route in mode all.
func mirrorRouter(hops ...NextHop) *Router {
	r := newRouter(hops...)
	r.Routes[0].Mode = ModeAll
	return r
}

// Both next hops get the recipient and byte for byte the same message, and
// the transaction names both.
func TestMirrorBothAccept(t *testing.T) {
	h1, h2 := startHop(t), startHop(t)
	hop1, hop2 := smtpHop(t, h1.Addr), smtpHop(t, h2.Addr)
	tx := beginRcpt(t, mirrorRouter(hop1, hop2), Envelope{From: sender})
	if want := "all of " + hop1.String() + ", " + hop2.String(); tx.Hop() != want {
		t.Errorf("Hop() = %q, want %q", tx.Hop(), want)
	}
	// Larger than one fan-out chunk, so that the message goes out in
	// several steps.
	msg := testMessage + strings.Repeat("a line of the body of the message\r\n", 4000)
	if err := tx.Data(context.Background(), strings.NewReader(msg)); err != nil {
		t.Fatalf("Data: %v", err)
	}
	tx.Close()
	m1, m2 := h1.Messages(), h2.Messages()
	if len(m1) != 1 || len(m2) != 1 {
		t.Fatalf("messages: %d and %d, want 1 each", len(m1), len(m2))
	}
	if string(m1[0].Unstuffed()) != msg || !bytes.Equal(m1[0].Wire, m2[0].Wire) {
		t.Errorf("the next hops got different bytes (%d and %d), or not the message", len(m1[0].Wire), len(m2[0].Wire))
	}
	for _, m := range []harness.RawMessage{m1[0], m2[0]} {
		if len(m.To) != 1 || m.To[0] != recipient.String() {
			t.Errorf("recipients %q, want [%s]", m.To, recipient)
		}
	}
}

// One next hop refuses a recipient: the client gets that refusal, and the
// next hop that had accepted it begins its transaction again without it
// (RSET), so that the next recipient, which both accept, is the only one
// either delivers to.
func TestMirrorRcptRefused(t *testing.T) {
	for _, c := range []struct {
		reply    string
		code     int
		enhanced [3]int
	}{
		{"550 5.1.1 no such user", 550, [3]int{5, 1, 1}},
		{"450 4.2.1 mailbox busy", 450, [3]int{4, 2, 1}},
	} {
		t.Run(c.reply[:3], func(t *testing.T) {
			h1 := startHop(t)
			h2 := startHop(t, func(h *harness.RawNextHop) {
				h.Reply = func(line string) string {
					if strings.HasPrefix(line, "RCPT TO:<"+recipient.String()+">") {
						return c.reply
					}
					return ""
				}
			})
			tx, err := begin(t, mirrorRouter(smtpHop(t, h1.Addr), smtpHop(t, h2.Addr)), Envelope{From: sender})
			if err != nil {
				t.Fatal(err)
			}
			err = tx.Rcpt(context.Background(), recipient, RcptDSN{})
			wantReply(t, err, c.code, c.enhanced)
			carol := mailaddr.Address{Local: "carol", Domain: "campus.test"}
			if err := tx.Rcpt(context.Background(), carol, RcptDSN{}); err != nil {
				t.Fatalf("second recipient: %v", err)
			}
			if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
				t.Fatalf("Data: %v", err)
			}
			tx.Close()
			for i, h := range []*harness.RawNextHop{h1, h2} {
				m := h.Messages()
				if len(m) != 1 || len(m[0].To) != 1 || m[0].To[0] != carol.String() {
					t.Errorf("next hop %d delivered %+v, want one message to %s only", i+1, m, carol)
				}
			}
			if !strings.Contains(transcript(t, h1), "RSET") {
				t.Errorf("the next hop that accepted the refused recipient was not reset: %q", transcript(t, h1))
			}
		})
	}
}

// The rule for the one reply of a mirror: any temporary failure wins (the
// first in the order of the next hops), else the first permanent one;
// next hops the mirror abandoned itself do not count.
func TestMirrorVerdict(t *testing.T) {
	e550 := fmt.Errorf("%w", policy.FromNextHop(550, [3]int{5, 1, 1}, "no such user"))
	e554 := fmt.Errorf("%w", policy.FromNextHop(554, [3]int{5, 7, 1}, "spam"))
	e450 := fmt.Errorf("%w", policy.FromNextHop(450, [3]int{4, 2, 1}, "busy"))
	lost := fmt.Errorf("%w (x)", policy.NextHopLost)
	o := func(err error) hopOutcome {
		if err == nil {
			return hopOutcome{hop: "h"}
		}
		return hopOutcome{hop: "h", err: err, reply: policy.FromError(err)}
	}
	stopped := o(lost)
	stopped.stopped = true
	cases := []struct {
		name string
		in   []hopOutcome
		want int // 0: nil
	}{
		{"all accept", []hopOutcome{o(nil), o(nil)}, 0},
		{"one 550", []hopOutcome{o(nil), o(e550)}, 550},
		{"550 then 450", []hopOutcome{o(e550), o(e450)}, 450},
		{"550 then lost", []hopOutcome{o(e550), o(lost)}, 451},
		{"554 then 550", []hopOutcome{o(e554), o(e550)}, 554},
		{"550 and an abandoned one", []hopOutcome{stopped, o(e550)}, 550},
	}
	for _, c := range cases {
		err := mirrorVerdict(c.in)
		switch {
		case c.want == 0 && err != nil:
			t.Errorf("%s: %v, want nil", c.name, err)
		case c.want != 0 && (err == nil || policy.FromError(err).Code != c.want):
			t.Errorf("%s: %v, want %d", c.name, err, c.want)
		}
	}
}

// A next hop that is down, or cannot take the mail, fails the mirror's
// call-ahead: 451 4.4.1 for the one that is down (a 4xx, never a 5xx for
// an infrastructure failure), the next hop's certain 5xx for a SIZE it
// announced too small; the next hop that worked is abandoned before any
// recipient.
func TestMirrorBeginOneFails(t *testing.T) {
	up := startHop(t)
	down := startHop(t)
	down.Close()
	_, err := begin(t, mirrorRouter(smtpHop(t, up.Addr), smtpHop(t, down.Addr)), Envelope{From: sender})
	wantReply(t, err, 451, [3]int{4, 4, 1})
	if !strings.Contains(err.Error(), down.Addr) {
		t.Errorf("error %q does not name the next hop that is down", err)
	}
	// The next hop that is down may stop the call-ahead before the working
	// one was even dialled (a refused connection is quick): then it has no
	// connection at all. Each connection it had is ended, without a
	// recipient.
	if n := up.Sessions(); n > 0 && !up.WaitEnded(n, 10*time.Second) {
		t.Fatalf("the working next hop's connection was not ended; transcripts %q", up.Transcripts())
	}
	for _, got := range up.Transcripts() {
		if strings.Contains(got, "RCPT") {
			t.Errorf("the working next hop got a recipient: %q", got)
		}
	}

	small := startHop(t, offering("SIZE 1000"))
	up2 := startHop(t, offering("SIZE 100000"))
	_, err = begin(t, mirrorRouter(smtpHop(t, up2.Addr), smtpHop(t, small.Addr)), Envelope{From: sender, Size: 5000})
	wantReply(t, err, 552, [3]int{5, 3, 4})

	// Down and too small at once: the 4xx wins.
	_, err = begin(t, mirrorRouter(smtpHop(t, small.Addr), smtpHop(t, down.Addr)), Envelope{From: sender, Size: 5000})
	wantReply(t, err, 451, [3]int{4, 4, 1})
}

// A silent next hop costs one call-ahead budget, not more; the other next
// hop's connection is closed.
func TestMirrorBeginBudget(t *testing.T) {
	up := startHop(t)
	silent := harness.StartHoldHop(t, "", false)
	r := mirrorRouter(smtpHop(t, up.Addr), smtpHop(t, silent.Addr))
	r.Timeouts.CallAhead = 2 * time.Second
	start := time.Now()
	_, err := begin(t, r, Envelope{From: sender})
	took := time.Since(start)
	wantReply(t, err, 451, [3]int{4, 4, 1})
	if took > 2*time.Second+3*time.Second {
		t.Errorf("mirror call-ahead took %v with a budget of 2s", took)
	}
	if !up.WaitEnded(1, 10*time.Second) {
		t.Errorf("the working next hop's connection was kept open")
	}
}

// The replies to the final dot disagree: the client gets the refusal (a
// 4xx if it is temporary, the 5xx if permanent), and the next hop that said
// 250 has the message: the duplicate of docs/outbound.md when the client
// retries.
func TestMirrorDataRefusedAtDot(t *testing.T) {
	for _, c := range []struct {
		reply    string
		code     int
		enhanced [3]int
	}{
		{"451 4.3.0 try later", 451, [3]int{4, 3, 0}},
		{"554 5.7.1 spam", 554, [3]int{5, 7, 1}},
	} {
		t.Run(c.reply[:3], func(t *testing.T) {
			h1 := startHop(t)
			h2 := startHop(t, replyAt(".", c.reply))
			tx := beginRcpt(t, mirrorRouter(smtpHop(t, h1.Addr), smtpHop(t, h2.Addr)), Envelope{From: sender})
			err := tx.Data(context.Background(), strings.NewReader(testMessage))
			wantReply(t, err, c.code, c.enhanced)
			if len(h1.Messages()) != 1 || len(h2.Messages()) != 0 {
				t.Errorf("messages %d and %d, want 1 (it said 250 to the dot) and 0", len(h1.Messages()), len(h2.Messages()))
			}
		})
	}
}

// A next hop that fails before the final dot (here: 8-bit data and no
// 8BITMIME, RFC 6152) has the others abandoned without their dot: a failure
// in transit costs no copy anywhere. The client gets that next hop's reply.
func TestMirrorFailureBeforeDotCostsNoCopy(t *testing.T) {
	h1 := startHop(t, offering("8BITMIME"))
	h2 := startHop(t)
	tx := beginRcpt(t, mirrorRouter(smtpHop(t, h1.Addr), smtpHop(t, h2.Addr)), Envelope{From: sender, Body: "8BITMIME"})
	msg := testMessage + strings.Repeat("plain\r\n", 20000) + "caf\xc3\xa9\r\n"
	err := tx.Data(context.Background(), strings.NewReader(msg))
	wantReply(t, err, 554, [3]int{5, 6, 3})
	if !h1.WaitEnded(1, 10*time.Second) {
		t.Fatal("the 8BITMIME next hop's connection was kept open")
	}
	if n := len(h1.Messages()); n != 0 {
		t.Errorf("the next hop that could take the data delivered %d messages, want 0 (abandoned before its dot)", n)
	}
	if strings.HasSuffix(transcript(t, h1), "\r\n.\r\n") {
		t.Errorf("the next hop got the final dot")
	}
}

// A failure to read the message on the client's side abandons every next
// hop and comes back as it is.
// io.ErrUnexpectedEOF from the reader is such a failure too, not the end of
// a short message (the fan-out reads whole chunks with fill, not
// io.ReadFull, which would have confused the two).
func TestMirrorClientReadError(t *testing.T) {
	for _, clientGone := range []error{errors.New("client went away"), io.ErrUnexpectedEOF} {
		h1, h2 := startHop(t), startHop(t)
		tx := beginRcpt(t, mirrorRouter(smtpHop(t, h1.Addr), smtpHop(t, h2.Addr)), Envelope{From: sender})
		msg := io.MultiReader(strings.NewReader(testMessage+strings.Repeat("x\r\n", 30000)), errReader{clientGone})
		if err := tx.Data(context.Background(), msg); !errors.Is(err, clientGone) {
			t.Fatalf("Data: %v, want the read error %v", err, clientGone)
		}
		for i, h := range []*harness.RawNextHop{h1, h2} {
			if !h.WaitEnded(1, 10*time.Second) || len(h.Messages()) != 0 {
				t.Errorf("%v: next hop %d: still open or delivered %d messages", clientGone, i+1, len(h.Messages()))
			}
		}
	}
}

// A Maildir and an SMTP next hop mirrored: both have the message.
func TestMirrorMaildirAndSMTP(t *testing.T) {
	dir := t.TempDir()
	h := startHop(t)
	tx := beginRcpt(t, mirrorRouter(mustHop(t, "maildir:"+dir), smtpHop(t, h.Addr)), Envelope{From: sender})
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
	if len(files) != 1 || len(h.Messages()) != 1 {
		t.Fatalf("maildir %d files, smtp %d messages, want 1 each", len(files), len(h.Messages()))
	}
	b, _ := os.ReadFile(files[0])
	if string(b) != testMessage || string(h.Messages()[0].Unstuffed()) != testMessage {
		t.Errorf("different bytes: maildir %q", b)
	}
}

func TestParseRouteMode(t *testing.T) {
	for s, want := range map[string]RouteMode{"failover": ModeFailover, "all": ModeAll} {
		if m, err := ParseRouteMode(s); err != nil || m != want || m.String() != s {
			t.Errorf("ParseRouteMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseRouteMode("mirror"); err == nil {
		t.Error("mode mirror accepted")
	}
}

// fakeMirrorHop is a next hop of a mirror that reads the whole message and
// then either fails (once fail is closed) or goes to its final dot and
// delivers once the mirror lets it.
type fakeMirrorHop struct {
	whole     chan struct{} // closed when it has the whole message
	fail      chan struct{} // nil: never fails
	delivered atomic.Bool
}

func (f *fakeMirrorHop) data(_ context.Context, msg io.Reader, beforeDot func() error) error {
	io.Copy(io.Discard, msg)
	if f.fail != nil {
		<-f.fail
		return fmt.Errorf("%w (fake next hop lost before its dot)", policy.NextHopLost)
	}
	close(f.whole)
	if err := beforeDot(); err != nil {
		return fmt.Errorf("%w (abandoned: %v)", policy.NextHopLost, err)
	}
	f.delivered.Store(true)
	return nil
}
func (f *fakeMirrorHop) restart(context.Context, []mirrorRcpt) error { return nil }
func (f *fakeMirrorHop) Rcpt(context.Context, mailaddr.Address, RcptDSN) error {
	return nil
}
func (f *fakeMirrorHop) Data(ctx context.Context, msg io.Reader) error {
	return f.data(ctx, msg, func() error { return nil })
}
func (f *fakeMirrorHop) Abort()                    {}
func (f *fakeMirrorHop) Close()                    {}
func (f *fakeMirrorHop) Hop() string               { return "fake" }
func (f *fakeMirrorHop) LMTP() bool                { return false }
func (f *fakeMirrorHop) TLS() *tls.ConnectionState { return nil }

// Every next hop of a mirror waits before its final dot until all have the
// whole message: here the first has it all and the second fails only after
// that (a connection lost in its last write, say). The first is abandoned,
// not delivered: a failure in transit costs no copy.
func TestMirrorBarrierBeforeDots(t *testing.T) {
	a := &fakeMirrorHop{whole: make(chan struct{})}
	b := &fakeMirrorHop{whole: make(chan struct{}), fail: a.whole}
	m := &mirrorTx{r: newRouter(), hops: []mirrorHop{a, b}, t: testTimeouts.withDefaults()}
	err := m.Data(context.Background(), strings.NewReader(testMessage))
	wantReply(t, err, 451, [3]int{4, 4, 2})
	if a.delivered.Load() {
		t.Error("the next hop that had the whole message delivered it though the other failed before its dot")
	}
}
