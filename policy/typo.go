package policy

// PopularDomains is the shipped default list of popular mail domains that a
// mistyped domain is compared with (SuggestDomain): the big webmail
// providers, the Japanese mobile carriers' mail domains and the large
// Japanese ISPs. The gateway adds the campus's own local domains. Order
// matters: when a typo is one edit away from two of them, the earlier wins,
// so the most used come first.
//
// It is also what `sekisho baddomains add` refuses to cover.
var PopularDomains = []string{
	// Webmail.
	"gmail.com",
	"googlemail.com",
	"yahoo.co.jp",
	"yahoo.com",
	"outlook.com",
	"outlook.jp",
	"hotmail.com",
	"hotmail.co.jp",
	"live.com",
	"live.jp",
	"msn.com",
	"icloud.com",
	"me.com",
	"mac.com",
	"aol.com",
	"ymail.com",
	"proton.me",
	"protonmail.com",
	"gmx.com",
	"zoho.com",
	// Japanese mobile carriers.
	"docomo.ne.jp",   // NTT docomo
	"ezweb.ne.jp",    // au (KDDI), old domain
	"au.com",         // au (KDDI)
	"softbank.ne.jp", // SoftBank
	"i.softbank.jp",  // SoftBank iPhone
	"ymobile.ne.jp",  // Y!mobile
	"yahoo.ne.jp",    // Y!mobile
	"uqmobile.jp",    // UQ mobile
	"rakumail.jp",    // Rakuten Mobile
	// Large Japanese ISPs.
	"nifty.com",
	"biglobe.ne.jp",
	"ocn.ne.jp",
	"so-net.ne.jp",
}

// SuggestDomain returns the domain of popular that domain is one edit away
// from — one insertion, deletion, substitution or transposition of two
// adjacent characters (the optimal string alignment distance, a restricted
// Damerau-Levenshtein distance, equal to 1) — comparing case-insensitively
// and without a trailing dot. A domain that is itself in popular is no typo:
// ok is false. When several are one edit away, the first in popular wins.
//
// It is meant for a domain already known not to exist (NXDOMAIN): a real
// domain one edit away from a popular one (mi.com, me.com) is no typo.
func SuggestDomain(domain string, popular []string) (suggestion string, ok bool) {
	d := NormalizeDomain(domain)
	if d == "" {
		return "", false
	}
	for _, p := range popular {
		if NormalizeDomain(p) == d {
			return "", false
		}
	}
	for _, p := range popular {
		if OneEdit(d, NormalizeDomain(p)) {
			return NormalizeDomain(p), true
		}
	}
	return "", false
}

// OneEdit reports whether a and b are exactly one edit apart: one byte
// inserted, deleted or substituted, or two adjacent bytes transposed. It runs
// in linear time without allocating.
func OneEdit(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(b)-len(a) > 1 || a == b {
		return false
	}
	i := 0
	for i < len(a) && a[i] == b[i] {
		i++
	}
	if len(a) < len(b) {
		return a[i:] == b[i+1:] // b has one more byte at i
	}
	if a[i+1:] == b[i+1:] {
		return true // substitution at i
	}
	return i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
}
