package policy

// The known-bad domain list (DESIGN.md §3 row 3, §6).
//
// File format (baddomains.txt):
//
//   - one domain per line; blank lines are ignored;
//   - '#' starts a comment, on a line of its own or after the domain;
//   - a line "example.com" covers exactly example.com;
//   - a line ".example.com" covers example.com itself AND every name below it
//     (DESIGN.md §6: "a line .example also covers its subdomains"), so an admin
//     writes one line for "this domain and everything under it";
//   - names are host names as mailaddr.ToASCII accepts them (RFC 1035
//     §2.3.1, RFC 5890 §2.3.1): letters, digits and hyphens, labels of 1-63
//     octets, the whole name at most 253 octets, a top-level label that is
//     not all digits (an IP address is not a domain); an internationalized
//     name may be written with U-labels ("bücher.example") or A-labels
//     ("xn--bcher-kva.example"), and is stored and matched as A-labels;
//     upper case is folded to lower case and a trailing dot is dropped;
//   - a line that breaks these rules makes the whole file invalid, with an
//     error naming file:line and what is wrong. A duplicate entry is not an
//     error (the first one wins when a match is reported).
//
// Special-use names (SpecialUse) are bad without being listed.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"sekisho/internal/mailaddr"
)

// BadDomainEntry is one entry of the bad-domain list.
type BadDomainEntry struct {
	Domain  string // lower case, no trailing dot, no leading dot
	Subtree bool   // the line began with a dot: Domain and every name below it
	Line    int    // 1-based line number in the file
}

// String is the entry as it is written in the file.
func (e BadDomainEntry) String() string {
	if e.Subtree {
		return "." + e.Domain
	}
	return e.Domain
}

// Covers reports whether the entry matches domain.
func (e BadDomainEntry) Covers(domain string) bool {
	return mailaddr.NewDomainTree([]string{e.String()}).Contains(domain)
}

// BadDomainMatch says why a domain is bad: a line of the list or a built-in
// special-use rule. It is what the domain check logs.
type BadDomainMatch struct {
	Domain string // the normalized domain that was looked up
	Entry  string // the list entry (".example.com") or the special-use name
	File   string // the list's file; "" for a special-use rule
	Line   int    // the entry's line; 0 for a special-use rule
	Rule   string // one line for logs: "baddomains.txt:12: .example.com" or "special-use name .invalid (RFC 6761 §6.4)"
}

// SpecialUse reports whether the match came from a built-in special-use rule
// rather than a line of the list.
func (m BadDomainMatch) SpecialUse() bool { return m.Line == 0 }

// BadDomainLineError is an invalid line of a bad-domain file.
type BadDomainLineError struct {
	File string
	Line int
	Text string // the line's text, comment stripped
	Err  error  // what is wrong with it
}

func (e *BadDomainLineError) Error() string {
	return fmt.Sprintf("%s:%d: %q: %v", e.File, e.Line, e.Text, e.Err)
}

func (e *BadDomainLineError) Unwrap() error { return e.Err }

// maxLineErrors bounds the errors one parse reports: enough to fix a file in
// one go, not a screenful for a binary file given by mistake.
const maxLineErrors = 20

// BadDomainList is a parsed, immutable bad-domain list. It is safe for
// concurrent use.
type BadDomainList struct {
	file    string
	entries []BadDomainEntry
	set     mailaddr.DomainSet // the entries, ".x" covering x too
	first   map[string]int     // entry as written (String) -> index of its first line
	sum     [sha256.Size]byte
}

