package lookup

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Forward-confirmed reverse DNS (FCrDNS, "verified" reverse name): the
// client's PTR names, each kept only if its own A (for an IPv4 client) or
// AAAA (IPv6) records contain the client's address. A PTR record alone proves
// nothing — whoever controls the address's reverse zone can write any name
// there — so only a name whose owner points it back at the address counts.

// ReverseNameOutcome is the outcome of VerifiedName. The zero value is
// ReverseNameCouldNotTell.
type ReverseNameOutcome int

const (
	// ReverseNameCouldNotTell: the PTR lookup could not tell, or no PTR
	// name was confirmed and at least one forward lookup could not tell
	// (that name might have confirmed).
	ReverseNameCouldNotTell ReverseNameOutcome = iota
	// ReverseNameVerified: a PTR name's forward lookup contains the
	// address; ReverseNameResult.Name is that name.
	ReverseNameVerified
	// ReverseNameNone: certainly no verified name — no PTR record
	// (NXDOMAIN or NODATA), or every PTR name's forward lookup answered
	// without the address.
	ReverseNameNone
)

// String returns "verified", "none" or "could not tell".
func (o ReverseNameOutcome) String() string {
	switch o {
	case ReverseNameVerified:
		return "verified"
	case ReverseNameNone:
		return "none"
	case ReverseNameCouldNotTell:
		return "could not tell"
	}
	return "ReverseNameOutcome(" + strconv.Itoa(int(o)) + ")"
}

// ReverseNameResult is the answer of VerifiedName.
type ReverseNameResult struct {
	Outcome ReverseNameOutcome
	// Name is the verified name, lower-case, without the trailing dot
	// (ReverseNameVerified only).
	Name string
	// Reason lists the lookups made, for the log: "PTR: 1 PTR from …;
	// mx.example.net A: 1 A from …, contains 192.0.2.1".
	Reason string
}

// MaxVerifiedNamePTRs is how many PTR names of one address are
// forward-checked: RFC 7208 §4.6.4 sets the same limit of 10 for SPF's ptr
// mechanism. Names beyond it are ignored (and said so in the Reason).
const MaxVerifiedNamePTRs = 10

// ReverseName returns the reverse-DNS name of ip, without a trailing dot:
// "1.2.0.192.in-addr.arpa" or the 32 nibbles under "ip6.arpa". IPv4-mapped
// IPv6 addresses count as IPv4. It returns "" for the zero Addr.
func ReverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return ReverseIP(ip) + ".in-addr.arpa"
	case ip.Is6():
		return ReverseIP(ip) + ".ip6.arpa"
	}
	return ""
}

// VerifiedName returns the forward-confirmed reverse-DNS name of ip: the
// PTR lookup of ip, then, for each PTR name (at most MaxVerifiedNamePTRs,
// in parallel), the A lookup for an IPv4 address or the AAAA lookup for an
// IPv6 one; the first name in the PTR answer's order whose records contain
// ip is the verified name. All lookups go through the resolver, so they are
// cached and bounded by its timeouts and by ctx.
//
// Three outcomes: Verified with the name; None when it is certain there is
// none (no PTR, or every forward lookup answered without ip); CouldNotTell
// otherwise. A caller that uses the name to grant something (a whitelist)
// treats CouldNotTell like None; one that would refuse something for the
// lack of a name must not.
func (r *Resolver) VerifiedName(ctx context.Context, ip netip.Addr) ReverseNameResult {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return ReverseNameResult{Outcome: ReverseNameNone, Reason: "no client address"}
	}
	ptr := r.Lookup(ctx, ReverseName(ip), dns.TypePTR)
	reason := "PTR: " + ptr.Reason
	switch {
	case ptr.Outcome == DNSCouldNotTell:
		return ReverseNameResult{Outcome: ReverseNameCouldNotTell, Reason: reason}
	case ptr.NotFound():
		return ReverseNameResult{Outcome: ReverseNameNone, Reason: reason}
	}

	var names []string
	seen := map[string]bool{}
	for _, rr := range ptr.Records {
		p, ok := rr.(*dns.PTR)
		if !ok {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(p.Ptr, "."))
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		names = append(names, name)
	}
	if len(names) > MaxVerifiedNamePTRs {
		reason += fmt.Sprintf("; only the first %d of %d names checked", MaxVerifiedNamePTRs, len(names))
		names = names[:MaxVerifiedNamePTRs]
	}
	if len(names) == 0 {
		return ReverseNameResult{Outcome: ReverseNameNone, Reason: reason + "; no usable PTR name"}
	}

	qtype, family := dns.TypeA, "A"
	if ip.Is6() {
		qtype, family = dns.TypeAAAA, "AAAA"
	}
	results := make([]DNSResult, len(names))
	done := make(chan struct{}, len(names))
	for i, name := range names {
		go func() {
			results[i] = r.Lookup(ctx, name, qtype)
			done <- struct{}{}
		}()
	}
	for range names {
		<-done
	}

	verified, couldNotTell := "", false
	for i, res := range results {
		reason += fmt.Sprintf("; %s %s: %s", names[i], family, res.Reason)
		switch res.Outcome {
		case DNSFound:
			if verified == "" && recordsContain(res.Records, ip) {
				verified = names[i]
				reason += ", contains " + ip.String()
			}
		case DNSCouldNotTell:
			couldNotTell = true
		}
	}
	switch {
	case verified != "":
		return ReverseNameResult{Outcome: ReverseNameVerified, Name: verified, Reason: reason}
	case couldNotTell:
		return ReverseNameResult{Outcome: ReverseNameCouldNotTell, Reason: reason}
	}
	return ReverseNameResult{Outcome: ReverseNameNone, Reason: reason + "; no name leads back to " + ip.String()}
}

// recordsContain reports whether A or AAAA records hold ip.
func recordsContain(rrs []dns.RR, ip netip.Addr) bool {
	for _, rr := range rrs {
		var raw []byte
		switch a := rr.(type) {
		case *dns.A:
			raw = a.A
		case *dns.AAAA:
			raw = a.AAAA
		default:
			continue
		}
		if got, ok := netip.AddrFromSlice(raw); ok && got.Unmap() == ip {
			return true
		}
	}
	return false
}
