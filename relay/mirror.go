package relay

// Mirror routes (routes[].mode: all): every next hop of the route takes the
// same transaction, for mailbox servers that each keep a copy of the mail.
// The client hears 250 only when every next hop said 250; otherwise it hears
// one refusal, chosen by mirrorVerdict, and retries or bounces as that
// refusal says. sekisho holds no queue, so a next hop that accepted the
// message while another refused it gets the message again when the client
// retries: the duplicate docs/outbound.md describes ("Mirror routes").

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// mirrorHop is a next hop transaction that can be one of a mirror's:
// *smtpTx and *maildirTx.
type mirrorHop interface {
	dataHop
	// restart begins the transaction again with only the recipients
	// given, for a recipient this next hop accepted and another refused.
	restart(ctx context.Context, rcpts []mirrorRcpt) error
}

// mirrorRcpt is a recipient every next hop of a mirror accepted.
type mirrorRcpt struct {
	to  mailaddr.Address
	dsn RcptDSN
}

// errStoppedByMirror is why a mirror (or a message to several routes,
// Router.DataAll) stops its other next hops once one of them failed during
// the data: the message cannot be delivered to all, so it is delivered to
// none.
var errStoppedByMirror = errors.New("another next hop of the message failed")

// mirrorFanoutChunk is how much of the message the mirror reads from its
// client at a time and hands to every next hop before reading more: with
// each next hop's own copy buffer, what sekisho holds of a message in flight
// towards a mirror (the next hops are written in step: the slowest sets
// the pace, nothing is spooled).
const mirrorFanoutChunk = 32 << 10

// mirrorTx is one transaction with every next hop of a ModeAll route. Its
// methods fan each step out to all next hops in parallel and answer as
// mirrorVerdict says.
type mirrorTx struct {
	r    *Router
	hops []mirrorHop
	t    Timeouts
	// firstDeadline is the end of Begin's call-ahead budget: the first
	// RCPT is part of the same call-ahead; later ones get a budget each.
	firstDeadline time.Time

	rcpts  []mirrorRcpt // accepted by every next hop, in order
	broken error        // a next hop's connection is lost: every later call fails so
}

// beginAll opens every next hop of a ModeAll route in parallel, within the
// call-ahead budget of cctx (ctx is the caller's, for the budget of the
// first RCPT). Every next hop must open: a mirror with a next hop missing
// would deliver a copy to the others that the client's retry duplicates.
// At the first failure that makes the answer a 4xx for certain, the others
// are abandoned at once.
func (r *Router) beginAll(ctx, cctx context.Context, hops []NextHop, env Envelope, t Timeouts) (Transaction, error) {
	for _, h := range hops {
		if h.Kind == HopMX {
			// The configuration refuses it: MX hosts are alternatives.
			return nil, policy.NoRoute.Withf("a route in mode all cannot have an mx next hop")
		}
	}
	deadline, _ := cctx.Deadline()
	octx, stop := context.WithCancelCause(cctx)
	defer stop(nil)
	type opened struct {
		tx    Transaction
		notes []string
		err   error
	}
	res := make([]opened, len(hops))
	var wg sync.WaitGroup
	for i, h := range hops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, notes, err := r.openHop(octx, h, env, t)
			res[i] = opened{tx, notes, err}
			if err != nil && !openFailure(err).Permanent() {
				stop(errStoppedByMirror)
			}
		}()
	}
	wg.Wait()

	m := &mirrorTx{r: r, t: t, firstDeadline: deadline}
	var notes []string
	outcomes := make([]hopOutcome, len(hops))
	failed := false
	for i, o := range res {
		notes = append(notes, o.notes...)
		outcomes[i].hop = hops[i].String()
		if o.err != nil {
			failed = true
			outcomes[i].err = o.err
			outcomes[i].reply = openFailure(o.err)
			outcomes[i].stopped = errors.Is(context.Cause(octx), errStoppedByMirror) && errors.Is(o.err, errStoppedByMirror)
			continue
		}
		m.hops = append(m.hops, o.tx.(mirrorHop))
	}
	if failed {
		m.Abort()
		return nil, fmt.Errorf("%w; mirror call-ahead: %s; tried %s", mirrorVerdict(outcomes), summary(outcomes), strings.Join(notes, "; "))
	}
	return m, nil
}

