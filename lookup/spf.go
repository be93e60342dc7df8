package lookup

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// SPFResolver adapts a Resolver to the DNSResolver interface of
// blitiri.com.ar/go/spf (pass it with spf.WithResolver), so that SPF checks
// use the same resolvers, cache and timeouts as everything else.
//
// Its errors are always unwrapped *net.DNSError values, because that is all
// the spf package inspects (with a type assertion, not errors.As):
//   - NXDOMAIN and NODATA: IsNotFound set (SPF "none", void lookups, an
//     mx/a mechanism that does not match);
//   - could not tell: IsTemporary set, and IsTimeout too when it was a
//     timeout, so that the check gives temperror. Any other error type would
//     make it a permerror, i.e. an infrastructure failure turned permanent.
//
// LookupIPAddr asks for A and AAAA; if either could not tell, the whole
// answer is a temporary error even when the other family was found: a
// partial address list could make an "a" or "mx" mechanism miss and the
// check end in "fail" where the full list would pass.
type SPFResolver struct {
	r *Resolver
}

// NewSPFResolver returns the SPF adapter for r.
func NewSPFResolver(r *Resolver) *SPFResolver { return &SPFResolver{r: r} }

// spfError turns a result that is not DNSFound into the *net.DNSError the
// spf package understands.
func spfError(name string, res DNSResult) error {
	switch res.Outcome {
	case DNSNXDomain:
		return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	case DNSNoData:
		return &net.DNSError{Err: "no such record", Name: name, IsNotFound: true}
	default:
		return &net.DNSError{Err: res.Reason, Name: name, IsTimeout: res.timedOut, IsTemporary: true}
	}
}

// LookupTXT returns the TXT records of name, each record's strings joined.
func (s *SPFResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, res := s.r.LookupTXT(ctx, name)
	if res.Outcome != DNSFound {
		return nil, spfError(name, res)
	}
	return txts, nil
}

// LookupMX returns the MX records of name. A null MX is returned as it is
// (host "."); LookupIPAddr reports "." as not found without asking.
func (s *SPFResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	res := s.r.Lookup(ctx, name, dns.TypeMX)
	if res.Outcome != DNSFound {
		return nil, spfError(name, res)
	}
	mxs := make([]*net.MX, 0, len(res.Records))
	for _, rr := range res.Records {
		mx := rr.(*dns.MX)
		mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return mxs, nil
}

// LookupIPAddr returns the A and AAAA addresses of host (see the type's
// comment for a partial answer).
func (s *SPFResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(ip.AsSlice()), Zone: ip.Zone()}}, nil
	}
	if strings.Trim(host, ".") == "" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	aCh := make(chan DNSResult, 1)
	go func() { aCh <- s.r.Lookup(ctx, host, dns.TypeA) }()
	aaaa := s.r.Lookup(ctx, host, dns.TypeAAAA)
	a := <-aCh
	for _, res := range []DNSResult{a, aaaa} {
		if res.Outcome == DNSCouldNotTell {
			return nil, spfError(host, res)
		}
	}
	var addrs []net.IPAddr
	for _, res := range []DNSResult{a, aaaa} {
		for _, rr := range res.Records {
			switch rr := rr.(type) {
			case *dns.A:
				addrs = append(addrs, net.IPAddr{IP: rr.A})
			case *dns.AAAA:
				addrs = append(addrs, net.IPAddr{IP: rr.AAAA})
			}
		}
	}
	if len(addrs) == 0 {
		if a.Outcome == DNSNXDomain || aaaa.Outcome == DNSNXDomain {
			return nil, spfError(host, DNSResult{Outcome: DNSNXDomain})
		}
		return nil, spfError(host, DNSResult{Outcome: DNSNoData})
	}
	return addrs, nil
}

// LookupAddr returns the PTR names of addr (an IP address in text form).
func (s *SPFResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	ip = ip.Unmap()
	zone := ".in-addr.arpa."
	if ip.Is6() {
		zone = ".ip6.arpa."
	}
	name := ReverseIP(ip) + zone
	res := s.r.Lookup(ctx, name, dns.TypePTR)
	if res.Outcome != DNSFound {
		return nil, spfError(addr, res)
	}
	names := make([]string, 0, len(res.Records))
	for _, rr := range res.Records {
		names = append(names, rr.(*dns.PTR).Ptr)
	}
	return names, nil
}
