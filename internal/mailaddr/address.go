// Package mailaddr is sekisho's one place for the syntax of mail addresses
// and domain names: parsing the paths of MAIL and RCPT (RFC 5321 §4.1.2, with
// the UTF-8 extension of RFC 6531), writing them back in wire form, and
// validating and matching domain names.
package mailaddr

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Address is an envelope mailbox. Local is the local part as the mailbox
// means it: a quoted string is stored without its quotes and backslashes, so
// that `"a b"@x` has Local `a b`. Domain is lower-cased, without a trailing
// dot. The null reverse-path <> is the zero Address.
type Address struct {
	Local  string
	Domain string
}

// The ways a path can be malformed. Each is an error a server answers with a
// syntax reply (501).
var (
	ErrSyntax      = errors.New("malformed address")
	ErrNotASCII    = errors.New("non-ASCII address without SMTPUTF8")
	ErrNoBrackets  = errors.New("address must be enclosed in <>")
	ErrPostmasterO = errors.New("a domain-less address is only allowed as <postmaster>")
)

// IsNull reports the null reverse-path <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// IsPostmaster reports the bare <postmaster> of RFC 5321 §4.5.1 (no domain).
func (a Address) IsPostmaster() bool {
	return a.Domain == "" && strings.EqualFold(a.Local, "postmaster")
}

// IsASCII reports whether the address can be sent without SMTPUTF8.
func (a Address) IsASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// IsLiteral reports an address literal domain such as [192.0.2.1] (RFC 5321
// §4.1.3).
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// HasRoutingSyntax reports local parts that some MTA behind us might treat as
// a further hop: `u%ext` (the percent hack), `ext!u` (UUCP bang path), `u@ext`
// (from a quoted local part) and `:`. An outside client sending such a
// recipient to a local domain is asking us to relay.
func (a Address) HasRoutingSyntax() bool { return strings.ContainsAny(a.Local, "%!@:") }

// String is the address in wire form, as it goes into a MAIL or RCPT command
// between the angle brackets: the local part is written as a dot-string when
// it is one, and as a quoted string otherwise (RFC 5321 §4.1.2), so that no
// byte of it can be read as the end of the path or as a parameter.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	local := a.Local
	if !isDotString(local) {
		local = quote(local)
	}
	if a.Domain == "" {
		return local
	}
	return local + "@" + a.Domain
}

// ParsePath parses the path at the start of s, the argument of MAIL FROM: or
// RCPT TO: after the colon, and returns the address and what follows it (the
// ESMTP parameters). A source route (`<@a,@b:u@d>`) is accepted and ignored
// (RFC 5321 §4.1.1.3, §C). allowNull permits <> (MAIL); allowPostmaster
// permits the domain-less <postmaster> (RCPT, RFC 5321 §4.5.1); utf8 permits
// non-ASCII characters (RFC 6531, after SMTPUTF8 was given).
func ParsePath(s string, allowNull, allowPostmaster, utf8 bool) (addr Address, rest string, err error) {
	if !strings.HasPrefix(s, "<") {
		return Address{}, s, ErrNoBrackets
	}
	s = s[1:]
	if strings.HasPrefix(s, ">") {
		if !allowNull {
			return Address{}, s, ErrSyntax
		}
		return Address{}, s[1:], nil
	}
	if strings.HasPrefix(s, "@") {
		// Source route: skip to the colon that ends it.
		i := strings.IndexByte(s, ':')
		if i < 0 || strings.ContainsAny(s[:i], "<>\" ") {
			return Address{}, s, ErrSyntax
		}
		s = s[i+1:]
	}
	local, s, err := parseLocal(s)
	if err != nil {
		return Address{}, s, err
	}
	if strings.HasPrefix(s, ">") {
		a := Address{Local: local}
		if !allowPostmaster || !a.IsPostmaster() {
			return Address{}, s, ErrPostmasterO
		}
		return Address{Local: "postmaster"}, s[1:], nil
	}
	if !strings.HasPrefix(s, "@") {
		return Address{}, s, ErrSyntax
	}
	s = s[1:]
	end := strings.IndexByte(s, '>')
	if end < 0 {
		return Address{}, s, ErrSyntax
	}
	domain := s[:end]
	if !validDomainPart(domain) {
		return Address{}, s, ErrSyntax
	}
	a := Address{Local: local, Domain: strings.ToLower(strings.TrimSuffix(domain, "."))}
	if !utf8 && !a.IsASCII() {
		return Address{}, s, ErrNotASCII
	}
	return a, s[end+1:], nil
}

// parseLocal reads a dot-string or a quoted string (RFC 5321 §4.1.2).
func parseLocal(s string) (local, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '"':
				if b.Len() == 0 {
					return "", s, ErrSyntax // "" is no local part
				}
				return b.String(), s[i+1:], nil
			case c == '\\':
				// quoted-pairSMTP = "\" %d32-126
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return "", s, ErrSyntax
				}
				i++
				b.WriteByte(s[i])
			case c < 32 || c == 127:
				return "", s, ErrSyntax
			default:
				b.WriteByte(c)
			}
		}
		return "", s, ErrSyntax
	}
	i := 0
	for i < len(s) && s[i] != '@' && s[i] != '>' {
		i++
	}
	local = s[:i]
	if !isDotString(local) {
		return "", s, ErrSyntax
	}
	return local, s[i:], nil
}

// isDotString reports RFC 5321 Dot-string: atoms of atext joined by single
// dots. Non-ASCII UTF-8 counts as atext (RFC 6531 §3.3).
func isDotString(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for atom := range strings.SplitSeq(s, ".") {
		if atom == "" {
			return false
		}
		for _, r := range atom {
			if !isAtext(r) {
				return false
			}
		}
	}
	return true
}

func isAtext(r rune) bool {
	switch {
	case r >= 0x80:
		return true
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// quote writes a local part as an RFC 5321 Quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// validDomainPart checks the domain of a path: a domain name (LDH labels, or
// U-labels under SMTPUTF8, with an optional trailing dot, which is normalised
// away) or an address literal. Its full validation (IDNA) is ToASCII's; here
// only what could break the command line or a header is refused.
func validDomainPart(d string) bool {
	if d == "" || !utf8.ValidString(d) {
		return false
	}
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") || len(d) < 3 {
			return false
		}
		for _, r := range d[1 : len(d)-1] {
			if r <= 32 || r >= 127 || r == '[' || r == ']' || r == '\\' {
				return false
			}
		}
		return true
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 0x80 || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
				return false
			}
		}
	}
	return len(d) <= 255
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
