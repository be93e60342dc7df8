package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/policy"
)

// Every way a next hop can fail before the transaction is open makes it a
// next hop that does not work: Begin goes on to the next one, and the one
// that works gets the transaction. Each broken hop saw no more than the
// script let it see (no MAIL after a failed EHLO, and so on).
func TestBeginSkipsHopsThatDoNotWork(t *testing.T) {
	cases := []struct {
		name     string
		hop      func(*harness.RawNextHop)
		wantGot  string // the transcript must contain this
		wantNot  string // and must not contain this ("" skips)
		wantText string // the error text names the failure so
	}{
		{"greeting 554", greeting("554 5.3.2 go away"), "", "EHLO", "greeting: 554"},
		{"greeting 421", greeting("421 4.3.2 busy"), "", "EHLO", "greeting: 421"},
		{"greeting 450", greeting("450 4.3.2 later"), "", "EHLO", "greeting: 450"},
		{"EHLO 550", replyAt("EHLO", "550 5.7.1 not you"), "EHLO gw.campus.test\r\n", "MAIL", "EHLO: 550"},
		{"EHLO 421", replyAt("EHLO", "421 4.3.2 closing"), "EHLO", "MAIL", "EHLO: 421"},
		{"closes at EHLO", replyAt("EHLO", harness.HangUp), "EHLO", "MAIL", "EHLO: "},
		{"MAIL 550", replyAt("MAIL", "550 5.7.1 sender refused"), "MAIL FROM:", "RCPT", "MAIL: 550"},
		{"MAIL 451", replyAt("MAIL", "451 4.3.0 try later"), "MAIL FROM:", "RCPT", "MAIL: 451"},
		{"MAIL 421", replyAt("MAIL", "421 4.3.2 shutting down"), "MAIL FROM:", "RCPT", "MAIL: 421"},
		{"closes at MAIL", replyAt("MAIL", harness.HangUp), "MAIL FROM:", "RCPT", "MAIL: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := startHop(t, c.hop)
			good := startHop(t)
			badHop, goodHop := smtpHop(t, bad.Addr), smtpHop(t, good.Addr)
			tx, err := begin(t, newRouter(badHop, goodHop), Envelope{From: sender})
			if err != nil {
				t.Fatalf("Begin: %v", err)
			}
			if tx.Hop() != goodHop.String() {
				t.Fatalf("transaction with %s, want the working %s", tx.Hop(), good.Addr)
			}
			if got := transcript(t, bad); !strings.Contains(got, c.wantGot) || (c.wantNot != "" && strings.Contains(got, c.wantNot)) {
				t.Errorf("failing hop received %q; want %q in it and not %q", got, c.wantGot, c.wantNot)
			}

			// Alone, the same hop gives 451 4.4.1 naming it and why.
			_, err = begin(t, newRouter(badHop), Envelope{From: sender})
			wantReply(t, err, 451, [3]int{4, 4, 1})
			if !strings.Contains(err.Error(), badHop.String()+": "+c.wantText) {
				t.Errorf("error %q does not name %s with %q", err, badHop, c.wantText)
			}
		})
	}
}

// When no next hop works: 451 4.4.1 (so the sender tries our next MX), and
// the error (for the log) lists every next hop tried and why. A 5xx from a
// broken next hop's greeting or MAIL never becomes our 5xx.
func TestBeginNoHopWorks(t *testing.T) {
	refused := mustHop(t, "smtp://"+testenv.FreePort(t)) // nothing listens
	g554 := smtpHop(t, startHop(t, greeting("554 5.3.2 no")).Addr)
	m550 := smtpHop(t, startHop(t, replyAt("MAIL", "550 5.7.1 sender refused")).Addr)
	e421 := smtpHop(t, startHop(t, replyAt("EHLO", "421 4.3.2 closing")).Addr)
	r := newRouter(refused, g554, m550, e421)
	_, err := begin(t, r, Envelope{From: sender})
	wantReply(t, err, 451, [3]int{4, 4, 1})
	for _, want := range []string{
		refused.String() + ": connect:",
		g554.String() + ": greeting: 554",
		m550.String() + ": MAIL: 550",
		e421.String() + ": EHLO: 421",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not list %q:\n%v", want, err)
		}
	}
	// The client's reply text says what kind of failure, not the next
	// hops' own texts.
	if txt := policy.FromError(err).Text; strings.Contains(txt, "go away") || strings.Contains(txt, "sender refused") || strings.Contains(txt, "127.0.0.1") {
		t.Errorf("reply text leaks next hop details: %q", txt)
	}
}

