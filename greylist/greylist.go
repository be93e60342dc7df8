// Package greylist is sekisho's greylisting (RFC 6647): the triplet of client
// network, envelope sender and recipient, the timing policy (delay, retry
// window, expiry, auto-whitelist), and the stores that keep the state — an
// embedded bbolt file (BoltStore, the default) and Redis (RedisStore, shared by
// several gateways).
//
// A store makes one atomic check-and-set per recipient: it reads the triplet,
// decides, and records the attempt in a single transaction (bbolt) or a single
// Lua script (Redis), so that concurrent first contacts of one triplet create
// exactly one entry. A store that cannot answer returns an error, never a
// decision: what to do then (accept or defer) is the caller's choice
// (filters.Greylist).
//
// A clock that jumps: timestamps are the store's own clock (the gateway's for
// bbolt, Redis' TIME for Redis). If an entry's first-seen time lies in the
// future — the clock went back, or another gateway's clock was ahead — the
// elapsed time is unknowable, so the entry is reset to now: the triplet passes
// one delay from now instead of being blocked until the clock catches up. A
// pass time in the future is likewise set to now. An expiry deadline computed
// before a jump forward simply expires early, which re-greylists but never
// blocks.
package greylist

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Policy is the timing of greylisting. The zero value is not usable; start
// from DefaultPolicy.
type Policy struct {
	// Delay is how long after the first attempt a retry is accepted.
	Delay time.Duration
	// RetryWindow is how long a first attempt is remembered: a triplet not
	// retried (after the delay) within it is forgotten and starts over.
	RetryWindow time.Duration
	// Expire is how long a triplet that passed is remembered after its last
	// pass; the auto-whitelist count of a network expires the same way.
	Expire time.Duration
	// AutoWhitelist is the number of passes after which a client network is
	// no longer greylisted at all; 0 turns the auto-whitelist off.
	AutoWhitelist int
}

// DefaultPolicy is the policy of DESIGN.md §7: 5 minutes' delay, a 48-hour
// retry window, 35 days' expiry, auto-whitelist after 5 passes.
func DefaultPolicy() Policy {
	return Policy{
		Delay:         5 * time.Minute,
		RetryWindow:   48 * time.Hour,
		Expire:        840 * time.Hour,
		AutoWhitelist: 5,
	}
}

// Validate reports a policy that cannot work: non-positive durations, a retry
// window not longer than the delay (no retry could ever pass), a negative
// auto-whitelist count.
func (p Policy) Validate() error {
	switch {
	case p.Delay <= 0:
		return fmt.Errorf("greylist: delay must be positive, got %v", p.Delay)
	case p.RetryWindow <= p.Delay:
		return fmt.Errorf("greylist: retry_window (%v) must be longer than delay (%v)", p.RetryWindow, p.Delay)
	case p.Expire <= 0:
		return fmt.Errorf("greylist: expire must be positive, got %v", p.Expire)
	case p.AutoWhitelist < 0:
		return fmt.Errorf("greylist: auto_whitelist must be 0 (off) or more, got %d", p.AutoWhitelist)
	}
	return nil
}

// Decision is a store's answer for one triplet.
type Decision struct {
	// Pass is true when the recipient may be accepted.
	Pass bool
	// Wait is the time left until a retry passes (when Pass is false).
	Wait time.Duration
	// New is true when this call created the triplet's entry (for Peek: when
	// there is no live entry, so Check would create one).
	New bool
	// AutoWhitelisted is true when the pass came from the client network's
	// auto-whitelist rather than from the triplet.
	AutoWhitelisted bool
	// Delayed is, at a triplet's first pass, how long it was held (from
	// its first attempt); 0 otherwise.
	Delayed time.Duration
}

// SecondsLeft is Wait in whole seconds, rounded up, and at least 1 for a
// deferral: the number to put in the reply text.
func (d Decision) SecondsLeft() int {
	if d.Pass {
		return 0
	}
	s := int((d.Wait + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Store keeps the greylisting state. Implementations: BoltStore (embedded)
// and RedisStore.
//
// A method that cannot reach or read its storage returns an error and a zero
// Decision; a caller must never read a Decision that came with an error.
//
// Other shared state lives in the same storage through KV (a key/value
// store with a time to live: MTA-STS policies), in a bbolt bucket of its
// own or under its own Redis key prefix; so do the report counters
// (Counts, counts.go) and the greylisting stats (Stats, stats.go).
type Store interface {
	KV
	Counts
	Stats
	// Check is the atomic check-and-set for one recipient: it decides
	// whether the triplet passes under p and records the attempt.
	Check(ctx context.Context, t Triplet, p Policy) (Decision, error)
	// Peek decides as Check would but writes nothing (for sekisho explain,
	// which must create no entry).
	Peek(ctx context.Context, t Triplet, p Policy) (Decision, error)
	// Close releases the store; for BoltStore it also stops the sweeper.
	Close() error
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("greylist: store closed")
