package lookup

import (
	"context"
	"strings"
	"time"
)

// TraceEvent is one lookup as `sekisho explain` shows it.
type TraceEvent struct {
	Kind   string        `json:"kind"`   // "dns" or "ldap"
	Query  string        `json:"query"`  // "example.org MX", "account alice@campus.test (with canary …)"
	Answer string        `json:"answer"` // the outcome, the records or the reason
	Took   time.Duration `json:"took_ns"`
}

// TraceFunc receives the lookups made under a context.
type TraceFunc func(TraceEvent)

type traceKey struct{}

// WithTrace returns a context under which every DNS and LDAP lookup reports
// itself to f. Used by `sekisho explain`; a context without it costs nothing.
func WithTrace(ctx context.Context, f TraceFunc) context.Context {
	return context.WithValue(ctx, traceKey{}, f)
}

func traceFrom(ctx context.Context) TraceFunc {
	f, _ := ctx.Value(traceKey{}).(TraceFunc)
	return f
}

// ObserveFunc receives every DNS and LDAP lookup that asked the servers: its
// kind ("dns" or "ldap"), its outcome ("found", "nxdomain", "nodata",
// "not_found", "could_not_tell") and how long it took. It is the metrics'
// seam, beside the trace of explain; answers from a cache are not observed
// (they measure no server). It must not block.
type ObserveFunc func(kind, outcome string, took time.Duration)

// outcomeLabel turns an outcome's String into a metric label value:
// "could not tell" → "could_not_tell", "NXDOMAIN" → "nxdomain".
func outcomeLabel(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), " ", "_")
}

// Observe sets the function that receives every lookup of this resolver
// (ObserveFunc). Call it before the first lookup; nil observes nothing.
func (r *Resolver) Observe(f ObserveFunc) { r.observe = f }

// Observe sets the function that receives every account lookup of this
// directory (ObserveFunc). Call it before the first lookup; nil observes
// nothing.
func (d *Directory) Observe(f ObserveFunc) { d.observe = f }
