package gateway

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"sekisho/filters"
	"sekisho/lookup"
	"sekisho/policy"
)

// ExplainInput is one transaction to explain: what a client would send.
type ExplainInput struct {
	Client        netip.Addr
	Helo          string
	From          string
	Rcpts         []string
	Header        []byte // the header section, CRLF line endings; nil: no DATA stage
	Authenticated string
}

// ExplainStep is one decision of the pipeline, as it would be made.
type ExplainStep struct {
	Stage   string // "connect", "mail", "rcpt <addr>", "data"
	Check   string // a check's name, or "relay", "route", "greet_pause"
	Outcome string // "pass", "tag", "defer", "reject", "skipped"
	Reply   string // the reply a client would get, when this step decides it
	Reason  string
	Lookups []lookup.TraceEvent
	Took    time.Duration
}

// Explain runs the real pipeline — relay control, routes and every check
// with its real lookups — for one transaction, without contacting any next
// hop and without sending mail. The checks are those of the server's chain:
// main builds it with the greylist check in dry-run mode (no entry is made).
// It returns each step in the order it runs and the reply the client would
// get at each command.
func (s *Server) Explain(ctx context.Context, in ExplainInput) []ExplainStep {
	var (
		mu    sync.Mutex
		steps []ExplainStep
		done  bool // set when Explain returns: lookups still in flight are dropped
	)
	// finish ends the collection and returns a copy that no lookup finishing
	// later (the DNSBL queries of the connect stage, when MAIL was already
	// refused) can touch.
	finish := func() []ExplainStep {
		mu.Lock()
		defer mu.Unlock()
		done = true
		out := make([]ExplainStep, len(steps))
		for i, st := range steps {
			st.Lookups = append([]lookup.TraceEvent(nil), st.Lookups...)
			out[i] = st
		}
		return out
	}
	// Each step gets a context of its own that collects its lookups, so
	// that lookups finishing later (the DNSBL queries started at connect)
	// are still credited to the step that made them.
	add := func(st ExplainStep) (int, context.Context) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, st)
		i := len(steps) - 1
		return i, lookup.WithTrace(ctx, func(ev lookup.TraceEvent) {
			mu.Lock()
			defer mu.Unlock()
			if !done {
				steps[i].Lookups = append(steps[i].Lookups, ev)
			}
		})
	}
	current := -1
	runStage := func(stage string, fs filters.Stage, tx *filters.Transaction) *policy.Reply {
		v := s.chain.RunObserved(ctx, fs, tx,
			func(check string) context.Context {
				i, cctx := add(ExplainStep{Stage: stage, Check: check})
				current = i
				return cctx
			},
			func(r filters.Result, took time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				st := &steps[current]
				st.Outcome, st.Reason, st.Took = outcomeName(r.Verdict.Action), r.Verdict.Reason, took
				if rep := verdictReply(r.Verdict); rep != nil {
					st.Reply = rep.String()
				}
			})
		return verdictReply(v)
	}

	trusted := s.isTrusted(in.Client)
	tx := &filters.Transaction{
		SessionID: "explain", Client: in.Client, Helo: in.Helo, Trusted: trusted,
		Authenticated: in.Authenticated, Listener: "smtp", From: in.From,
		Conn: map[string]any{}, Values: map[string]any{},
	}

	// connect
	pause := "skipped"
	reason := "trusted or exempt network"
	if s.cfg.GreetPause > 0 && !trusted && !inPrefixes(s.cfg.GreetPauseExempt, in.Client) {
		pause, reason = "pass", "the banner would be held "+s.cfg.GreetPause.String()+"; explain assumes a client that waits"
	} else if s.cfg.GreetPause == 0 {
		reason = "off"
	}
	add(ExplainStep{Stage: "connect", Check: "greet_pause", Outcome: pause, Reason: reason})
	_, cctx := add(ExplainStep{Stage: "connect", Check: "lookups", Outcome: "pass", Reason: "started while the banner is held (DNSBL); answers are listed as they arrive"})
	s.chain.StartConnect(cctx, tx)

	// MAIL
	if _, ok := ParseAddress(in.From); !ok {
		add(ExplainStep{Stage: "mail", Check: "syntax", Outcome: "reject", Reply: policy.BadSenderSyntax.String()})
		return finish()
	}
	if r := runStage("mail", filters.StageMail, tx); r != nil {
		return finish()
	}

	// RCPT
	routeKey := ""
	for _, to := range in.Rcpts {
		stage := "rcpt " + to
		addr, ok := ParseAddress(to)
		if !ok || to == "" {
			add(ExplainStep{Stage: stage, Check: "syntax", Outcome: "reject", Reply: policy.BadRecipientSyntax.String()})
			continue
		}
		local := s.cfg.LocalDomains.Contains(addr.Domain)
		if r, why := s.relayControl(addr, local, trusted || in.Authenticated != ""); r != nil {
			add(ExplainStep{Stage: stage, Check: "relay", Outcome: outcomeOfReply(r), Reply: r.String(), Reason: why})
			continue
		}
		add(ExplainStep{Stage: stage, Check: "relay", Outcome: "pass", Reason: relayReason(local, trusted, in.Authenticated)})
		route := s.cfg.Routes.Lookup(addr.Domain)
		if route < 0 {
			add(ExplainStep{Stage: stage, Check: "route", Outcome: "defer", Reply: policy.NoRoute.String(), Reason: "no route matches " + addr.Domain})
			continue
		}
		if key := s.routeKeyFor(route, addr.Domain); routeKey != "" && key != routeKey {
			add(ExplainStep{Stage: stage, Check: "route", Outcome: "defer", Reply: policy.OtherRoute.String(), Reason: "another route than the transaction's first recipient"})
			continue
		} else {
			routeKey = key
		}
		tx.Rcpt, tx.Local = to, local
		if r := runStage(stage, filters.StageRcpt, tx); r != nil {
			continue
		}
		var hops []string
		for _, h := range s.cfg.Routes[route].NextHops {
			hops = append(hops, h.String())
		}
		add(ExplainStep{Stage: stage, Check: "route", Outcome: "pass",
			Reason: "next hops " + strings.Join(hops, ", ") + " (not contacted: explain sends no mail; a real session asks them at RCPT)"})
		tx.Rcpts = append(tx.Rcpts, to)
	}

	// DATA
	if in.Header != nil && len(tx.Rcpts) > 0 {
		if n := countReceived(in.Header); n > maxReceived {
			add(ExplainStep{Stage: "data", Check: "loop", Outcome: "reject", Reply: policy.MailLoop.String()})
			return finish()
		}
		tx.Header = stripOwnFields(in.Header, s.cfg.Hostname)
		runStage("data", filters.StageData, tx)
	}
	return finish()
}

// routeKeyFor is the identity of a route for one domain: an "mx" route
// differs per domain.
func (s *Server) routeKeyFor(route int, domain string) string {
	for _, h := range s.cfg.Routes[route].NextHops {
		if h.Kind == HopMX {
			return itoa(route) + "/" + domain
		}
	}
	return itoa(route)
}

func relayReason(local, trusted bool, auth string) string {
	switch {
	case local:
		return "recipient domain is local"
	case trusted:
		return "client is in trusted_networks"
	default:
		return "client authenticated as " + auth
	}
}

func outcomeName(a filters.Action) string {
	switch a {
	case filters.Continue:
		return "pass"
	case filters.Tag:
		return "tag"
	case filters.Defer:
		return "defer"
	}
	return "reject"
}

func outcomeOfReply(r *policy.Reply) string {
	if r.Temporary() {
		return "defer"
	}
	return "reject"
}
