package relay

import (
	"context"
	"fmt"
	"io"

	"sekisho/policy"
)

// DataAll sends one message to the next hop transactions of several routes
// at once: a submission (or a campus server's outbound transaction) whose
// recipients are on campus and outside, each route's transaction begun at
// its first recipient and holding only that route's recipients. It is the
// mirror's fan-out (fanOutData) with one transaction per route: the message
// is read once and streamed to every route in step, every next hop waits
// before its final dot until all have the whole message, and a failure
// before the dots (a lost next hop, 8-bit data one cannot take, the client
// gone) abandons every route without its dot, so it costs no copy anywhere.
//
// It returns nil only when every route's next hop said 250 to the data.
// Otherwise the error is the one reply the client hears, by mirrorVerdict's
// rule: any temporary failure makes it a 4xx; a 5xx only when every failure
// was permanent. The routes whose next hop said 250 while another refused
// keep the message (sekisho holds no queue): the client's retry gives them
// a duplicate, as for a mirror (docs/msa.md, "Several routes in one
// message"). A failure to read msg is returned as it is.
//
// One transaction is Data itself. Every Transaction of Begin can be one of
// several; anything else is an error.
func (r *Router) DataAll(ctx context.Context, txs []Transaction, msg io.Reader) error {
	switch len(txs) {
	case 0:
		return fmt.Errorf("%w (no next hop transaction)", policy.NextHopLost)
	case 1:
		return txs[0].Data(ctx, msg)
	}
	hops := make([]dataHop, len(txs))
	for i, tx := range txs {
		h, ok := tx.(dataHop)
		if !ok {
			return fmt.Errorf("%w (next hop %s cannot be one of several routes)", policy.NextHopLost, tx.Hop())
		}
		hops[i] = h
	}
	outcomes, readErr := fanOutData(ctx, hops, msg, nil)
	if readErr != nil {
		return readErr
	}
	verdict := mirrorVerdict(outcomes)
	if verdict != nil {
		if took := acceptedBy(outcomes); len(took) > 0 {
			r.log().Warn("routes disagree on the message; the client is refused, the next hops that accepted it keep their copy",
				"accepted_by", took, "reply", policy.FromError(verdict).String(), "next_hops", summary(outcomes))
		}
	}
	return verdict
}
