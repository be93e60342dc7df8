package gateway

import (
	"context"
	"net"
	"strconv"

	"sekisho/lookup"
	"sekisho/policy"
)

// MailHostResolver finds where a domain's mail goes, for "mx" next hops.
type MailHostResolver interface {
	MailHosts(ctx context.Context, domain string) ([]lookup.MailHost, lookup.DomainResult)
}

// maxMXAddrs bounds how many addresses of a domain's mail hosts one
// call-ahead tries, so that a domain with many dead hosts cannot hold the
// client for long: the sending MTA retries later anyway.
const maxMXAddrs = 5

// hopsFor returns the next hops of a route for a recipient domain, with any
// "mx" next hop replaced by the domain's mail hosts in order of preference.
// A domain with a null MX (RFC 7505) gets 556 5.1.10; one whose mail hosts
// cannot be found, a 4xx: whether a domain exists is for the domain check
// to judge with the DNS canary, not for the relay.
func (s *Server) hopsFor(ctx context.Context, route int, domain string) ([]NextHop, error) {
	var out []NextHop
	for _, h := range s.cfg.Routes[route].NextHops {
		if h.Kind != HopMX {
			out = append(out, h)
			continue
		}
		if s.cfg.MailHosts == nil {
			return nil, policy.NoRoute.Withf("mx next hops need a DNS resolver")
		}
		hosts, res := s.cfg.MailHosts.MailHosts(ctx, domain)
		switch res.Outcome {
		case lookup.DomainNullMX:
			return nil, policy.NullMXRecipient
		case lookup.DomainFound:
		default:
			return nil, policy.NoMailHosts.Withf("cannot find the mail hosts of %s now, please try again later", domain)
		}
		port := s.cfg.MXPort
		if port == 0 {
			port = 25
		}
		n := 0
		for _, host := range hosts {
			for _, ip := range host.Addrs {
				if n == maxMXAddrs {
					break
				}
				out = append(out, NextHop{Kind: HopSMTP, Network: "tcp",
					Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)),
					raw:  "mx " + host.Name + " [" + ip.String() + "]"})
				n++
			}
		}
	}
	return out, nil
}
