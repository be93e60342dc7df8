package auth

// The budgets in the state store shared by every gateway (Redis): the
// failure budgets of client addresses, user names and entries, and the
// hourly sending limits, as atomic expiring token buckets
// (greylist.Buckets). Without one (the embedded store) they are in memory,
// per gateway (throttle.go). A store that cannot answer never refuses a
// correct password: the budget is skipped, which is logged (once per
// incident) and counted (Service.SharedErrors).

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"sekisho/greylist"
)

// DefaultSharedTimeout bounds one call to the shared budgets.
const DefaultSharedTimeout = 500 * time.Millisecond

// The prefixes of the shared keys (under greylist.RedisBucketPrefix).
const (
	sharedFailures = "auth:fail:"  // + ip:..., name:..., dn:...
	sharedMessages = "auth:msgs:"  // + name:... or dn:...
	sharedRcpts    = "auth:rcpts:" // + name:... or dn:...
)

// sharedMayTry reports whether the shared failure budget of key allows one
// more attempt; a store error lets the attempt through.
func (s *Service) sharedMayTry(ctx context.Context, key string) bool {
	ok, err := s.sharedCall(ctx, sharedFailures+key, s.cfg.MaxFailures, s.cfg.FailureWindow, greylist.BucketPeek)
	return ok || err != nil
}

// sharedThrottled is throttled on the shared budgets.
func (s *Service) sharedThrottled(ctx context.Context, ip netip.Addr, name string) (reply bool, user bool) {
	if !s.sharedMayTry(ctx, "ip:"+ipKey(ip)) {
		return true, false
	}
	if !s.sharedMayTry(ctx, "name:"+name) {
		return true, true
	}
	if dn, ok := s.aliases.Get(name); ok && !s.sharedMayTry(ctx, "dn:"+dn) {
		return true, true
	}
	return false, false
}

// sharedFailed is failed on the shared budgets.
func (s *Service) sharedFailed(ctx context.Context, ip netip.Addr, name, dn string) {
	keys := []string{"ip:" + ipKey(ip), "name:" + name}
	if dn == "" {
		dn, _ = s.aliases.Peek(name)
	}
	if dn != "" {
		dn = strings.ToLower(dn)
		s.aliases.Add(name, dn)
		keys = append(keys, "dn:"+dn)
	}
	for _, k := range keys {
		s.sharedCall(ctx, sharedFailures+k, s.cfg.MaxFailures, s.cfg.FailureWindow, greylist.BucketTake)
	}
}

// sharedSucceeded is succeeded on the shared budgets.
func (s *Service) sharedSucceeded(ctx context.Context, name, dn string) {
	s.sharedCall(ctx, sharedFailures+"name:"+name, s.cfg.MaxFailures, s.cfg.FailureWindow, greylist.BucketReset)
	if dn != "" {
		dn = strings.ToLower(dn)
		s.aliases.Add(name, dn)
		s.sharedCall(ctx, sharedFailures+"dn:"+dn, s.cfg.MaxFailures, s.cfg.FailureWindow, greylist.BucketReset)
	}
}

// sharedAllow is one message or recipient of the hourly limit; a store
// error lets it through.
func (s *Service) sharedAllow(prefix, key string, perHour int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.SharedTimeout)
	defer cancel()
	ok, err := s.sharedCall(ctx, prefix+key, perHour, time.Hour/time.Duration(perHour), greylist.BucketAllow)
	return ok || err != nil
}

// sharedCall makes one bucket call within SharedTimeout; an error is
// counted, and logged when it starts an incident.
func (s *Service) sharedCall(ctx context.Context, key string, burst int, every time.Duration, op greylist.BucketOp) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SharedTimeout)
	defer cancel()
	ok, err := s.cfg.Shared.Bucket(ctx, key, burst, every, op)
	if err != nil {
		s.sharedErrors.Add(1)
		if s.sharedHealthy.CompareAndSwap(true, false) {
			s.log.Error("auth budgets store unavailable: throttles and hourly limits skipped until it answers", "err", err)
		}
		return false, err
	}
	if s.sharedHealthy.CompareAndSwap(false, true) {
		s.log.Info("auth budgets store available again")
	}
	return ok, nil
}

// SharedErrors is the number of shared-budget calls the store did not
// answer (each one a throttle or limit skipped).
func (s *Service) SharedErrors() uint64 { return s.sharedErrors.Load() }
