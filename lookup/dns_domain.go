package lookup

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// DomainOutcome is the outcome of DomainExists. The zero value is
// DomainCouldNotTell.
type DomainOutcome int

const (
	// DomainCouldNotTell: some lookup could not tell, and none found the
	// domain.
	DomainCouldNotTell DomainOutcome = iota
	// DomainFound: the domain has MX records, or (without MX) an address.
	DomainFound
	// DomainNotFound: every lookup said so — NXDOMAIN, or no MX and no
	// A/AAAA. DomainResult.NXDomain tells the two apart.
	DomainNotFound
	// DomainNullMX: the domain publishes a null MX (RFC 7505): it exists
	// and accepts no mail.
	DomainNullMX
)

// String returns "found", "not found", "null MX" or "could not tell".
func (o DomainOutcome) String() string {
	switch o {
	case DomainFound:
		return "found"
	case DomainNotFound:
		return "not found"
	case DomainNullMX:
		return "null MX"
	case DomainCouldNotTell:
		return "could not tell"
	}
	return "DomainOutcome(" + strconv.Itoa(int(o)) + ")"
}

// DomainResult is the answer of DomainExists.
type DomainResult struct {
	Outcome DomainOutcome
	// NXDomain is set with DomainNotFound when the name itself does not
	// exist (the MX lookup got NXDOMAIN); unset when the name exists but
	// has no MX and no address.
	NXDomain bool
	// MX are the domain's MX records by preference when it was found by
	// MX; empty when found by address only (the implicit MX of RFC 5321
	// §5.1).
	MX []*dns.MX
	// Reason lists the lookups made: "MX: NODATA from …; A: 1 A from …".
	Reason string
}

// DomainExists tells whether a mail domain exists, the way RFC 5321 §5.1
// finds where mail for it goes: MX first; a null MX (RFC 7505: a single MX
// "0 .") is DomainNullMX; MX records otherwise are DomainFound. NXDOMAIN on
// MX is DomainNotFound. NODATA on MX: A and AAAA are asked (in parallel);
// either found is DomainFound, both NXDOMAIN/NODATA is DomainNotFound, and
// otherwise (one could not tell, none found) DomainCouldNotTell.
//
// A could-not-tell MX lookup gives DomainCouldNotTell at once, without
// asking for addresses: the domain's mail routing is unknown, and waiting for
// two more lookups from a failing resolver would only delay the 4xx.
//
// The canary is not consulted here: a caller about to reject on
// DomainNotFound checks Healthy first (DESIGN.md §4).
func (r *Resolver) DomainExists(ctx context.Context, domain string) DomainResult {
	domain = strings.TrimSuffix(domain, ".")
	mx := r.Lookup(ctx, domain, dns.TypeMX)
	reason := "MX: " + mx.Reason
	switch mx.Outcome {
	case DNSFound:
		mxs := make([]*dns.MX, 0, len(mx.Records))
		for _, rr := range mx.Records {
			mxs = append(mxs, rr.(*dns.MX))
		}
		if len(mxs) == 1 && mxs[0].Preference == 0 && mxs[0].Mx == "." {
			return DomainResult{Outcome: DomainNullMX, Reason: "null MX (RFC 7505): " + mx.Reason}
		}
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Preference < mxs[j].Preference })
		return DomainResult{Outcome: DomainFound, MX: mxs, Reason: reason}
	case DNSNXDomain:
		return DomainResult{Outcome: DomainNotFound, NXDomain: true, Reason: reason}
	case DNSCouldNotTell:
		return DomainResult{Outcome: DomainCouldNotTell, Reason: reason}
	}

	// No MX: the implicit MX is the domain's own address.
	aCh := make(chan DNSResult, 1)
	go func() { aCh <- r.Lookup(ctx, domain, dns.TypeA) }()
	aaaa := r.Lookup(ctx, domain, dns.TypeAAAA)
	a := <-aCh
	reason += "; A: " + a.Reason + "; AAAA: " + aaaa.Reason
	switch {
	case a.Outcome == DNSFound || aaaa.Outcome == DNSFound:
		return DomainResult{Outcome: DomainFound, Reason: reason}
	case a.NotFound() && aaaa.NotFound():
		return DomainResult{Outcome: DomainNotFound, NXDomain: a.Outcome == DNSNXDomain && aaaa.Outcome == DNSNXDomain, Reason: reason}
	default:
		return DomainResult{Outcome: DomainCouldNotTell, Reason: reason}
	}
}

// ReverseIP returns the labels under which a DNSBL (or in-addr.arpa /
// ip6.arpa) lists ip, without the zone: "4.3.2.1" for 1.2.3.4, and the 32
// nibbles in reverse order, dot-separated, for an IPv6 address. An
// IPv4-mapped IPv6 address is treated as the IPv4 address. The caller
// appends "." + zone. It returns "" for the zero Addr.
func ReverseIP(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	case ip.Is6():
		const hexdigits = "0123456789abcdef"
		b := ip.As16()
		out := make([]byte, 0, 63)
		for i := len(b) - 1; i >= 0; i-- {
			if len(out) > 0 {
				out = append(out, '.')
			}
			out = append(out, hexdigits[b[i]&0xf], '.', hexdigits[b[i]>>4])
		}
		return string(out)
	}
	return ""
}

// LookupIPs returns the IPv4 addresses (A records) of name, which is what a
// DNSBL answers, with the lookup's result. The addresses are empty unless
// the outcome is DNSFound.
func (r *Resolver) LookupIPs(ctx context.Context, name string) ([]netip.Addr, DNSResult) {
	res := r.Lookup(ctx, name, dns.TypeA)
	if res.Outcome != DNSFound {
		return nil, res
	}
	ips := make([]netip.Addr, 0, len(res.Records))
	for _, rr := range res.Records {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.A).A); ok {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips, res
}

// LookupTXT returns the TXT records of name, one string per record with the
// record's character-strings joined without separator (RFC 7208 §3.3), with
// the lookup's result.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, DNSResult) {
	res := r.Lookup(ctx, name, dns.TypeTXT)
	if res.Outcome != DNSFound {
		return nil, res
	}
	txts := make([]string, 0, len(res.Records))
	for _, rr := range res.Records {
		var b strings.Builder
		for _, part := range rr.(*dns.TXT).Txt {
			b.WriteString(dnsUnescapeTXT(part))
		}
		txts = append(txts, b.String())
	}
	return txts, res
}

// dnsUnescapeTXT turns a character-string from miekg's presentation form
// (where a byte outside printable ASCII is "\DDD" and '"' or '\\' are
// backslash-escaped) back into its bytes, so that SPF and DNSBL reasons see
// the record as published.
func dnsUnescapeTXT(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			out = append(out, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		out = append(out, s[i+1])
		i++
	}
	return string(out)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