// openFailure is the reply for a next hop of a mirror that could not be
// opened: a certain refusal of this mail (capabilityError) keeps its 5xx;
// required TLS not had is 451 4.7.5; anything else (unreachable, silent,
// a refusal of the greeting, EHLO or MAIL, the budget spent) 451 4.4.1.
func openFailure(err error) *policy.Reply {
	var ce *capabilityError
	var te *tlsError
	switch {
	case errors.As(err, &ce):
		return ce.reply
	case errors.As(err, &te):
		return policy.NextHopTLSRequired
	}
	return policy.NextHopUnreachable.Withf("a next hop of the mirror did not answer (%s), try another MX or later", shortErr(err))
}

// hopOutcome is what one next hop of a mirror did with one step.
type hopOutcome struct {
	hop   string
	err   error         // nil: accepted
	reply *policy.Reply // the client's reply for err
	// stopped: the mirror abandoned this next hop because another failed;
	// its error says nothing about the mail.
	stopped bool
}

// mirrorVerdict is the one refusal a mirror's client hears when some of
// its next hops refused a step (the outcomes in the configured order of
// the next hops). The rule, most conservative first:
//
//   - a temporary failure of any next hop (its 4xx, an unreachable next
//     hop, a lost connection, a timeout) makes the answer a 4xx: the first
//     such next hop's reply. Never a 5xx for an infrastructure failure,
//     and never a bounce while one copy's fate is still open;
//   - otherwise every failure was permanent: the first one's 5xx (RFC 5321
//     §4.2.1: the next hop will refuse it again; a 4xx would have the
//     client retry for days, duplicating the message on the others each
//     time).
//
// Next hops abandoned by the mirror itself are left out. It returns nil
// when no next hop failed.
func mirrorVerdict(outcomes []hopOutcome) error {
	var perm *hopOutcome
	for i := range outcomes {
		o := &outcomes[i]
		if o.err == nil || o.stopped {
			continue
		}
		if !o.reply.Permanent() {
			return fmt.Errorf("%w (mirror next hop %s: %v)", o.reply, o.hop, o.err)
		}
		if perm == nil {
			perm = o
		}
	}
	if perm != nil {
		return fmt.Errorf("%w (mirror next hop %s: %v)", perm.reply, perm.hop, perm.err)
	}
	for _, o := range outcomes {
		if o.err != nil {
			// Only abandoned next hops failed: cannot be, but never 250.
			return fmt.Errorf("%w (mirror next hop %s: %v)", policy.NextHopLost, o.hop, o.err)
		}
	}
	return nil
}

// summary lists what every next hop of a mirror did, for the log.
func summary(outcomes []hopOutcome) string {
	var parts []string
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			parts = append(parts, o.hop+": ok")
		case o.stopped:
			parts = append(parts, o.hop+": abandoned (another next hop failed)")
		default:
			parts = append(parts, o.hop+": "+o.err.Error())
		}
	}
	return strings.Join(parts, "; ")
}

// each runs f for every next hop in parallel and returns their outcomes in
// order.
func (m *mirrorTx) each(f func(h mirrorHop) error) []hopOutcome {
	out := make([]hopOutcome, len(m.hops))
	var wg sync.WaitGroup
	for i, h := range m.hops {
		out[i].hop = h.Hop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(h); err != nil {
				out[i].err, out[i].reply = err, policy.FromError(err)
			}
		}()
	}
	wg.Wait()
	return out
}

// markLost makes the mirror broken when a next hop's connection was lost in
// outcomes: that next hop can take no more, so neither can the mirror.
func (m *mirrorTx) markLost(outcomes []hopOutcome) {
	for _, o := range outcomes {
		if o.err != nil && errors.Is(o.err, policy.NextHopLost) && m.broken == nil {
			m.broken = fmt.Errorf("%w (mirror next hop %s lost: %v)", policy.NextHopLost, o.hop, o.err)
		}
	}
}

// Rcpt passes the recipient to every next hop in parallel, within a
// call-ahead budget (the rest of Begin's for the first recipient). It is
// accepted only if every next hop accepts it. If some refuse it, the next
// hops that had accepted it begin their transaction again without it
// (restart), so that no next hop ever delivers to a recipient the client
// was told was refused.
func (m *mirrorTx) Rcpt(ctx context.Context, to mailaddr.Address, dsn RcptDSN) error {
	if m.broken != nil {
		return m.broken
	}
	deadline := m.firstDeadline
	if deadline.IsZero() {
		deadline = time.Now().Add(m.t.CallAhead)
	}
	m.firstDeadline = time.Time{}
	rctx, cancel := context.WithDeadlineCause(ctx, deadline, fmt.Errorf("%w (%v)", errBudget, m.t.CallAhead))
	defer cancel()
	outcomes := m.each(func(h mirrorHop) error { return h.Rcpt(rctx, to, dsn) })
	verdict := mirrorVerdict(outcomes)
	if verdict == nil {
		m.rcpts = append(m.rcpts, mirrorRcpt{to, dsn})
		return nil
	}
	m.markLost(outcomes)
	if m.broken == nil {
		accepted := false
		for _, o := range outcomes {
			accepted = accepted || o.err == nil
		}
		if accepted {
			m.restartAccepting(ctx, outcomes)
		}
	}
	m.r.log().Info("mirror: recipient refused by a next hop", "to", to.String(), "next_hops", summary(outcomes))
	return verdict
}

