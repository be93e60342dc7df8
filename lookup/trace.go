package lookup

import (
	"context"
	"time"
)

// TraceEvent is one lookup as `sekisho explain` shows it.
type TraceEvent struct {
	Kind   string // "dns" or "ldap"
	Query  string // "example.org MX", "account alice@campus.test (with canary …)"
	Answer string // the outcome, the records or the reason
	Took   time.Duration
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
