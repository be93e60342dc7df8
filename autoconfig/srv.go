package autoconfig

import (
	"time"

	"github.com/miekg/dns"
)

// SRVTTL is the TTL of the records SRV prints.
const SRVTTL = time.Hour

// SRV returns the records that locate the submission listeners for domain
// (ASCII) in DNS, as zone-file lines: _submissions._tcp (implicit TLS, RFC
// 8314 §5.1) and _submission._tcp (STARTTLS, RFC 6186 §3.1), each on
// Hostname and its port. When both listeners exist, _submissions gets the
// lower (preferred) priority, 0 against 10, for the clients that compare
// priorities across the two services, as RFC 8314 §3 prefers implicit TLS.
// A listener that does not exist is published as not available: target
// "." (RFC 2782), so that a client does not try it. Weight 0: one target
// (RFC 2782). Nothing when neither listener exists.
func (s *Settings) SRV(domain string) []string {
	if s.SubmissionPort == 0 && s.SubmissionsPort == 0 {
		return nil
	}
	record := func(service string, priority uint16, port int) string {
		rr := &dns.SRV{
			Hdr:      dns.RR_Header{Name: dns.Fqdn(service + "._tcp." + domain), Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: uint32(SRVTTL / time.Second)},
			Priority: priority, Target: ".",
		}
		if port != 0 {
			rr.Port, rr.Target = uint16(port), dns.Fqdn(s.Hostname)
		}
		return rr.String()
	}
	subsPriority, subPriority := uint16(0), uint16(0)
	if s.SubmissionsPort != 0 && s.SubmissionPort != 0 {
		subPriority = 10
	}
	return []string{
		record("_submissions", subsPriority, s.SubmissionsPort),
		record("_submission", subPriority, s.SubmissionPort),
	}
}