// ParseBadDomains parses the content of a bad-domain file; file names it in
// errors and matches. An invalid line makes the whole content invalid: the
// error lists every bad line (up to 20), each as *BadDomainLineError naming
// file:line.
func ParseBadDomains(file string, content []byte) (*BadDomainList, error) {
	l := &BadDomainList{
		file:  file,
		first: map[string]int{},
		sum:   sha256.Sum256(content),
	}
	var errs []error
	for i, raw := range splitLines(content) {
		lineNo := i + 1
		text := lineText(raw, i == 0)
		if text == "" {
			continue
		}
		entry, err := ParseBadDomainEntry(text)
		if err != nil {
			if len(errs) < maxLineErrors {
				errs = append(errs, &BadDomainLineError{File: file, Line: lineNo, Text: text, Err: err})
			}
			continue
		}
		entry.Line = lineNo
		if _, dup := l.first[entry.String()]; !dup {
			l.first[entry.String()] = len(l.entries)
		}
		l.entries = append(l.entries, entry)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	names := make([]string, len(l.entries))
	for i, e := range l.entries {
		names[i] = e.String()
	}
	l.set = mailaddr.NewDomainTree(names)
	return l, nil
}

// File is the file name the list was parsed from.
func (l *BadDomainList) File() string { return l.file }

// Len is the number of entries.
func (l *BadDomainList) Len() int { return len(l.entries) }

// Entries returns a copy of the entries in file order.
func (l *BadDomainList) Entries() []BadDomainEntry {
	return append([]BadDomainEntry(nil), l.entries...)
}

// Lookup finds the entry that covers domain: an exact entry first, then the
// closest subtree entry (".a.example.com" before ".example.com"). domain is
// compared in its ASCII form (mailaddr.DomainSet): a U-label name matches
// the entry of its A-labels.
func (l *BadDomainList) Lookup(domain string) (BadDomainEntry, bool) {
	if l == nil {
		return BadDomainEntry{}, false
	}
	entry, ok := l.set.Match(domain)
	if !ok {
		return BadDomainEntry{}, false
	}
	return l.entries[l.first[entry]], true
}

// Match is Lookup as a BadDomainMatch for logs.
func (l *BadDomainList) Match(domain string) (BadDomainMatch, bool) {
	e, ok := l.Lookup(domain)
	if !ok {
		return BadDomainMatch{}, false
	}
	return BadDomainMatch{
		Domain: NormalizeDomain(domain),
		Entry:  e.String(),
		File:   l.file,
		Line:   e.Line,
		Rule:   fmt.Sprintf("%s:%d: %s", l.file, e.Line, e),
	}, true
}

// NormalizeDomain folds a domain as the list stores it (mailaddr.Fold):
// lower case, without one trailing dot, A-labels for U-labels. It does not
// validate.
func NormalizeDomain(domain string) string {
	return mailaddr.Fold(domain)
}

// ParseBadDomainEntry parses one entry as written in the file (comment
// already removed): "example.com" or ".example.com". The returned entry has
// no Line.
func ParseBadDomainEntry(text string) (BadDomainEntry, error) {
	text = strings.TrimSpace(text)
	if strings.ContainsAny(text, " \t") {
		return BadDomainEntry{}, errors.New("more than one name on the line (one domain per line)")
	}
	var e BadDomainEntry
	if strings.HasPrefix(text, ".") {
		e.Subtree = true
		text = text[1:]
	}
	d, err := ValidateDomain(text)
	if err != nil {
		return BadDomainEntry{}, err
	}
	e.Domain = d
	return e, nil
}

// ValidateDomain checks that name is a host name as the list accepts it (see
// the file format above) and returns its ASCII form (mailaddr.ToASCII):
// lower case, A-labels, without a trailing dot. The error says what is wrong
// in words an admin can act on.
func ValidateDomain(name string) (string, error) {
	d := strings.TrimSuffix(name, ".")
	switch {
	case strings.Contains(d, "@"):
		return "", fmt.Errorf("%q is an address, not a domain: give the part after the @", name)
	case strings.HasPrefix(d, "*."):
		return "", errors.New("wildcards are not supported: write .example.com to cover a domain and everything below it")
	case strings.HasPrefix(d, "."):
		return "", errors.New("empty label: a dot too many at the start")
	}
	return mailaddr.ToASCII(name)
}

// splitLines splits content into lines, each keeping its line ending, so that
// an edit can write back every untouched line byte for byte.
func splitLines(content []byte) [][]byte {
	var lines [][]byte
	for len(content) > 0 {
		i := bytes.IndexByte(content, '\n')
		if i < 0 {
			lines = append(lines, content)
			break
		}
		lines = append(lines, content[:i+1])
		content = content[i+1:]
	}
	return lines
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// lineText is the entry part of a raw line: without line ending, comment and
// surrounding white space (and without a UTF-8 byte-order mark on the first
// line, which some Windows editors write).
func lineText(raw []byte, first bool) string {
	if first {
		raw = bytes.TrimPrefix(raw, utf8BOM)
	}
	if i := bytes.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	return string(bytes.TrimSpace(raw))
}

// --- Special-use names ------------------------------------------------------

// specialUse are the names that are bad without being listed, each covering
// itself and every name below it, with the reference that reserves it.
var specialUse = []struct{ name, ref string }{
	{"invalid", "RFC 6761 §6.4"},
	{"test", "RFC 6761 §6.2"},
	{"example", "RFC 6761 §6.5"},
	{"example.com", "RFC 2606 §3"},
	{"example.net", "RFC 2606 §3"},
	{"example.org", "RFC 2606 §3"},
	{"localhost", "RFC 6761 §6.3"},
	{"local", "RFC 6762 (multicast DNS)"},
	{"localhost.localdomain", "unconfigured-host default"},
	{"onion", "RFC 7686"},
	{"alt", "RFC 9476"},
	{"home.arpa", "RFC 8375"},
}

var specialUseRef = func() map[string]string {
	m := map[string]string{}
	for _, s := range specialUse {
		m[s.name] = s.ref
	}
	return m
}()

// specialUseSet holds the special-use names as subtree entries (".invalid"),
// each covering the name and everything below it.
var specialUseSet = func() mailaddr.DomainSet {
	var names []string
	for _, s := range specialUse {
		names = append(names, "."+s.name)
	}
	return mailaddr.NewDomainTree(names)
}()

// specialUseName is the reserved name that covers the normalized domain d,
// "" if none. (The bare-name rule is not a name and is not reported here.)
func specialUseName(d string) string {
	if entry, ok := specialUseSet.Match(d); ok {
		return strings.TrimPrefix(entry, ".")
	}
	return ""
}

// SpecialUseNames lists the special-use names SpecialUse knows (each covers
// itself and everything below it), for documentation and `explain`.
func SpecialUseNames() []string {
	names := make([]string, len(specialUse))
	for i, s := range specialUse {
		names[i] = s.name
	}
	return names
}

// SpecialUse reports whether domain is a special-use name that can never be a
// mail domain on the Internet, and which rule says so: the reserved names of
// RFC 2606, 6761, 6762, 7686, 8375 and 9476 (.invalid, .test, .example,
// example.com/.net/.org, .localhost, .local, .onion, .alt, home.arpa),
// localhost.localdomain, and a bare host name without a dot (RFC 5321 §2.3.5:
// only fully-qualified domain names are permitted in SMTP). Each covers the
// name and everything below it. A domain literal ("[192.0.2.1]") and the
// empty string are not domains: false.
func SpecialUse(domain string) (rule string, ok bool) {
	d := NormalizeDomain(domain)
	if d == "" || strings.HasPrefix(d, "[") {
		return "", false
	}
	if name := specialUseName(d); name != "" {
		return fmt.Sprintf("special-use name .%s (%s)", name, specialUseRef[name]), true
	}
	if !strings.Contains(d, ".") {
		return "bare host name without a dot (RFC 5321 §2.3.5: only fully-qualified names in SMTP)", true
	}
	return "", false
}

// specialUseMatch is SpecialUse as a BadDomainMatch.
func specialUseMatch(domain string) (BadDomainMatch, bool) {
	rule, ok := SpecialUse(domain)
	if !ok {
		return BadDomainMatch{}, false
	}
	d := NormalizeDomain(domain)
	entry := d // a bare host name
	if name := specialUseName(d); name != "" {
		entry = "." + name
	}
	return BadDomainMatch{Domain: d, Entry: entry, Rule: rule}, true
}

// MatchBadDomain checks domain against list (which may be nil) and then the
// special-use rules, in that order: an admin's line names the file and line
// it came from in the log, which a built-in rule cannot. It is what
// BadDomains.Match does with the list in force.
func MatchBadDomain(list *BadDomainList, domain string) (BadDomainMatch, bool) {
	if m, ok := list.Match(domain); ok {
		return m, true
	}
	return specialUseMatch(domain)
}
