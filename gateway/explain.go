package gateway

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/policy"
)

// ExplainInput is one transaction to explain: what a client would send.
type ExplainInput struct {
	Client netip.Addr `json:"client"`
	Helo   string     `json:"helo"`
	From   string     `json:"from"`
	Rcpts  []string   `json:"rcpts"`
	// Header is the header section, or the whole message (explain
	// -message: the checks of stage message run too), CRLF line endings;
	// nil: no DATA stage.
	Header        []byte `json:"header,omitempty"`
	Authenticated string `json:"authenticated,omitempty"`
}

// ExplainStep is one decision of the pipeline, as it would be made.
type ExplainStep struct {
	Stage   string              `json:"stage"`           // "connect", "helo", "mail", "rcpt <addr>", "data"
	Check   string              `json:"check"`           // a check's name, or "relay", "route", "call_ahead", "greet_pause"
	Outcome string              `json:"outcome"`         // "pass", "tag", "defer", "reject", "skipped"
	Reply   string              `json:"reply,omitempty"` // the reply a client would get, when this step decides it
	Reason  string              `json:"reason,omitempty"`
	Lookups []lookup.TraceEvent `json:"lookups,omitempty"`
	Took    time.Duration       `json:"took_ns,omitempty"`
}

// ExplainReply is the reply a client would get to one command.
type ExplainReply struct {
	Command string `json:"command"` // "MAIL FROM:<a@b>"
	Reply   string `json:"reply"`
	Code    int    `json:"code"` // the reply's code
}

// Explanation is what Explain found: each step in the order it ran, and the
// reply to each command.
type Explanation struct {
	Steps   []ExplainStep  `json:"steps"`
	Replies []ExplainReply `json:"replies"`
}

// Explain runs one transaction through the same engine a session drives —
// relay control, routes, every check with its real lookups, and the
// call-ahead to the next hop (MAIL and RCPT, then the transaction is
// abandoned) — and stops before any data is sent: explain sends no mail. The
// checks are those of the server's chain in their dry run (filters.Chain.DryRun:
// greylisting peeks, no entry is made), so a running gateway explains with
// its own checks, store and lookups.
func (s *Server) Explain(ctx context.Context, in ExplainInput) Explanation {
	g := s.acquire()
	defer g.release()
	o := &explainObserver{srv: s, gen: g, ctx: ctx}
	if in.Helo == "" {
		// No -helo: the client's address literal, which the checks take.
		in.Helo = addressLiteral(in.Client)
	}
	trusted := g.isTrusted(in.Client)
	base := filters.Transaction{
		SessionID: "explain", Client: in.Client, Helo: in.Helo, Trusted: trusted,
		Authenticated: in.Authenticated, Listener: "smtp", Conn: map[string]any{},
	}

	// connect
	pause, reason := "skipped", "trusted or exempt network"
	switch {
	case g.cfg.GreetPause == 0:
		reason = "off"
	case !trusted && !inPrefixes(g.cfg.GreetPauseExempt, in.Client):
		pause, reason = "pass", "the banner would be held "+g.cfg.GreetPause.String()+"; explain assumes a client that waits"
	}
	o.add(ExplainStep{Stage: "connect", Check: "greet_pause", Outcome: pause, Reason: reason})
	_, cctx := o.add(ExplainStep{Stage: "connect", Check: "lookups", Outcome: "pass", Reason: "started while the banner is held (DNSBL); answers are listed as they arrive"})
	g.explain.StartConnect(cctx, &base)

	e := newEngine(s, g, o, base)
	e.dryRun = true
	defer e.reset() // abandons the call-ahead: nothing is sent

	if !validHeloArg(in.Helo) {
		o.answer("EHLO "+in.Helo, policy.BadHelo)
		o.add(ExplainStep{Stage: "helo", Check: "syntax", Outcome: "reject", Reply: policy.BadHelo.String()})
		return o.finish()
	}
	from, _, err := mailaddr.ParsePath("<"+in.From+">", true, false, true)
	if err != nil {
		o.answer("MAIL FROM:<"+in.From+">", policy.BadSenderSyntax)
		o.add(ExplainStep{Stage: "mail", Check: "syntax", Outcome: "reject", Reply: policy.BadSenderSyntax.String()})
		return o.finish()
	}
	if r := e.Mail(ctx, from, MailParams{UTF8: !from.IsASCII()}); o.answer("MAIL FROM:<"+in.From+">", r).Code != 250 {
		return o.finish()
	}
	for _, rcpt := range in.Rcpts {
		to, _, err := mailaddr.ParsePath("<"+rcpt+">", false, true, true)
		if err != nil {
			o.answer("RCPT TO:<"+rcpt+">", policy.BadRecipientSyntax)
			o.add(ExplainStep{Stage: "rcpt " + rcpt, Check: "syntax", Outcome: "reject", Reply: policy.BadRecipientSyntax.String()})
			continue
		}
		o.answer("RCPT TO:<"+rcpt+">", e.Rcpt(ctx, to, RcptParams{}))
	}
	if in.Header != nil && len(e.rcpts) > 0 {
		o.answer("end of DATA", e.Data(ctx, bytes.NewReader(in.Header)))
	}
	return o.finish()
}

