package filters

// The syntax check of SPF records (RFC 7208 §12 ABNF), which the spf
// library does not do in full: it evaluates a record term by term, stops at
// the first match, and does not check domain-specs, exp= or the values of
// modifiers. RFC 7208 §4.6: a syntax error anywhere in the record is a
// permerror, before any evaluation. Without this check a malformed record
// ending in "-all" would give "fail", and fail: reject a 550, where the RFC
// result is permerror, which is only tagged.
//
// spfStrictResolver applies it to every record the library fetches (the
// sender's, includes, redirects): a record that does not parse is handed to
// the library as "v=spf1 <NUL>", a term it rejects with permerror, and the
// reason is kept for the Received-SPF problem= and the log.

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"blitiri.com.ar/go/spf"
)

// spfBrokenRecord is what a malformed record is replaced by: a term the
// library does not know, which it answers with permerror.
const spfBrokenRecord = "v=spf1 \x00"

// spfStrictResolver is the resolver of one evaluation, checking the syntax
// of the SPF records it returns.
type spfStrictResolver struct {
	spf.DNSResolver
	mu      sync.Mutex
	problem string // the first syntax error found
}

// LookupTXT returns the TXT records of name, with each SPF record that does
// not parse replaced by spfBrokenRecord.
func (r *spfStrictResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.DNSResolver.LookupTXT(ctx, name)
	if err != nil {
		return txts, err
	}
	out, copied := txts, false
	for i, txt := range txts {
		if !spfIsRecord(txt) {
			continue
		}
		if why := spfRecordSyntax(txt); why != "" {
			if !copied {
				out, copied = append([]string(nil), txts...), true
			}
			out[i] = spfBrokenRecord
			r.mu.Lock()
			if r.problem == "" {
				r.problem = "syntax error in the SPF record of " + name + ": " + why
			}
			r.mu.Unlock()
		}
	}
	return out, nil
}

func (r *spfStrictResolver) syntaxProblem() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.problem
}

// spfIsRecord reports whether the library takes txt for an SPF record
// (RFC 7208 §4.5: "v=spf1" followed by a space or the end).
func spfIsRecord(txt string) bool {
	l := strings.ToLower(txt)
	return l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ")
}

