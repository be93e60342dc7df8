package relay

import "sekisho/internal/mailaddr"

// Route sends the recipients of some domains to a list of next hops, tried in
// order (failover).
type Route struct {
	Domains  mailaddr.DomainSet
	NextHops []NextHop
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
