package greylist

import "time"

// The state machine of one triplet, shared in meaning by both stores: the
// BoltStore runs decide below inside a bbolt transaction, the RedisStore runs
// the same steps in its Lua script (redis.go). The store tests run one table
// against both.
//
// Times are Unix milliseconds of the store's clock.

// entry is a triplet's state.
type entry struct {
	First    int64  // first attempt of the current round
	LastPass int64  // last pass; 0 while the triplet has not passed yet
	Until    int64  // the entry is forgotten at this time
	Passes   uint32 // passes so far
}

func (e *entry) passed() bool { return e.LastPass != 0 }

// netEntry is a client network's auto-whitelist state.
type netEntry struct {
	Count uint32 // passes of triplets from the network
	Until int64  // forgotten at this time (Expire after the last pass)
}

// outcome is decide's result: the decision and the state to write (nil: leave
// as it is).
type outcome struct {
	d        Decision
	entry    *entry
	netEntry *netEntry
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// refreshSlack is how stale an auto-whitelisted network's expiry may be
// before a pass extends it again: a hundredth of Expire, at most an hour
// (milliseconds). A busy whitelisted network is thus written at most once
// an hour instead of at every recipient, and is forgotten between Expire
// minus the slack and Expire after its last pass. The Lua script in
// redis.go computes the same.
func refreshSlack(p Policy) int64 {
	return min(ms(p.Expire)/100, ms(time.Hour))
}

// decide applies p at time now to the triplet's entry e and its network's
// auto-whitelist state n (either nil when absent).
func decide(e *entry, n *netEntry, now int64, p Policy) outcome {
	if n != nil && n.Until <= now {
		n = nil
	}
	if p.AutoWhitelist > 0 && n != nil && n.Count >= uint32(p.AutoWhitelist) {
		o := outcome{d: Decision{Pass: true, AutoWhitelisted: true}}
		if n.Until < now+ms(p.Expire)-refreshSlack(p) {
			o.netEntry = &netEntry{Count: n.Count, Until: now + ms(p.Expire)}
		}
		return o
	}
	if e == nil || e.Until <= now {
		return outcome{
			d:     Decision{Wait: p.Delay, New: true},
			entry: &entry{First: now, Until: now + ms(p.RetryWindow)},
		}
	}
	if !e.passed() {
		if e.First > now {
			// The clock went back (or another writer's was ahead): the
			// time elapsed is unknowable, so start the round again now
			// rather than wait for the clock to catch up.
			return outcome{
				d:     Decision{Wait: p.Delay},
				entry: &entry{First: now, Until: now + ms(p.RetryWindow)},
			}
		}
		if elapsed := now - e.First; elapsed < ms(p.Delay) {
			return outcome{d: Decision{Wait: time.Duration(ms(p.Delay)-elapsed) * time.Millisecond}}
		}
	}
	// Passes: the first retry after the delay, or a triplet that passed
	// before. Each pass extends the entry and counts for the network.
	o := outcome{
		d:     Decision{Pass: true},
		entry: &entry{First: e.First, LastPass: now, Until: now + ms(p.Expire), Passes: e.Passes + 1},
	}
	if !e.passed() {
		o.d.Delayed = time.Duration(now-e.First) * time.Millisecond
	}
	if p.AutoWhitelist > 0 {
		count := uint32(1)
		if n != nil {
			count = n.Count + 1
		}
		o.netEntry = &netEntry{Count: count, Until: now + ms(p.Expire)}
	}
	return o
}
