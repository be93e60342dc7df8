package relay

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
)

// One message to several routes (Router.DataAll): a transaction per route,
// each with its own recipients, the message streamed to all in step, 250
// only when every route's next hop said 250.

// routesRouter has one route per group of next hops: route i takes the
// domain d<i>.test; a group of more than one is a mirror (mode all).
func routesRouter(groups ...[]NextHop) *Router {
	r := newRouter()
	r.Routes = nil
	for i, g := range groups {
		rt := Route{Domains: mailaddr.NewDomainSet([]string{routeDomain(i)}), NextHops: g}
		if len(g) > 1 {
			rt.Mode = ModeAll
		}
		r.Routes = append(r.Routes, rt)
	}
	return r
}

func routeDomain(i int) string { return "d" + string(rune('1'+i)) + ".test" }

// beginRoutes begins one transaction per route of r, each with its own
// recipient (user@d<i>.test).
func beginRoutes(t *testing.T, r *Router) []Transaction {
	t.Helper()
	var txs []Transaction
	for i := range r.Routes {
		tx, err := r.Begin(context.Background(), i, routeDomain(i), Envelope{From: sender})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tx.Abort)
		if err := tx.Rcpt(context.Background(), mailaddr.Address{Local: "user", Domain: routeDomain(i)}, RcptDSN{}); err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	return txs
}

// Every route's next hop gets the same bytes with only its own recipient,
// a mirror among the routes included (its own fan-out nested in the
// routes').
func TestDataAllEveryRoute(t *testing.T) {
	h1, h2a, h2b := startHop(t), startHop(t), startHop(t)
	r := routesRouter([]NextHop{smtpHop(t, h1.Addr)}, []NextHop{smtpHop(t, h2a.Addr), smtpHop(t, h2b.Addr)})
	txs := beginRoutes(t, r)
	// Several fan-out chunks.
	msg := testMessage + strings.Repeat("a line of the body of the message\r\n", 4000)
	if err := r.DataAll(context.Background(), txs, strings.NewReader(msg)); err != nil {
		t.Fatalf("DataAll: %v", err)
	}
	for i, h := range []*harness.RawNextHop{h1, h2a, h2b} {
		m := h.Messages()
		if len(m) != 1 {
			t.Fatalf("next hop %d: %d messages, want 1", i, len(m))
		}
		want := "user@d1.test"
		if i > 0 {
			want = "user@d2.test"
		}
		if string(m[0].Unstuffed()) != msg || len(m[0].To) != 1 || m[0].To[0] != want {
			t.Errorf("next hop %d: recipients %q (want [%s]), %d bytes of %d", i, m[0].To, want, len(m[0].Unstuffed()), len(msg))
		}
		if !bytes.Equal(m[0].Wire, h1.Messages()[0].Wire) {
			t.Errorf("next hop %d got other bytes than the first", i)
		}
	}
}

// A route whose next hop refuses the DATA command fails before any dot: no
// other route's next hop gets its final dot (a mirror's neither), and the
// client hears that route's refusal.
func TestDataAllFailureBeforeTheDots(t *testing.T) {
	h1a, h1b := startHop(t), startHop(t)
	h2 := startHop(t, replyAt("DATA", "554 5.7.1 no data from you"))
	r := routesRouter([]NextHop{smtpHop(t, h1a.Addr), smtpHop(t, h1b.Addr)}, []NextHop{smtpHop(t, h2.Addr)})
	txs := beginRoutes(t, r)
	err := r.DataAll(context.Background(), txs, strings.NewReader(testMessage))
	wantReply(t, err, 554, [3]int{5, 7, 1})
	for i, h := range []*harness.RawNextHop{h1a, h1b} {
		if !h.WaitEnded(1, 10*time.Second) {
			t.Fatalf("mirror next hop %d: the abandoned connection was not closed", i)
		}
		if n := len(h.Messages()); n != 0 || strings.Contains(h.Transcripts()[0], "\r\n.\r\n") {
			t.Errorf("mirror next hop %d: %d messages, transcript %q; want no final dot", i, n, h.Transcripts()[0])
		}
	}
}

// The replies to the final dots disagree: the client hears the refusal
// (any temporary one first: 4xx), and the route that said 250 keeps its
// copy (the documented duplicate on the client's retry).
func TestDataAllRoutesDisagree(t *testing.T) {
	cases := []struct {
		name       string
		dot1, dot2 string
		code       int
		enhanced   [3]int
	}{
		{"250 and 451", "", "451 4.3.0 try later", 451, [3]int{4, 3, 0}},
		{"554 and 451: temporary wins", "554 5.7.1 no", "451 4.3.0 try later", 451, [3]int{4, 3, 0}},
		{"554 and 250", "554 5.7.1 no", "", 554, [3]int{5, 7, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h1, h2 := startHop(t, replyAt(".", c.dot1)), startHop(t, replyAt(".", c.dot2))
			r := routesRouter([]NextHop{smtpHop(t, h1.Addr)}, []NextHop{smtpHop(t, h2.Addr)})
			err := r.DataAll(context.Background(), beginRoutes(t, r), strings.NewReader(testMessage))
			wantReply(t, err, c.code, c.enhanced)
			for i, h := range []*harness.RawNextHop{h1, h2} {
				dot := []string{c.dot1, c.dot2}[i]
				if want := map[bool]int{true: 1, false: 0}[dot == ""]; len(h.Messages()) != want {
					t.Errorf("next hop %d (dot reply %q): %d messages, want %d", i, dot, len(h.Messages()), want)
				}
			}
		})
	}
}

// The barrier spans the routes: a mirror route whose next hops both have
// the whole message still waits before their dots until the other route
// has it too; that route failing then abandons the mirror's copies.
func TestDataAllBarrierAcrossRoutes(t *testing.T) {
	a1, a2 := &fakeMirrorHop{whole: make(chan struct{})}, &fakeMirrorHop{whole: make(chan struct{})}
	both := make(chan struct{})
	go func() {
		<-a1.whole
		<-a2.whole
		close(both)
	}()
	b := &fakeMirrorHop{whole: make(chan struct{}), fail: both}
	m := &mirrorTx{r: newRouter(), hops: []mirrorHop{a1, a2}, t: testTimeouts.withDefaults()}
	err := newRouter().DataAll(context.Background(), []Transaction{m, b}, strings.NewReader(testMessage))
	wantReply(t, err, 451, [3]int{4, 4, 2})
	if a1.delivered.Load() || a2.delivered.Load() {
		t.Error("the mirror route delivered though the other route failed before its dot")
	}
}