// explainObserver collects the engine's steps. Each step gets a context of
// its own that collects its lookups, so that lookups finishing later (the
// DNSBL queries started at connect) are still credited to the step that made
// them; once Explain returns, lookups still in flight are dropped.
type explainObserver struct {
	srv *Server
	gen *generation
	ctx context.Context

	mu      sync.Mutex
	steps   []ExplainStep
	replies []ExplainReply
	done    bool
}

func (o *explainObserver) add(st ExplainStep) (int, context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.steps = append(o.steps, st)
	i := len(o.steps) - 1
	return i, lookup.WithTrace(o.ctx, func(ev lookup.TraceEvent) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.done {
			o.steps[i].Lookups = append(o.steps[i].Lookups, ev)
		}
	})
}

func (o *explainObserver) answer(cmd string, r *policy.Reply) *policy.Reply {
	o.mu.Lock()
	o.replies = append(o.replies, ExplainReply{Command: cmd, Reply: r.String(), Code: r.Code})
	o.mu.Unlock()
	return r
}

// finish returns a copy that no lookup finishing later can touch.
func (o *explainObserver) finish() Explanation {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	out := Explanation{Steps: make([]ExplainStep, len(o.steps)), Replies: append([]ExplainReply(nil), o.replies...)}
	for i, st := range o.steps {
		st.Lookups = append([]lookup.TraceEvent(nil), st.Lookups...)
		out.Steps[i] = st
	}
	return out
}

func (o *explainObserver) run(ctx context.Context, label string, st filters.Stage, tx *filters.Transaction) (filters.Verdict, []filters.Result) {
	var results []filters.Result
	current := -1
	v := o.gen.explain.RunObserved(ctx, st, tx,
		func(check string) context.Context {
			i, cctx := o.add(ExplainStep{Stage: label, Check: check})
			current = i
			return cctx
		},
		func(r filters.Result, took time.Duration) {
			results = append(results, r)
			o.mu.Lock()
			defer o.mu.Unlock()
			step := &o.steps[current]
			step.Outcome, step.Reason, step.Took = outcomeName(r.Verdict.Action), r.Verdict.Reason, took
			if rep := verdictReply(r.Verdict); rep != nil {
				step.Reply = rep.String()
			}
		})
	return v, results
}

// decided lists the engine's own decisions (relay control, route,
// call-ahead, the next hop's answer); the checks' decisions are already
// listed by run.
func (o *explainObserver) decided(stage, check string, r *policy.Reply, reason string, kv ...any) {
	if check != "" && o.isCheck(check) {
		return
	}
	label := stage
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "to" {
			label = "rcpt " + kv[i+1].(string)
		}
	}
	if check == "" {
		check = "result"
	}
	outcome := "pass"
	switch {
	case r.Temporary():
		outcome = "defer"
	case r.Permanent():
		outcome = "reject"
	}
	if stage == "rcpt" && check == "result" {
		reason = strings.TrimSpace("next hop accepted the recipient at the call-ahead (the transaction is abandoned: explain sends no mail)")
	}
	o.add(ExplainStep{Stage: label, Check: check, Outcome: outcome, Reply: r.String(), Reason: reason})
}

func (o *explainObserver) isCheck(name string) bool {
	for _, st := range []filters.Stage{filters.StageMail, filters.StageRcpt, filters.StageData, filters.StageMessage} {
		for _, c := range o.gen.explain.Checks(st) {
			if c.Name() == name {
				return true
			}
		}
	}
	return false
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
