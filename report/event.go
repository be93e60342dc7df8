package report

import (
	"net/netip"
	"time"
)

// The causes a decision is counted under (DESIGN.md §6). Every deferral and
// rejection of a MAIL, RCPT, DATA or connection has one; so does accepted
// mail.
const (
	Accepted        = "accepted"
	LDAPTempfail    = "ldap_tempfail"    // the account check could not tell (LDAP down, canary missing)
	LDAPStale       = "ldap_stale"       // accepted from the account memory while the directory could not tell
	DNSTempfail     = "dns_tempfail"     // a DNS lookup could not tell
	NXDomain        = "nxdomain"         // the 450/550 for a domain that does not exist
	BadDomain       = "bad_domain"       // the known-bad list, special-use names
	UnknownUser     = "unknown_user"     // 550 5.1.1 with the canary present
	Greylist        = "greylist"         // 451 4.7.1
	DNSBL           = "dnsbl"            // a listing
	SPF             = "spf"              // SPF fail (or temperror when tempfail is set)
	DMARC           = "dmarc"            // refused by DKIM/DMARC (a From domain's policy, a spoofed local From), or deferred (could not tell)
	Header          = "header"           // a header rule broken
	Pregreet        = "pregreet"         // talked before the banner
	RelayDenied     = "relay_denied"     // not a local domain, routing syntax, literal
	NexthopTempfail = "nexthop_tempfail" // no next hop answered, or its 4xx
	AuthFailure     = "auth_failure"     // SMTP AUTH refused (535) or throttled
	OtherTempfail   = "other_tempfail"   // any other 4xx of ours
)

// Causes lists every cause, in the order reports show them.
var Causes = []string{
	Accepted, LDAPTempfail, DNSTempfail, NXDomain, BadDomain, UnknownUser, Greylist,
	DNSBL, SPF, DMARC, Header, Pregreet, RelayDenied, NexthopTempfail, AuthFailure, OtherTempfail,
	LDAPStale,
}

// Event is one decision, as the gateway reports it for counting.
type Event struct {
	Time      time.Time
	Cause     string     // one of Causes
	Listener  string     // "smtp", "lmtp", "submission", "submissions"
	Client    netip.Addr // counted by network (IPv4 /24, IPv6 /64) for the distinct triplets
	Sender    string     // envelope sender, "" for the null sender or before MAIL
	Recipient string     // "" at connect and MAIL
	// Check is the check or gateway rule that decided, as in the
	// decisions metric's check label ("auth" for SMTP AUTH, "submission"
	// for an authenticated user's own limits, "" when every check passed).
	// The report counts by Cause; the tempfail alarm also looks at Check.
	Check string
	// Domain is the domain refused, for NXDomain and BadDomain (the
	// report's top domains, the candidates for baddomains.txt) and the
	// From domain of a message refused by DMARC (the top spoofed domains).
	Domain string
}

// Recorder takes decisions to count. Record must never block the SMTP
// session that calls it: a recorder buffers, and drops (and counts what it
// dropped) when its buffer is full.
type Recorder interface {
	Record(Event)
}
