package gateway

import (
	"context"
	"net/netip"
	"time"
)

// GreetMemory is where the greet pause remembers clients (Postfix's
// postscreen cache, shared by every gateway on the same store): one that
// waited out the pause gets the banner at once on its next connections for
// PassTTL, one that talked first gets 554 5.5.1 at once for FailTTL. It is
// the state store's key/value part (greylist.KV).
type GreetMemory interface {
	GetValue(ctx context.Context, key string) (value []byte, ok bool, err error)
	PutValue(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// greetMemoryTimeout bounds one lookup or write of the memory. A store
// that does not answer in time counts as "not remembered": the pause is
// applied (fail-safe: delay, never reject).
const greetMemoryTimeout = 500 * time.Millisecond

// The remembered verdicts, and the outcome that is never remembered: a
// client that hung up during the pause neither waited it out nor talked
// first.
const (
	greetPassed   = "pass"
	greetPregreet = "fail"
	greetLeft     = "left"
)

// greetKey is the memory's key for a client: its IPv4 address, or its IPv6
// /64 (one host's privacy addresses are one client).
func greetKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "greet:" + p.String()
	}
	return "greet:" + ip.String()
}

// recall starts looking the client up, without blocking the accept loop;
// the connection's first write (the banner) waits for the answer at most
// greetMemoryTimeout.
func (s *Server) recall(g *generation, ip netip.Addr) <-chan string {
	out := make(chan string, 1)
	mem := g.cfg.GreetMemory
	if mem == nil {
		out <- ""
		return out
	}
	go func() {
		ctx, cancel := context.WithTimeout(s.ctx, greetMemoryTimeout)
		defer cancel()
		v, ok, err := mem.GetValue(ctx, greetKey(ip))
		if err != nil || !ok {
			out <- ""
			return
		}
		out <- string(v)
	}()
	return out
}

// remember writes the pause's outcome for a client: a pass in the
// background (the banner must not wait for the store), a pregreet before
// the refused connection is closed (so that its next connection, at any
// gateway, finds it).
func (s *Server) remember(g *generation, ip netip.Addr, verdict string) {
	mem := g.cfg.GreetMemory
	if mem == nil {
		return
	}
	ttl := g.cfg.GreetPassTTL
	if verdict == greetPregreet {
		ttl = g.cfg.GreetFailTTL
	}
	if ttl <= 0 {
		return
	}
	put := func() {
		ctx, cancel := context.WithTimeout(s.ctx, greetMemoryTimeout)
		defer cancel()
		if err := mem.PutValue(ctx, greetKey(ip), []byte(verdict), ttl); err != nil {
			s.log.Debug("greet pause: cannot remember the client", "client", ip.String(), "err", err)
		}
	}
	if verdict == greetPregreet {
		put()
		return
	}
	go put()
}
