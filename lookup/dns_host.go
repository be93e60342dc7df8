package lookup

import (
	"context"
	"net/netip"
)

// LookupHost returns the IPv4 and IPv6 addresses of a host name (A and AAAA
// records), as an HTTPS client needs them (the MTA-STS policy host, RFC 8461
// §3.3). The result is DNSFound when there is at least one address; otherwise
// DNSCouldNotTell if either lookup could not tell, else DNSNoData (a certain
// "no address": NXDOMAIN or NODATA for both types).
func (r *Resolver) LookupHost(ctx context.Context, name string) ([]netip.Addr, DNSResult) {
	addrs, certain := r.hostAddrs(ctx, name)
	switch {
	case len(addrs) > 0:
		return addrs, DNSResult{Outcome: DNSFound, Reason: "A/AAAA found"}
	case !certain:
		return nil, DNSResult{Outcome: DNSCouldNotTell, Reason: "A/AAAA lookup of " + name + " could not tell"}
	}
	return nil, DNSResult{Outcome: DNSNoData, Reason: "no A or AAAA records for " + name}
}
