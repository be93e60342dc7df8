package relay

import (
	"crypto/x509"
	"fmt"
	"strconv"

	"sekisho/internal/mailaddr"
)

// RouteMode is how a route uses its next hops.
type RouteMode int

// The route modes.
const (
	// ModeFailover: the next hops are tried in order and the first that
	// works takes the transaction (the default).
	ModeFailover RouteMode = iota
	// ModeAll: every next hop takes the transaction (mirror.go): the
	// recipient is accepted only if all accept it, and the message only
	// if all answer 250 to it. For mailbox servers that keep copies of
	// each other's mail.
	ModeAll
)

// String returns "failover" or "all".
func (m RouteMode) String() string {
	switch m {
	case ModeFailover:
		return "failover"
	case ModeAll:
		return "all"
	}
	return "RouteMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseRouteMode parses "failover" or "all" (the configuration's
// routes[].mode).
func ParseRouteMode(s string) (RouteMode, error) {
	switch s {
	case "failover":
		return ModeFailover, nil
	case "all":
		return ModeAll, nil
	}
	return ModeFailover, fmt.Errorf("mode %q: want failover (next hops tried in order) or all (every next hop gets the mail)", s)
}

// Route sends the recipients of some domains to a list of next hops: tried
// in order (ModeFailover), or all of them at once (ModeAll).
type Route struct {
	Domains  mailaddr.DomainSet
	NextHops []NextHop
	// Mode says how the next hops are used; the zero value is failover.
	Mode RouteMode
	// TLS is the route's TLS policy towards its next hops; TLSDefault is
	// may for "mx" next hops and none for the others.
	TLS TLSMode
	// TLSRoots verify next hop certificates (tls: verify, MTA-STS
	// enforce); nil: the system's CAs.
	TLSRoots *x509.CertPool
}

// Routes is the ordered routing table: the first route whose domains match
// wins.
type Routes []Route

// Lookup returns the index of the route for a domain, or -1.
func (rs Routes) Lookup(domain string) int {
	for i, r := range rs {
		if r.Domains.Contains(domain) {
			return i
		}
	}
	return -1
}

// hasMX reports whether a route has an "mx" next hop, whose destinations
// depend on the recipient domain.
func (r Route) hasMX() bool {
	for _, h := range r.NextHops {
		if h.Kind == HopMX {
			return true
		}
	}
	return false
}

// IsLMTP reports whether a route's next hops speak LMTP: such a next hop
// answers the data once per recipient, so the relay gives it one recipient
// per transaction.
func (r *Router) IsLMTP(route int) bool {
	if route < 0 || route >= len(r.Routes) {
		return false
	}
	for _, h := range r.Routes[route].NextHops {
		if h.Kind == HopLMTP {
			return true
		}
	}
	return false
}
