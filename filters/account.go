package filters

// The LDAP account check (DESIGN.md §3 row 5): is a local recipient a real
// account? It asks the directory once, for the recipient and the canary
// together (lookup.Directory.Account), and answers 550 only when the
// directory is known complete: the canary was found and the recipient was
// not. Everything else it cannot be sure of is a 451 — unless the account
// memory vouches for the recipient (serve stale, below).
//
// Serve stale (as RFC 8767 does for DNS): an account the directory found
// is remembered in the state store (AccountOptions.Memory, shared by every
// gateway on one Redis) with when it was confirmed. When the directory
// cannot tell and the recipient was confirmed within StaleTTL, the
// recipient is accepted (verdict Continue, cause ldap_stale, logged at
// WARN with the age); the call-ahead still asks the mailbox server. "No
// such user" is never remembered: a certain not-found forgets the account.

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"sekisho/lookup"
	"sekisho/policy"
	"sekisho/report"
)

// AccountDirectory is what the check needs of the directory.
type AccountDirectory interface {
	Account(ctx context.Context, addr string) lookup.AccountResult
}

// AccountMemory is where found accounts are remembered: the state store's
// key/value part (greylist.KV).
type AccountMemory interface {
	GetValue(ctx context.Context, key string) ([]byte, bool, error)
	PutValue(ctx context.Context, key string, value []byte, ttl time.Duration) error
	DeleteValue(ctx context.Context, key string) error
}

// AccountMemoryPrefix starts the memory's keys ("account:alice@campus.example").
const AccountMemoryPrefix = "account:"

// Defaults of AccountOptions.
const (
	DefaultAccountMemoryTimeout = time.Second
	// DefaultAccountMemoryRefresh is the longest a gateway goes without
	// writing again the confirmation of an account it keeps finding (the
	// refresh is also at most StaleTTL/100).
	DefaultAccountMemoryRefresh = time.Hour
	// DefaultAccountMemoryTracked bounds the gateway's in-memory list of
	// the accounts it wrote lately (the writes it may skip).
	DefaultAccountMemoryTracked = 100_000
)

// AccountOptions configures the account memory of NewAccountCheck. The zero
// value remembers nothing and serves nothing stale.
type AccountOptions struct {
	// Memory keeps the confirmations; nil: serve stale is off.
	Memory AccountMemory
	// StaleTTL is how long after its last confirmation an account is
	// accepted while the directory cannot tell (config ldap.stale_ttl);
	// 0 turns serve stale off.
	StaleTTL time.Duration
	// ReadOnly serves from the memory but writes nothing (sekisho explain).
	ReadOnly bool
	// Timeout bounds one memory call; 0: DefaultAccountMemoryTimeout.
	Timeout time.Duration
	// Now is the clock of confirmations and ages; nil: time.Now.
	Now func() time.Time
	// Logger gets the WARN line of each recipient served stale and the
	// memory's errors; nil: slog.Default().
	Logger *slog.Logger
}

// AccountCheck verifies local recipients against the directory.
type AccountCheck struct {
	dir     AccountDirectory
	opts    AccountOptions
	refresh time.Duration
	written *expirable.LRU[string, struct{}] // confirmations written lately by this gateway
	log     *slog.Logger

	servedStale  atomic.Uint64
	memoryErrors atomic.Uint64
	memoryDown   atomic.Bool // an incident is on: logged at its start and end
}

// NewAccountCheck builds the check on a directory, with the account memory
// of opts (the zero AccountOptions: none).
func NewAccountCheck(dir AccountDirectory, opts AccountOptions) *AccountCheck {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultAccountMemoryTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StaleTTL <= 0 {
		opts.Memory = nil
	}
	a := &AccountCheck{dir: dir, opts: opts, log: opts.Logger.With("check", "account")}
	if opts.Memory != nil {
		a.refresh = min(opts.StaleTTL/100, DefaultAccountMemoryRefresh)
		if a.refresh > 0 {
			a.written = expirable.NewLRU[string, struct{}](DefaultAccountMemoryTracked, nil, a.refresh)
		}
	}
	return a
}

// Name implements Check.
func (a *AccountCheck) Name() string { return "account" }

// Stage implements Check.
func (a *AccountCheck) Stage() Stage { return StageRcpt }

// ServedStale is the number of recipients accepted from the account memory
// since the check was built.
func (a *AccountCheck) ServedStale() uint64 { return a.servedStale.Load() }

// MemoryErrors is the number of account memory calls that failed.
func (a *AccountCheck) MemoryErrors() uint64 { return a.memoryErrors.Load() }

