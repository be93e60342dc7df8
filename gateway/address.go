package gateway

import (
	"strings"
)

// Address is an envelope address split at its LAST '@', which is where an
// SMTP server must look: `"u@ext"@local` arrives from go-smtp unquoted as
// `u@ext@local`, and its domain is `local`.
type Address struct {
	Local  string
	Domain string // lower-cased; "" for the null sender
}

// ParseAddress splits an envelope address. ok is false when there is no '@' or
// either side is empty (except for the null sender "").
func ParseAddress(s string) (Address, bool) {
	if s == "" {
		return Address{}, true
	}
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return Address{}, false
	}
	return Address{Local: s[:i], Domain: strings.ToLower(strings.TrimSuffix(s[i+1:], "."))}, true
}

// String gives the address back as local@domain.
func (a Address) String() string {
	if a.Domain == "" && a.Local == "" {
		return ""
	}
	return a.Local + "@" + a.Domain
}

// IsLiteral reports an address literal domain such as [192.0.2.1] (RFC 5321
// §4.1.3).
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// HasRoutingSyntax reports local parts that some MTA behind us might treat as a
// further hop: `u%ext` (the percent hack), `ext!u` (UUCP bang path), `u@ext`
// (from a quoted local part or a source route remnant), and `:`. An outside
// client sending such a recipient to a local domain is asking us to relay.
func (a Address) HasRoutingSyntax() bool {
	return strings.ContainsAny(a.Local, "%!@:")
}

// DomainSet matches domains against a list in which "example.org" matches
// exactly and ".example.org" matches every subdomain of example.org (not
// example.org itself, as in Postfix's parent_domain_matches_subdomains off;
// list both to get both). "*" matches every domain name that is not an
// address literal.
type DomainSet struct {
	exact    map[string]bool
	suffixes []string
	any      bool
}

// NewDomainSet builds a set; entries are lower-cased and a trailing dot is
// ignored.
func NewDomainSet(entries []string) DomainSet {
	ds := DomainSet{exact: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(e), "."))
		switch {
		case e == "*":
			ds.any = true
		case strings.HasPrefix(e, "."):
			ds.suffixes = append(ds.suffixes, e)
		case e != "":
			ds.exact[e] = true
		}
	}
	return ds
}

// Contains reports whether domain is in the set.
func (ds DomainSet) Contains(domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || strings.HasPrefix(domain, "[") {
		return false
	}
	if ds.any || ds.exact[domain] {
		return true
	}
	for _, s := range ds.suffixes {
		if strings.HasSuffix(domain, s) {
			return true
		}
	}
	return false
}