// One budget for the whole call-ahead: next hops that accept TCP and never
// say anything cannot hold the client for longer than Timeouts.CallAhead,
// however long the per-command timeouts are.
func TestCallAheadBudget(t *testing.T) {
	var hops []NextHop
	for range 3 {
		hops = append(hops, smtpHop(t, harness.StartHoldHop(t, "", false).Addr))
	}
	r := newRouter(hops...)
	budget := 500 * time.Millisecond
	r.Timeouts = Timeouts{Connect: time.Minute, Command: time.Minute, Data: time.Minute, CallAhead: budget}
	start := time.Now()
	_, err := begin(t, r, Envelope{From: sender})
	elapsed := time.Since(start)
	wantReply(t, err, 451, [3]int{4, 4, 1})
	if elapsed > budget+3*time.Second {
		t.Errorf("Begin took %v with a budget of %v", elapsed, budget)
	}
	if elapsed < budget-50*time.Millisecond {
		t.Errorf("Begin gave up after %v, before its budget of %v", elapsed, budget)
	}
	for _, h := range hops {
		if !strings.Contains(err.Error(), h.String()+": ") {
			t.Errorf("error does not account for %s: %v", h, err)
		}
	}
	if !strings.Contains(err.Error(), hops[0].String()+": greeting: call-ahead time budget spent") {
		t.Errorf("the first hop's failure is not the budget: %v", err)
	}
	if !strings.Contains(err.Error(), hops[2].String()+": not tried: call-ahead time budget spent") {
		t.Errorf("hops after the budget was spent are not reported as not tried: %v", err)
	}
	if txt := policy.FromError(err).Text; !strings.Contains(txt, "time budget") {
		t.Errorf("reply text %q does not say the time budget was spent", txt)
	}
}

// Timeouts.Connect bounds connect and banner together: a next hop that
// accepts TCP and never greets is left after Connect, not after Command,
// so that the next one gets its chance within the budget.
func TestConnectTimeoutBoundsBanner(t *testing.T) {
	silent := harness.StartHoldHop(t, "", false)
	good := smtpHop(t, startHop(t).Addr)
	r := newRouter(smtpHop(t, silent.Addr), good)
	r.Timeouts = Timeouts{Connect: 300 * time.Millisecond, Command: time.Minute, Data: time.Minute, CallAhead: time.Minute}
	start := time.Now()
	tx, err := begin(t, r, Envelope{From: sender})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("a silent banner held the call-ahead for %v (Connect is 300ms)", elapsed)
	}
	if tx.Hop() != good.String() {
		t.Errorf("transaction with %s, want %s", tx.Hop(), good)
	}
	// The banner cap ends with the greeting: commands get Command, so a
	// next hop slower than Connect but faster than Command still works.
	if err := tx.Rcpt(context.Background(), recipient, RcptDSN{}); err != nil {
		t.Fatalf("Rcpt: %v", err)
	}
}

// The client hanging up (ctx) aborts a call-ahead waiting for a silent next
// hop at once, well before any timeout.
func TestCancelAbortsCallAhead(t *testing.T) {
	for _, c := range []struct {
		name string
		at   string // the verb after which the hop goes silent ("": it never greets)
	}{
		{"banner", ""},
		{"EHLO", "EHLO"},
		{"MAIL", "MAIL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// reached waits until the hop went silent, ended until the
			// relay dropped the connection.
			var addr string
			var reached, ended func()
			if c.at == "" {
				h := harness.StartHoldHop(t, "", false)
				addr = h.Addr
				reached = func() {
					if !h.WaitAccepted(1, 10*time.Second) {
						t.Fatal("never connected")
					}
				}
				ended = func() {
					if !h.WaitClosed(1, 10*time.Second) {
						t.Fatal("the connection was never dropped")
					}
				}
			} else {
				h := startHop(t, replyAt(c.at, harness.Silence))
				addr = h.Addr
				reached = func() { waitAt(t, h, c.at) }
				ended = func() { transcript(t, h) }
			}
			r := newRouter(smtpHop(t, addr))
			r.Timeouts = Timeouts{Connect: time.Minute, Command: time.Minute, Data: time.Minute, CallAhead: time.Minute}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := r.Begin(ctx, 0, "campus.test", Envelope{From: sender})
				done <- err
			}()
			reached()
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Begin succeeded after cancel")
				}
				if r := policy.FromError(err); !r.Temporary() {
					t.Errorf("reply %v after cancel, want a 4xx", r)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Begin still waiting 3s after ctx was cancelled")
			}
			ended() // and the connection was dropped
		})
	}
}

// ctx also aborts a Rcpt or a Data waiting for a silent next hop, and the
// final dot's reply is never taken for granted.
func TestCancelAbortsCommands(t *testing.T) {
	for _, at := range []string{"RCPT", "."} {
		t.Run(at, func(t *testing.T) {
			h := startHop(t, replyAt(at, harness.Silence))
			r := newRouter(smtpHop(t, h.Addr))
			r.Timeouts = Timeouts{Connect: time.Minute, Command: time.Minute, Data: time.Minute, CallAhead: time.Minute}
			tx, err := begin(t, r, Envelope{From: sender})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				if at == "RCPT" {
					done <- tx.Rcpt(ctx, recipient, RcptDSN{})
					return
				}
				if err := tx.Rcpt(ctx, recipient, RcptDSN{}); err != nil {
					done <- err
					return
				}
				done <- tx.Data(ctx, strings.NewReader(testMessage))
			}()
			waitAt(t, h, at)
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("no error after cancel: Data must not report success without the next hop's 250")
				}
				if r := policy.FromError(err); !r.Temporary() {
					t.Errorf("reply %v, want a 4xx", r)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("%s still waiting 3s after ctx was cancelled", at)
			}
			transcript(t, h) // the connection was dropped
		})
	}
}
