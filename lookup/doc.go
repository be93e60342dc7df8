// Package lookup holds sekisho's DNS and LDAP clients. Every answer they give
// is one of three: found, not found, or could not tell (DESIGN.md §1, §4).
// "Could not tell" — a timeout, SERVFAIL, REFUSED, a network error, a
// malformed answer, LDAP busy or unavailable, the canary missing — is its own
// outcome and never turns into "not found"; the zero value of each outcome
// type is the could-not-tell one, so a result nobody filled in is never taken
// for a certain answer.
//
// DNS: Resolver (NewResolver, DNSConfig) asks the configured resolvers over
// UDP with EDNS0, falls back to TCP on truncation, caches answers by their TTL
// and negative answers by the SOA's negative TTL (RFC 2308), and shares one
// upstream query between concurrent identical lookups. On top of it:
// DomainExists (MX, then A/AAAA, with null MX as its own outcome), LookupIPs
// and LookupTXT for DNSBLs, ReverseIP, the DNS canary (Healthy), and
// SPFResolver, the adapter for blitiri.com.ar/go/spf.
//
// LDAP: see the LDAP section of README.md.
//
// Nothing here logs: results carry a Reason for the caller's log line.
package lookup
