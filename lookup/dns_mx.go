package lookup

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// MailHost is one host a domain's mail goes to, with its addresses.
type MailHost struct {
	Name  string
	Addrs []netip.Addr
}

// MailHosts returns where mail for domain goes (RFC 5321 §5.1): its MX hosts
// in order of preference, or the domain itself when it has no MX (the
// implicit MX). Each host's addresses are looked up (A and AAAA); a host
// whose addresses cannot be found is left out. The result says
// DomainFound with at least one host; DomainNullMX for a null MX;
// DomainNotFound when the domain or every host certainly does not exist;
// DomainCouldNotTell otherwise.
func (r *Resolver) MailHosts(ctx context.Context, domain string) ([]MailHost, DomainResult) {
	domain = strings.TrimSuffix(domain, ".")
	dr := r.DomainExists(ctx, domain)
	if dr.Outcome != DomainFound {
		return nil, dr
	}
	names := []string{domain}
	if len(dr.MX) > 0 {
		names = names[:0]
		for _, mx := range dr.MX {
			names = append(names, strings.TrimSuffix(mx.Mx, "."))
		}
	}
	var hosts []MailHost
	couldNotTell := false
	for _, name := range names {
		addrs, certain := r.hostAddrs(ctx, name)
		if len(addrs) > 0 {
			hosts = append(hosts, MailHost{Name: name, Addrs: addrs})
		} else if !certain {
			couldNotTell = true
		}
	}
	switch {
	case len(hosts) > 0:
		return hosts, dr
	case couldNotTell:
		dr.Outcome, dr.Reason = DomainCouldNotTell, dr.Reason+"; the addresses of its mail hosts could not be looked up"
	default:
		dr.Outcome, dr.Reason = DomainNotFound, dr.Reason+"; none of its mail hosts has an address"
	}
	return nil, dr
}

// hostAddrs looks up A and AAAA of a host. certain is false when either
// lookup could not tell.
func (r *Resolver) hostAddrs(ctx context.Context, name string) (addrs []netip.Addr, certain bool) {
	certain = true
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		res := r.Lookup(ctx, name, qtype)
		switch res.Outcome {
		case DNSFound:
			for _, rr := range res.Records {
				var ip netip.Addr
				switch v := rr.(type) {
				case *dns.A:
					ip, _ = netip.AddrFromSlice(v.A)
				case *dns.AAAA:
					ip, _ = netip.AddrFromSlice(v.AAAA)
				}
				if ip.IsValid() {
					addrs = append(addrs, ip.Unmap())
				}
			}
		case DNSCouldNotTell:
			certain = false
		}
	}
	return addrs, certain
}
