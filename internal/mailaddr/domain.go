package mailaddr

// Domain names: the one validator (ToASCII) and the one matcher (DomainSet)
// of sekisho.
//
// A domain name is compared, looked up and listed in its ASCII form: lower
// case, without the trailing dot of an absolute name, every U-label of an
// internationalized name converted to its A-label (RFC 5890 §2.3.2.1, with
// the UTS #46 non-transitional mapping that browsers and resolvers use:
// "Bücher.example" and "xn--bcher-kva.example" are the same name).

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// idnaProfile converts U-labels to A-labels for a lookup (UTS #46
// non-transitional processing, so "ß" stays "ß" as IDNA2008 wants, with
// the Bidi rule of RFC 5893). The host-name rules are checked afterwards by
// checkHostName, with errors an admin can act on.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// MaxDomainLength and MaxLabelLength are the limits of RFC 1035 §2.3.4 (the
// 255 octets of the wire form are 253 in text without the trailing dot).
const (
	MaxDomainLength = 253
	MaxLabelLength  = 63
)

// ToASCII returns the ASCII form of a domain name, the form sekisho looks
// up, lists and compares: lower-cased, without one trailing dot, U-labels
// converted to A-labels (xn--...). The error says what makes name not a host
// name in words an admin can act on: RFC 1035 §2.3.1 / RFC 5321 §4.1.2
// labels of letters, digits and hyphens, not beginning or ending with a
// hyphen, 1 to 63 octets each, at most 253 octets in all, and a top-level
// label that is not all digits (an IP address is not a domain name, RFC 3696
// §2). An address literal ("[192.0.2.1]") is not a domain name either.
func ToASCII(name string) (string, error) {
	d := strings.TrimSuffix(name, ".")
	if d == "" {
		return "", errors.New("empty name")
	}
	if !isASCII(d) {
		if !utf8.ValidString(d) {
			return "", fmt.Errorf("%+q is not valid UTF-8, so not an internationalized domain name (IDNA, RFC 5891)", name)
		}
		a, err := idnaProfile.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("%+q is not a valid internationalized domain name (IDNA, RFC 5891): %v", name, err)
		}
		d = strings.TrimSuffix(a, ".")
	}
	d = strings.ToLower(d)
	if err := checkHostName(d); err != nil {
		return "", err
	}
	return d, nil
}

// Valid reports whether name is a valid domain name as ToASCII checks it.
func Valid(name string) bool {
	_, err := ToASCII(name)
	return err == nil
}

// Fold is the comparison form of a domain name without validation: lower
// case, without one trailing dot, A-labels for U-labels when name converts
// (otherwise name is only lower-cased). Use ToASCII where an invalid name
// must be refused.
func Fold(name string) string {
	d := strings.TrimSuffix(name, ".")
	if isASCII(d) {
		return strings.ToLower(d)
	}
	if a, err := idnaProfile.ToASCII(d); err == nil && utf8.ValidString(d) {
		return strings.ToLower(strings.TrimSuffix(a, "."))
	}
	return strings.ToLower(d)
}

// checkHostName checks the lower-case ASCII name d.
func checkHostName(d string) error {
	if strings.HasPrefix(d, "[") {
		return fmt.Errorf("%q is an address literal, not a domain name", d)
	}
	if len(d) > MaxDomainLength {
		return fmt.Errorf("name is %d octets long; at most %d are allowed (RFC 1035 section 2.3.4)", len(d), MaxDomainLength)
	}
	var tld string
	for label := range strings.SplitSeq(d, ".") {
		if err := checkLabel(label); err != nil {
			return err
		}
		tld = label
	}
	if strings.Trim(tld, "0123456789") == "" {
		return fmt.Errorf("top-level label %q is all digits: an IP address is not a domain name (write it as an address literal [192.0.2.1])", tld)
	}
	return nil
}

func checkLabel(label string) error {
	if label == "" {
		return errors.New("empty label (a dot at the start or two dots in a row)")
	}
	if len(label) > MaxLabelLength {
		return fmt.Errorf("label %q is %d octets long; at most %d are allowed (RFC 1035 section 2.3.4)", label, len(label), MaxLabelLength)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("character %q is not allowed in label %q (letters, digits and hyphens only, RFC 5321 section 4.1.2)", c, label)
		}
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q begins or ends with a hyphen (RFC 5321 section 4.1.2)", label)
	}
	return nil
}

// DomainSet matches domain names against a list of entries:
//
//	example.org    example.org exactly
//	.example.org   every name below example.org; with NewDomainTree also
//	               example.org itself
//	*              every domain name that is not an address literal
//
// Entries and the names looked up are compared in their ASCII form (Fold):
// case-insensitive, a trailing dot ignored, U-labels as A-labels. A
// DomainSet is immutable and safe for concurrent use; the zero value is the
// empty set.
type DomainSet struct {
	exact   map[string]bool // folded names
	subtree map[string]bool // folded names, without the leading dot
	any     bool
	// self: a subtree entry ".x" also covers x itself.
	self bool
	n    int
}

// NewDomainSet builds a set in which ".x" covers only the names below x (not
// x itself, as Postfix with parent_domain_matches_subdomains off: list both
// "x" and ".x" to get both). This is the form of local_domains and routes.
// Empty entries are ignored.
func NewDomainSet(entries []string) DomainSet {
	return newDomainSet(entries, false)
}

// NewDomainTree builds a set in which ".x" covers x itself AND every name
// below it: the form of baddomains.txt (DESIGN.md §6: "a line .example also
// covers its subdomains") and of the greylisting whitelist.
func NewDomainTree(entries []string) DomainSet {
	return newDomainSet(entries, true)
}

func newDomainSet(entries []string, self bool) DomainSet {
	ds := DomainSet{self: self}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "*":
			if !ds.any {
				ds.any = true
				ds.n++
			}
		case strings.HasPrefix(e, "."):
			if d := Fold(e[1:]); d != "" && !ds.subtree[d] {
				if ds.subtree == nil {
					ds.subtree = map[string]bool{}
				}
				ds.subtree[d] = true
				ds.n++
			}
		default:
			if d := Fold(e); d != "" && !ds.exact[d] {
				if ds.exact == nil {
					ds.exact = map[string]bool{}
				}
				ds.exact[d] = true
				ds.n++
			}
		}
	}
	return ds
}

// Len is the number of distinct entries.
func (ds DomainSet) Len() int { return ds.n }

// Contains reports whether domain is in the set.
func (ds DomainSet) Contains(domain string) bool {
	_, ok := ds.Match(domain)
	return ok
}

// Match returns the entry that covers domain, in its folded form
// ("example.org", ".example.org" or "*"): an exact entry first, then the
// closest subtree entry (".a.example.org" before ".example.org"), then "*".
// The empty name and an address literal ("[192.0.2.1]") match nothing.
func (ds DomainSet) Match(domain string) (entry string, ok bool) {
	d := Fold(domain)
	if d == "" || strings.HasPrefix(d, "[") {
		return "", false
	}
	if ds.exact[d] {
		return d, true
	}
	if len(ds.subtree) > 0 {
		s := d
		if !ds.self {
			s = parent(d)
		}
		for ; s != ""; s = parent(s) {
			if ds.subtree[s] {
				return "." + s, true
			}
		}
	}
	if ds.any {
		return "*", true
	}
	return "", false
}

// parent is d without its first label; "" for a single label.
func parent(d string) string {
	if i := strings.IndexByte(d, '.'); i >= 0 {
		return d[i+1:]
	}
	return ""
}
