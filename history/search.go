package history

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"sekisho/greylist"
)

// Filter selects records; every field set must match. It is what `sekisho
// history` takes as flags, the /history page as a form, and the control
// socket's history verb as JSON.
type Filter struct {
	From    string        `json:"from,omitempty"`    // an address, or @domain for every sender of the domain (and its subdomains)
	To      string        `json:"to,omitempty"`      // likewise for a recipient
	Client  string        `json:"client,omitempty"`  // an address or a network (10.1.0.0/16)
	MsgID   string        `json:"msgid,omitempty"`   // Message-ID, with or without <>
	Session string        `json:"session,omitempty"` // a session id: every record of the session
	Outcome string        `json:"outcome,omitempty"` // refused, deferred or accepted
	Since   time.Duration `json:"since,omitempty"`   // how far back; default 24h
	Limit   int           `json:"limit,omitempty"`   // at most this many records; default 1000
}

// Defaults of Filter.
const (
	DefaultSince = 24 * time.Hour
	DefaultLimit = 1000
	MaxLimit     = 100_000
)

// Validate checks the filter's values, in the words of the flags.
func (f *Filter) Validate() error {
	switch f.Outcome {
	case "", "refused", "deferred", "accepted":
	default:
		return fmt.Errorf("-outcome must be refused, deferred or accepted, not %q", f.Outcome)
	}
	if f.Client != "" {
		if _, err := parseClient(f.Client); err != nil {
			return fmt.Errorf("-client wants an address or a network like 192.0.2.0/24, not %q", f.Client)
		}
	}
	if f.Since < 0 {
		return fmt.Errorf("-since must be positive")
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		return fmt.Errorf("-limit must be between 1 and %d", MaxLimit)
	}
	return nil
}

func parseClient(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// matcher is a compiled Filter.
type matcher struct {
	f      Filter
	client netip.Prefix
}

func addrMatch(want, got string) bool {
	want = strings.ToLower(strings.TrimSpace(strings.Trim(want, "<>")))
	got = strings.ToLower(got)
	if dom, ok := strings.CutPrefix(want, "@"); ok {
		i := strings.LastIndexByte(got, '@')
		if i < 0 {
			return false
		}
		d := got[i+1:]
		return d == dom || strings.HasSuffix(d, "."+dom)
	}
	return got == want
}

func (m *matcher) match(r *Record) bool {
	f := &m.f
	if f.Session != "" && r.Session != f.Session {
		return false
	}
	if f.From != "" && !addrMatch(f.From, r.From) {
		return false
	}
	if f.To != "" {
		ok := false
		for _, t := range r.To {
			if addrMatch(f.To, t) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if m.client.IsValid() {
		a, err := netip.ParseAddr(r.Client)
		if err != nil || !m.client.Contains(a.Unmap()) {
			return false
		}
	}
	if f.MsgID != "" && strings.Trim(r.MsgID, "<>") != strings.Trim(strings.TrimSpace(f.MsgID), "<>") {
		return false
	}
	if f.Outcome != "" && r.Outcome() != f.Outcome {
		return false
	}
	return true
}

// Search returns the records that match f, newest first. The store is
// read from now back to f.Since; records are not indexed, so a search
// reads the whole period (a campus's two weeks are read in seconds).
func Search(ctx context.Context, store greylist.History, f Filter, now time.Time) ([]Record, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Since == 0 {
		f.Since = DefaultSince
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	m := matcher{f: f}
	if f.Client != "" {
		m.client, _ = parseClient(f.Client)
	}
	var out []Record
	var derr error
	err := store.ReadHistory(ctx, now.Add(-f.Since), now.Add(time.Minute), func(e greylist.HistoryEntry) bool {
		r, err := Unmarshal(e.Data)
		if err != nil {
			derr = err
			return true
		}
		if m.match(&r) {
			out = append(out, r)
		}
		return len(out) < f.Limit
	})
	if err != nil {
		return nil, fmt.Errorf("history: reading the store: %w", err)
	}
	_ = derr // a record that does not decode (another version's) is skipped
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}