// Check implements Check. Only recipients in the local domains are
// verified; postmaster is always accepted (RFC 5321 §4.5.1 requires every
// domain to take mail for it), whatever the directory says, and left to the
// next hop.
func (a *AccountCheck) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	if !tx.Local || IsPostmaster(tx.Rcpt) {
		return ContinueVerdict, nil
	}
	res := a.dir.Account(ctx, tx.Rcpt)
	key := accountMemoryKey(res.Address, tx.Rcpt)
	switch res.Outcome {
	case lookup.AccountFound:
		if !res.Cached {
			a.remember(ctx, key)
		}
		return Verdict{Action: Continue, Reason: "account: " + res.Reason}, nil
	case lookup.AccountNotFound:
		a.forget(ctx, key)
		return Verdict{Action: Reject, Reply: policy.UnknownUser.Withf("<%s>: no such user here", sanitizeAddr(tx.Rcpt)), Reason: "account: " + res.Reason}, nil
	}
	if v, ok := a.serveStale(ctx, key, tx.Rcpt, res.Reason); ok {
		return v, nil
	}
	if res.CanaryMissing {
		return Verdict{Action: Defer, Reply: policy.DirectoryIncomplete, Reason: "account: " + res.Reason}, nil
	}
	return Verdict{Action: Defer, Reply: policy.DirectoryUnavailable, Reason: "account: " + res.Reason}, nil
}

// accountMemoryKey is the memory's key of an address: the address the
// directory looked up (its extension removed), lower-cased.
func accountMemoryKey(looked, rcpt string) string {
	if looked == "" {
		looked = rcpt
	}
	return AccountMemoryPrefix + strings.ToLower(looked)
}

// remember writes the confirmation of a found account, unless this gateway
// wrote it within the refresh interval. An error is logged and counted: the
// recipient was found, the mail goes on.
func (a *AccountCheck) remember(ctx context.Context, key string) {
	if a.opts.Memory == nil || a.opts.ReadOnly {
		return
	}
	if a.written != nil {
		if _, ok := a.written.Get(key); ok {
			return
		}
	}
	// The value: when, in Unix milliseconds, as decimal text (readable in
	// redis-cli).
	v := strconv.AppendInt(nil, a.opts.Now().UnixMilli(), 10)
	mctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	if err := a.opts.Memory.PutValue(mctx, key, v, a.opts.StaleTTL); err != nil {
		a.memoryFailed("remember", key, err)
		return
	}
	a.memoryWorks()
	if a.written != nil {
		a.written.Add(key, struct{}{})
	}
}

// forget removes the account of an address the directory certainly does not
// have: a deleted account is never served stale. It reads before it
// deletes, so that a flood of unknown recipients costs no writes.
func (a *AccountCheck) forget(ctx context.Context, key string) {
	if a.opts.Memory == nil || a.opts.ReadOnly {
		return
	}
	if a.written != nil {
		a.written.Remove(key)
	}
	mctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	_, ok, err := a.opts.Memory.GetValue(mctx, key)
	if err == nil && ok {
		err = a.opts.Memory.DeleteValue(mctx, key)
	}
	if err != nil {
		a.memoryFailed("forget", key, err)
		return
	}
	a.memoryWorks()
}

// serveStale answers for a recipient the directory could not tell about:
// accepted when the memory has it confirmed within StaleTTL.
func (a *AccountCheck) serveStale(ctx context.Context, key, rcpt, why string) (Verdict, bool) {
	if a.opts.Memory == nil {
		return Verdict{}, false
	}
	mctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	v, ok, err := a.opts.Memory.GetValue(mctx, key)
	if err != nil {
		a.memoryFailed("serve stale", key, err)
		return Verdict{}, false
	}
	a.memoryWorks()
	if !ok {
		return Verdict{}, false
	}
	ms, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		a.memoryFailed("serve stale", key, fmt.Errorf("unreadable confirmation %q", v))
		return Verdict{}, false
	}
	confirmed := time.UnixMilli(ms)
	age := max(a.opts.Now().Sub(confirmed), 0) // a clock behind another gateway's: as good as now
	if age >= a.opts.StaleTTL {                // as the store, which forgets it at confirmed+StaleTTL
		return Verdict{}, false
	}
	a.servedStale.Add(1)
	ageText := age.Round(time.Second).String()
	a.log.Warn("account served stale: the directory could not tell, the recipient was confirmed within ldap.stale_ttl",
		"rcpt", rcpt, "age", ageText, "confirmed", confirmed.UTC().Format(time.RFC3339), "stale_ttl", a.opts.StaleTTL.String(), "directory", why)
	return Verdict{
		Action: Continue,
		Cause:  report.LDAPStale,
		Reason: fmt.Sprintf("account: served stale, confirmed %s ago (stale_ttl %v); directory: %s", ageText, a.opts.StaleTTL, why),
	}, true
}

// memoryFailed counts a memory error and logs it when it starts an
// incident (one line per incident, not one per recipient).
func (a *AccountCheck) memoryFailed(what, key string, err error) {
	a.memoryErrors.Add(1)
	if a.memoryDown.CompareAndSwap(false, true) {
		a.log.Warn("account memory unavailable: found accounts not remembered, none served stale until it answers", "op", what, "key", key, "err", err)
	}
}

// memoryWorks ends an incident.
func (a *AccountCheck) memoryWorks() {
	if a.memoryDown.CompareAndSwap(true, false) {
		a.log.Info("account memory available again", "errors", a.memoryErrors.Load())
	}
}

// sanitizeAddr keeps an address printable and short for a reply text.
func sanitizeAddr(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r > 0x7e || b.Len() >= 200 {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