// restartAccepting restarts the next hops that accepted a recipient the
// mirror refused. A next hop that fails to restart breaks the mirror: the
// client's DATA then gets 451 4.4.2 and it retries the whole message.
func (m *mirrorTx) restartAccepting(ctx context.Context, outcomes []hopOutcome) {
	rctx, cancel := context.WithTimeoutCause(ctx, m.t.CallAhead, fmt.Errorf("%w (%v)", errBudget, m.t.CallAhead))
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, h := range m.hops {
		if outcomes[i].err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.restart(rctx, m.rcpts); err != nil {
				h.Abort()
				mu.Lock()
				if m.broken == nil {
					m.broken = fmt.Errorf("%w (mirror next hop %s could not begin again without a refused recipient: %v)", policy.NextHopLost, h.Hop(), err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// Data streams the message to every next hop at once (fanOutData): one
// reader, read in chunks of mirrorFanoutChunk, each chunk handed to every
// next hop before the next is read (backpressure: the slowest next hop sets
// the pace, and nothing is spooled). Every next hop waits before its final
// dot until all have the whole message; a next hop that fails before that
// (lost, 8-bit data it cannot take, a refused DATA) has all the others
// abandoned without the dot, so a failure in transit costs no copy. Only the
// replies to the final dots can disagree: then the client hears
// mirrorVerdict's refusal, and the next hops that said 250 keep their copy.
//
// A failure to read msg (the client's side) abandons every next hop and is
// returned as it is.
func (m *mirrorTx) Data(ctx context.Context, msg io.Reader) error {
	return m.data(ctx, msg, nil)
}

// data is Data; beforeDot, if set, is called once every next hop of the
// mirror has the whole message, before any final dot: a mirror that is one
// route of a message to several routes (Router.DataAll) waits there for
// the other routes.
func (m *mirrorTx) data(ctx context.Context, msg io.Reader, beforeDot func() error) error {
	if m.broken != nil {
		return m.broken
	}
	outcomes, readErr := fanOutData(ctx, m.hops, msg, beforeDot)
	if readErr != nil {
		return readErr
	}
	verdict := mirrorVerdict(outcomes)
	if verdict != nil {
		if took := acceptedBy(outcomes); len(took) > 0 {
			// The client retries (4xx) or bounces (5xx); these have
			// the message already: a duplicate if it comes again.
			m.r.log().Warn("mirror: next hops disagree on the message; the client is refused, the next hops that accepted it keep their copy",
				"accepted_by", took, "reply", policy.FromError(verdict).String(), "next_hops", summary(outcomes))
		}
		m.markLost(outcomes)
	}
	return verdict
}

// acceptedBy names the next hops that said 250 to the data.
func acceptedBy(outcomes []hopOutcome) []string {
	var took []string
	for _, o := range outcomes {
		if o.err == nil {
			took = append(took, o.hop)
		}
	}
	return took
}

// dataHop is a next hop transaction that can take its part of a message
// sent to several at once (a mirror's next hops, the routes of one
// message): *smtpTx, *maildirTx and *mirrorTx.
type dataHop interface {
	Transaction
	// data is Data, with beforeDot called once the whole message went
	// out and before the final dot (or a Maildir's rename into new/).
	data(ctx context.Context, msg io.Reader, beforeDot func() error) error
}

// fanOutData streams msg to every hop at once and returns what each did
// with it, in order: a chunk of mirrorFanoutChunk at a time, each handed to
// every hop before the next is read. Every hop waits before its final dot
// until all have the whole message (and then, when beforeDot is set, until
// beforeDot returned nil: the barrier of an enclosing fan-out); a hop that
// fails before that stops the others without their dot, and is the only
// one whose outcome counts (the others are marked stopped). readErr is
// msg's own failure (the client's side); every hop is then abandoned.
func fanOutData[H dataHop](ctx context.Context, hops []H, msg io.Reader, beforeDot func() error) (outcomes []hopOutcome, readErr error) {
	n := len(hops)
	dctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	var (
		mu       sync.Mutex
		waiting  int
		passed   bool // every hop has the whole message: dots go
		failed   bool // a hop failed before the dots: the rest stop
		allReady = make(chan struct{})
	)
	barrier := func() error {
		mu.Lock()
		waiting++
		last := waiting == n
		mu.Unlock()
		if last {
			if beforeDot != nil {
				// The last to arrive waits for the enclosing fan-out;
				// the others wait for it.
				if err := beforeDot(); err != nil {
					return err
				}
			}
			mu.Lock()
			passed = true
			mu.Unlock()
			close(allReady)
			return nil
		}
		select {
		case <-allReady:
			return nil
		case <-dctx.Done():
			select {
			case <-allReady:
				return nil
			default:
			}
			return context.Cause(dctx)
		}
	}

	outcomes = make([]hopOutcome, n)
	readers := make([]*io.PipeReader, n)
	writers := make([]*io.PipeWriter, n)
	var wg sync.WaitGroup
	for i, h := range hops {
		readers[i], writers[i] = io.Pipe()
		outcomes[i].hop = h.Hop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.data(dctx, readers[i], barrier)
			// Writes to a hop that is done fail at once.
			readers[i].CloseWithError(errStoppedByMirror)
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			outcomes[i].err, outcomes[i].reply = err, policy.FromError(err)
			if passed {
				return // its reply to the dot: the others keep theirs
			}
			if failed {
				outcomes[i].stopped = errors.Is(err, policy.NextHopLost) || errors.Is(err, errStoppedByMirror)
				return
			}
			failed = true
			stop(errStoppedByMirror)
		}()
	}

	readErr = fanOut(msg, writers)
	if readErr != nil {
		stop(readErr)
	}
	wg.Wait()
	return outcomes, readErr
}

// fanOut copies msg to every writer, a chunk at a time, and closes them: with
// nil at the end of msg, with the read error otherwise (returned). A writer
// whose next hop is done is skipped.
func fanOut(msg io.Reader, writers []*io.PipeWriter) error {
	buf := make([]byte, mirrorFanoutChunk)
	alive := make([]bool, len(writers))
	for i := range alive {
		alive[i] = true
	}
	for {
		// Whole chunks: one hand-over per next hop per 32 KiB, not per
		// line. Only io.EOF ends the message (fill).
		n, rerr := fill(msg, buf)
		if n > 0 {
			for i, w := range writers {
				if alive[i] {
					if _, err := w.Write(buf[:n]); err != nil {
						alive[i] = false
					}
				}
			}
		}
		if rerr == io.EOF {
			for _, w := range writers {
				w.Close()
			}
			return nil
		}
		if rerr != nil {
			for _, w := range writers {
				w.CloseWithError(rerr)
			}
			return rerr
		}
	}
}

// Noop keeps every next hop of the mirror alive (KeepAlive).
func (m *mirrorTx) Noop(ctx context.Context) error {
	if m.broken != nil {
		return m.broken
	}
	outcomes := m.each(func(h mirrorHop) error { return KeepAlive(ctx, h) })
	m.markLost(outcomes)
	return m.broken
}

// Abort abandons every next hop's transaction. Safe at any time, from any
// goroutine, more than once.
func (m *mirrorTx) Abort() {
	for _, h := range m.hops {
		h.Abort()
	}
}

// Close ends every next hop's transaction politely, in parallel.
func (m *mirrorTx) Close() {
	var wg sync.WaitGroup
	for _, h := range m.hops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.Close()
		}()
	}
	wg.Wait()
}

// Hop names every next hop: "all of smtp://10.0.1.5:25, smtp://10.0.1.6:25".
func (m *mirrorTx) Hop() string {
	names := make([]string, len(m.hops))
	for i, h := range m.hops {
		names[i] = h.Hop()
	}
	return "all of " + strings.Join(names, ", ")
}

// LMTP reports whether any next hop speaks LMTP: then every next hop gets
// one recipient per transaction.
func (m *mirrorTx) LMTP() bool {
	for _, h := range m.hops {
		if h.LMTP() {
			return true
		}
	}
	return false
}

// TLS is the weakest link's, for the log: nil if any next hop is in clear
// (or a Maildir), else the first next hop's session.
func (m *mirrorTx) TLS() *tls.ConnectionState {
	var first *tls.ConnectionState
	for _, h := range m.hops {
		st := h.TLS()
		if st == nil {
			return nil
		}
		if first == nil {
			first = st
		}
	}
	return first
}
