package auth

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/time/rate"

	"sekisho/policy"
)

// failures is the failure budget of one client address, user name or entry:
// a token bucket of MaxFailures tokens refilled at one token per
// FailureWindow. A failed login takes a token (the bucket may go below
// zero: a debt, paid back in time); an attempt is let through while a whole
// token is left. Attempts in flight take nothing: see the README for what
// this means in time and under parallel attempts.
type failures struct {
	lim *rate.Limiter
}

// mayTry reports whether the budget for key in m allows one more attempt.
// The caller holds s.mu.
func (s *Service) mayTry(m *expirable.LRU[string, *failures], key string, now time.Time) bool {
	f, ok := m.Get(key)
	return !ok || f.lim.TokensAt(now) >= 1
}

// tracked returns the budget for key, a full one if there is none. The
// caller holds s.mu.
func (s *Service) tracked(m *expirable.LRU[string, *failures], key string) *failures {
	if f, ok := m.Get(key); ok {
		return f
	}
	f := &failures{lim: rate.NewLimiter(rate.Every(s.cfg.FailureWindow), s.cfg.MaxFailures)}
	m.Add(key, f)
	return f
}

// failed counts a failed login against the client address, the user name
// and, when known, the entry (so that typing the uid, the address and the
// alternate addresses in turn does not multiply the budget).
func (s *Service) failed(ctx context.Context, ip netip.Addr, name, dn string) {
	if s.cfg.Shared != nil {
		s.sharedFailed(ctx, ip, name, dn)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failedLocked(ip, name, dn)
}

// failedLocked is failed with s.mu held.
func (s *Service) failedLocked(ip netip.Addr, name, dn string) {
	now := s.cfg.Now()
	keys := []struct {
		m   *expirable.LRU[string, *failures]
		key string
	}{{s.ips, ipKey(ip)}, {s.users, "name:" + name}}
	if dn == "" {
		// A name the directory has named an entry for before (an attempt
		// refused unseen, or an unknown user now): the entry pays too.
		dn, _ = s.aliases.Peek(name)
	}
	if dn != "" {
		dn = strings.ToLower(dn)
		s.aliases.Add(name, dn)
		keys = append(keys, struct {
			m   *expirable.LRU[string, *failures]
			key string
		}{s.users, "dn:" + dn})
	}
	for _, k := range keys {
		f := s.tracked(k.m, k.key)
		// ReserveN always takes the token (the bucket goes below zero
		// when attempts raced); the reservation is never used or
		// cancelled.
		f.lim.ReserveN(now, 1)
		k.m.Add(k.key, f) // renew the entry's expiry
	}
}

// succeeded forgets the failures of the user name and of its entry (the
// password is proven): a user who mistyped is not kept waiting. The client
// address's failures stay: a login that works does not vouch for the other
// names tried from the same address.
func (s *Service) succeeded(ctx context.Context, name, dn string) {
	if s.cfg.Shared != nil {
		s.sharedSucceeded(ctx, name, dn)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users.Remove("name:" + name)
	if dn != "" {
		dn = strings.ToLower(dn)
		s.users.Remove("dn:" + dn)
		s.aliases.Add(name, dn)
	}
}

// sending is one user's hourly budget of messages or recipients: a token
// bucket of the hourly limit, refilled at the limit per hour.
type sending struct {
	lim *rate.Limiter
}

// AllowMessage counts one message of u; it returns nil, or
// policy.UserRateLimited (450 4.7.1) when u has used up
// MaxMessagesPerHour. The excess is logged at WARN: it is the first sign of
// a compromised account. Give it where RFC 5321 §4.3.2 allows 450: to RCPT
// or after the data.
func (s *Service) AllowMessage(u User) *policy.Reply {
	return s.allow(s.messages, u, "messages", s.cfg.MaxMessagesPerHour)
}

// AllowRecipient counts one recipient of u; it returns nil, or
// policy.UserRateLimited (450 4.7.1) when u has used up
// MaxRecipientsPerHour, logged at WARN like AllowMessage.
func (s *Service) AllowRecipient(u User) *policy.Reply {
	return s.allow(s.rcpts, u, "recipients", s.cfg.MaxRecipientsPerHour)
}

func (s *Service) allow(m *expirable.LRU[string, *sending], u User, what string, perHour int) *policy.Reply {
	if perHour < 0 {
		return nil
	}
	key := "name:" + strings.ToLower(u.Name)
	if u.DN != "" {
		key = "dn:" + strings.ToLower(u.DN)
	}
	var allowed bool
	if s.cfg.Shared != nil {
		prefix := sharedRcpts
		if m == s.messages {
			prefix = sharedMessages
		}
		allowed = s.sharedAllow(prefix, key, perHour)
	} else {
		now := s.cfg.Now()
		s.mu.Lock()
		sd, ok := m.Get(key)
		if !ok {
			sd = &sending{lim: rate.NewLimiter(rate.Limit(float64(perHour)/3600), perHour)}
		}
		m.Add(key, sd) // renew the entry's expiry
		allowed = sd.lim.AllowN(now, 1)
		s.mu.Unlock()
	}
	if allowed {
		return nil
	}
	s.log.Warn("user sending limit exceeded", "user", logName(u.Name), "dn", u.DN, "limit", what, "per_hour", perHour)
	return policy.UserRateLimited
}
