// Package filters holds sekisho's checks and the chain that runs them.
//
// A Check declares the SMTP stage at which its inputs exist and a cost; the
// Chain runs the checks of a stage cheapest first, and the first verdict that
// is not Continue ends the stage (DESIGN.md §3). The costs — and so the order —
// are defined in one file, order.go, and pinned by a test.
package filters

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"sekisho/policy"
)

// Stage is the point of an SMTP transaction at which a check's inputs exist.
type Stage int

// The stages, in the order a transaction passes them.
const (
	StageConnect Stage = iota // client IP known
	StageMail                 // MAIL FROM received
	StageRcpt                 // one RCPT TO received
	StageData                 // header section received
	StageMessage              // whole message received (Transaction.Message), before any of it goes on
)

func (s Stage) String() string {
	switch s {
	case StageConnect:
		return "connect"
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	case StageMessage:
		return "message"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Action is what a verdict asks the session to do.
type Action int

// The actions. Reject and Defer carry a Reply; Tag adds headers and goes on.
const (
	Continue Action = iota // no objection; the next check runs
	Tag                    // no objection, but add the verdict's headers
	Defer                  // temporary failure: the verdict's 4xx Reply
	Reject                 // permanent failure: the verdict's 5xx Reply
)

func (a Action) String() string {
	return [...]string{"continue", "tag", "defer", "reject"}[a]
}

// Header is a header field a check adds to the relayed message.
type Header struct {
	Name, Value string
}

// Verdict is a check's answer.
type Verdict struct {
	Action  Action
	Reply   *policy.Reply // set for Defer and Reject
	Reason  string        // for the log line: what was found, which lookup said so
	Headers []Header      // for Tag (and Continue, e.g. Received-SPF)
	// Cause is what the decision is counted as in the reports (one of
	// report's causes), when the check's name and reply do not say it
	// (the domain check: bad list, NXDOMAIN or DNS trouble).
	Cause string
	// Domain is the domain the decision is about, for the report's top
	// domains when the check's name does not say it (dmarc: the From
	// domain of a refused message).
	Domain string
}

// Continue is the verdict of a check with no objection.
var ContinueVerdict = Verdict{Action: Continue}

// Transaction is what the checks can see. Fields are filled in as the stages
// pass; a check reads only those its stage guarantees.
type Transaction struct {
	SessionID     string
	Client        netip.Addr
	Helo          string
	Trusted       bool   // client in trusted_networks
	Authenticated string // SMTP AUTH identity, "" if none
	Listener      string // "smtp", "lmtp", "submission", "submissions"

	From     string   // envelope sender; "" is the null sender <>
	SMTPUTF8 bool     // the transaction used SMTPUTF8
	Rcpt     string   // the recipient being checked (StageRcpt)
	Local    bool     // Rcpt is in local_domains (StageRcpt)
	Rcpts    []string // recipients accepted so far
	Header   []byte   // the raw header section, CRLF line endings (StageData)
	// Message returns a new reader of the whole message as the client sent
	// it, header section (before our own fields were removed) and body
	// (StageMessage). The gateway holds it spooled (gateway/spool.go):
	// memory up to a threshold, then a private temporary file.
	Message func() io.Reader

	// Conn carries per-connection state a check prepared at StageConnect
	// (e.g. DNSBL lookups started while the banner is held).
	Conn map[string]any
	// Values carries per-transaction state between the RCPTs of one
	// transaction (e.g. the SPF result, computed once). Reset with the
	// transaction.
	Values map[string]any
}

// Check is one filter.
type Check interface {
	// Name is the check's name in config, logs and metrics ("dnsbl").
	Name() string
	// Stage is when the check runs.
	Stage() Stage
	// Check gives the verdict. It must honour ctx's deadline. An error it
	// returns is handled like a Defer with policy's generic reply: a check
	// cannot bounce mail by failing.
	Check(ctx context.Context, tx *Transaction) (Verdict, error)
}

// ConnectStarter is implemented by checks that start work when a connection
// arrives, so that it costs no time of its own: the DNSBL lookups run while
// the greet pause holds the banner, and their answers wait in tx.Conn until
// the check's own stage. StartConnect must not block.
type ConnectStarter interface {
	StartConnect(ctx context.Context, tx *Transaction)
}

// StartConnect calls StartConnect of every check that has one.
func (c *Chain) StartConnect(ctx context.Context, tx *Transaction) {
	for _, list := range c.byStage {
		for _, ch := range list {
			if cs, ok := ch.(ConnectStarter); ok {
				cs.StartConnect(ctx, tx)
			}
		}
	}
}

// Result is one check's outcome within a chain run, for logs and explain.
type Result struct {
	Check   string
	Verdict Verdict
	Err     error
}

// Chain is the ordered list of enabled checks.
type Chain struct {
	byStage map[Stage][]Check
}

// NewChain orders the checks by stage and by the cost Order gives each name.
// A check whose name Order does not know is a programming error: it panics at
// start-up, never on a mail.
func NewChain(checks ...Check) *Chain {
	c := &Chain{byStage: map[Stage][]Check{}}
	for _, ch := range checks {
		if _, ok := costOf(ch.Name()); !ok {
			panic(fmt.Sprintf("filters: check %q has no cost in order.go", ch.Name()))
		}
		c.byStage[ch.Stage()] = append(c.byStage[ch.Stage()], ch)
	}
	for _, list := range c.byStage {
		sort.SliceStable(list, func(i, j int) bool {
			ci, _ := costOf(list[i].Name())
			cj, _ := costOf(list[j].Name())
			return ci < cj
		})
	}
	return c
}

// DryRunner is implemented by checks that change state when they run (the
// greylist check records the attempt): DryRun is the same check asking
// without changing anything, for `sekisho explain`.
type DryRunner interface {
	DryRun() Check
}

// DryRun returns the chain `sekisho explain` runs: the same checks, in the
// same order, each DryRunner replaced by its dry run. The running gateway
// explains on it, so an explanation leaves no trace in the store.
func (c *Chain) DryRun() *Chain {
	d := &Chain{byStage: map[Stage][]Check{}}
	for st, list := range c.byStage {
		for _, ch := range list {
			if dr, ok := ch.(DryRunner); ok {
				ch = dr.DryRun()
			}
			d.byStage[st] = append(d.byStage[st], ch)
		}
	}
	return d
}

// MessageWanter is implemented by a check of StageMessage that needs the
// whole message only for some transactions: the gateway spools a message
// only when a check of the chain wants it (or it is signed).
type MessageWanter interface {
	WantsMessage(tx *Transaction) bool
}

// WantsMessage reports whether any check of StageMessage wants tx's whole
// message.
func (c *Chain) WantsMessage(tx *Transaction) bool {
	for _, ch := range c.byStage[StageMessage] {
		w, ok := ch.(MessageWanter)
		if !ok || w.WantsMessage(tx) {
			return true
		}
	}
	return false
}

// Checks returns the checks of a stage in the order they run.
func (c *Chain) Checks(s Stage) []Check { return c.byStage[s] }

// Run runs the checks of a stage in order and stops at the first Defer or
// Reject. It returns that verdict (or Continue/Tag with the headers gathered)
// and every check's result. A check that returns an error or panics yields a
// Defer with policy's generic temporary reply.
func (c *Chain) Run(ctx context.Context, s Stage, tx *Transaction) (Verdict, []Result) {
	final := ContinueVerdict
	var results []Result
	for _, ch := range c.byStage[s] {
		v, err := runOne(ctx, ch, tx)
		results = append(results, Result{Check: ch.Name(), Verdict: v, Err: err})
		switch v.Action {
		case Defer, Reject:
			v.Headers = append(final.Headers, v.Headers...)
			return v, results
		case Tag:
			final.Action = Tag
		}
		final.Headers = append(final.Headers, v.Headers...)
	}
	return final, results
}

// RunObserved is Run for `sekisho explain`: before(check) is called before
// each check and may return the context to run it under (to trace its
// lookups); after is called with each result and its duration.
func (c *Chain) RunObserved(ctx context.Context, s Stage, tx *Transaction,
	before func(check string) context.Context, after func(r Result, took time.Duration)) Verdict {
	final := ContinueVerdict
	for _, ch := range c.byStage[s] {
		cctx := before(ch.Name())
		start := time.Now()
		v, err := runOne(cctx, ch, tx)
		after(Result{Check: ch.Name(), Verdict: v, Err: err}, time.Since(start))
		switch v.Action {
		case Defer, Reject:
			return v
		case Tag:
			final.Action = Tag
		}
		final.Headers = append(final.Headers, v.Headers...)
	}
	return final
}

func runOne(ctx context.Context, ch Check, tx *Transaction) (v Verdict, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check %s panicked: %v", ch.Name(), p)
			v = Verdict{Action: Defer, Reply: policy.TempLocal, Reason: err.Error()}
		}
	}()
	v, err = ch.Check(ctx, tx)
	if err != nil {
		return Verdict{Action: Defer, Reply: policy.FromError(err), Reason: err.Error()}, err
	}
	if (v.Action == Defer || v.Action == Reject) && v.Reply == nil {
		return Verdict{Action: Defer, Reply: policy.TempLocal, Reason: "check gave no reply: " + v.Reason}, nil
	}
	// A check may not turn a temporary condition into a bounce by mistake:
	// the reply's class decides, not the action's name.
	if v.Action == Reject && v.Reply.Temporary() {
		v.Action = Defer
	}
	if v.Action == Defer && v.Reply.Permanent() {
		v.Reply = policy.TempLocal
	}
	return v, nil
}