var (
	spfModifierName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*=`)
	spfMechName     = regexp.MustCompile(`^[A-Za-z0-9]+`)
	// A domain-spec (shortest) followed by a dual-cidr-length (longest).
	spfDomainCIDR = regexp.MustCompile(`(?s)^(.*?)((?:/[0-9]+)?(?://[0-9]+)?)$`)
	spfDualCIDR   = regexp.MustCompile(`^(?:/([0-9]+))?(?://([0-9]+))?$`)
	spfToplabel   = regexp.MustCompile(`^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])$`)
)

// spfRecordSyntax returns why record does not match RFC 7208's ABNF, ""
// when it does.
func spfRecordSyntax(record string) string {
	terms := strings.Split(record, " ")
	if !strings.EqualFold(terms[0], "v=spf1") {
		return "version is not v=spf1"
	}
	redirects, exps := 0, 0
	for _, term := range terms[1:] {
		if term == "" {
			continue // several spaces, or trailing spaces (*SP)
		}
		var why string
		if m := spfModifierName.FindString(term); m != "" {
			name, value := strings.ToLower(m[:len(m)-1]), term[len(m):]
			switch name {
			case "redirect":
				redirects++
				why = spfDomainSpec(value)
			case "exp":
				exps++
				why = spfDomainSpec(value)
			default:
				why = spfMacroString(value, true)
			}
			if redirects > 1 || exps > 1 {
				why = "more than one " + name + "= (RFC 7208 §6)"
			}
		} else {
			why = spfDirective(term)
		}
		if why != "" {
			return fmt.Sprintf("term %q: %s", spfClean(term, 64, false), why)
		}
	}
	return ""
}

// spfDirective checks [qualifier] mechanism.
func spfDirective(term string) string {
	if strings.IndexByte("+-?~", term[0]) >= 0 {
		term = term[1:]
	}
	name := spfMechName.FindString(term)
	rest := term[len(name):]
	switch strings.ToLower(name) {
	case "all":
		if rest != "" {
			return "all takes no argument"
		}
	case "include", "exists":
		if !strings.HasPrefix(rest, ":") {
			return name + " needs :domain"
		}
		return spfDomainSpec(rest[1:])
	case "a", "mx":
		if strings.HasPrefix(rest, ":") {
			m := spfDomainCIDR.FindStringSubmatch(rest[1:])
			if why := spfDomainSpec(m[1]); why != "" {
				return why
			}
			rest = m[2]
		}
		return spfCIDRs(rest)
	case "ptr":
		if rest == "" {
			return ""
		}
		if !strings.HasPrefix(rest, ":") {
			return "ptr takes :domain only"
		}
		return spfDomainSpec(rest[1:])
	case "ip4", "ip6":
		if !strings.HasPrefix(rest, ":") {
			return name + " needs :address"
		}
		addr, cidr, _ := strings.Cut(rest[1:], "/")
		ip, err := netip.ParseAddr(addr)
		v6 := strings.EqualFold(name, "ip6")
		if err != nil || ip.Zone() != "" || v6 != strings.Contains(addr, ":") {
			return "bad address " + strconv.Quote(addr)
		}
		if strings.Contains(rest[1:], "/") {
			max := 32
			if v6 {
				max = 128
			}
			return spfCIDRLength(cidr, max)
		}
	default:
		return "unknown mechanism"
	}
	return ""
}

// spfCIDRs checks a dual-cidr-length.
func spfCIDRs(s string) string {
	m := spfDualCIDR.FindStringSubmatch(s)
	if m == nil {
		return "bad CIDR length " + strconv.Quote(s)
	}
	if m[1] != "" {
		if why := spfCIDRLength(m[1], 32); why != "" {
			return why
		}
	}
	if m[2] != "" {
		return spfCIDRLength(m[2], 128)
	}
	return ""
}

// spfCIDRLength checks a prefix length: digits without a leading zero, at
// most max.
func spfCIDRLength(s string, max int) string {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max || (len(s) > 1 && s[0] == '0') || strings.ContainsAny(s, "+-") {
		return "bad CIDR length /" + s
	}
	return ""
}

// spfDomainSpec checks macro-string domain-end, where domain-end is
// "." toplabel ["."] or a macro-expand.
func spfDomainSpec(s string) string {
	if why := spfMacroString(s, false); why != "" {
		return why
	}
	if s == "" {
		return "empty domain"
	}
	// Literal text after the last macro-expand.
	tail := s
	if i := spfLastExpandEnd(s); i >= 0 {
		if i == len(s) {
			return "" // ends in a macro-expand
		}
		tail = s[i:]
	}
	tail = strings.TrimSuffix(tail, ".")
	dot := strings.LastIndexByte(tail, '.')
	if dot < 0 {
		return "domain does not end in .toplabel"
	}
	if !spfToplabel.MatchString(tail[dot+1:]) {
		return "bad top label " + strconv.Quote(tail[dot+1:])
	}
	return ""
}

// spfLastExpandEnd returns the index just after the last macro-expand of a
// valid macro-string, -1 if it has none.
func spfLastExpandEnd(s string) int {
	end := -1
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if s[i+1] == '{' {
			j := strings.IndexByte(s[i:], '}')
			i += j
		} else {
			i++
		}
		end = i + 1
	}
	return end
}

// spfMacroString checks *( macro-expand / macro-literal ) (RFC 7208 §7.1).
// The letters c, r and t are for explanation text only; unknown modifiers'
// values are not expanded, so anything goes there (inModifier).
func spfMacroString(s string, inModifier bool) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return fmt.Sprintf("character %#02x not allowed", c)
			}
			continue
		}
		if i+1 >= len(s) {
			return "% at the end"
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return "bad macro %" + string(s[i+1])
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "unterminated macro"
		}
		if why := spfMacroBody(s[i+2:i+j], inModifier); why != "" {
			return why
		}
		i += j
	}
	return ""
}

// spfMacroBody checks macro-letter transformers *delimiter.
func spfMacroBody(b string, inModifier bool) string {
	if b == "" {
		return "empty macro"
	}
	letters := "slodiphv"
	if inModifier {
		letters += "crt"
	}
	if strings.IndexByte(letters, spfLowerASCII(b[0])) < 0 {
		return "bad macro letter " + strconv.Quote(b[:1])
	}
	i := 1
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i < len(b) && (b[i] == 'r' || b[i] == 'R') {
		i++
	}
	for ; i < len(b); i++ {
		if strings.IndexByte(".-+,/_=", b[i]) < 0 {
			return "bad macro delimiter " + strconv.Quote(b[i:i+1])
		}
	}
	return ""
}

func spfLowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
