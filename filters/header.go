package filters

// The header-format check (DESIGN.md §3 row 4).
//
// Rules (name: what breaks it — default action):
//
//	from-count       not exactly one From field (RFC 5322 §3.6)            reject
//	date-count       not exactly one Date field (RFC 5322 §3.6)            reject
//	8bit             a byte >= 0x80 in the header section without SMTPUTF8
//	                 (RFC 5322 §2.2, RFC 6531/6532), or with SMTPUTF8 bytes
//	                 that are not UTF-8 (RFC 6532 §3.1)                    reject
//	duplicate-field  more than one Sender, Reply-To, To, Cc, Bcc,
//	                 Message-ID, In-Reply-To, References or Subject
//	                 (RFC 5322 §3.6 table)                                 tag
//	from-syntax      From is not a mailbox list (RFC 5322 §3.6.2, §3.4)    tag
//	sender-missing   From has several mailboxes and there is no Sender
//	                 (RFC 5322 §3.6.2)                                     tag
//	date-syntax      Date does not parse (RFC 5322 §3.3)                   tag
//	field-syntax     a line is neither a field nor a continuation, or a
//	                 field name is not printable ASCII without colon
//	                 (RFC 5322 §2.2 ftext)                                 tag
//	line-length      a line longer than 998 octets without CRLF
//	                 (RFC 5322 §2.1.1)                                     tag
//	header-size      the header section is larger than max_bytes
//	                 (default 256 KiB, see DefaultHeaderMaxBytes)          tag
//
// Each rule's action is configurable: reject, tag or off. A rejection is
// 550 5.6.0 naming the first broken rule. A tag adds one header field per
// broken rule, "X-Sekisho-Header-Violation: <rule>" (the rule name only, so a
// Sieve filter can test it with :is), and the mail goes on.
//
// The rules judge the whole header section they are given, whatever its
// size: max_bytes only says when header-size is broken. The gateway reads at
// most 1 MiB of header section (more is refused before anything is relayed,
// docs/flow.md), so what is judged is exactly what is relayed: a second From
// field cannot hide past a parsing bound (it did when the parser stopped at
// max_bytes and the gateway relayed the rest).
//
// The parser is our own: it splits lines on LF (dropping the CR of CRLF),
// unfolds continuation lines (RFC 5322 §2.2.3) and never fails; only the
// From and Date values go to net/mail. It is fuzzed (FuzzHeader).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"sekisho/policy"
)

// HeaderViolationField is the header field a tagged violation adds.
const HeaderViolationField = "X-Sekisho-Header-Violation"

// DefaultHeaderMaxBytes is the size above which a header section breaks
// header-size: 256 KiB is far above what real mail carries (long Received,
// DKIM and ARC chains stay well below 64 KiB). Postfix's header_size_limit
// is 100 KiB, but Postfix truncates rather than judges.
const DefaultHeaderMaxBytes = 256 << 10

// HeaderAction is what a broken header rule leads to.
type HeaderAction string

// The actions a header rule can have.
const (
	HeaderReject HeaderAction = "reject" // 550 5.6.0
	HeaderTag    HeaderAction = "tag"    // X-Sekisho-Header-Violation, mail goes on
	HeaderOff    HeaderAction = "off"    // not checked
)

// The header rules, in the order they are reported.
const (
	RuleFromCount     = "from-count"
	RuleDateCount     = "date-count"
	Rule8Bit          = "8bit"
	RuleDuplicate     = "duplicate-field"
	RuleFromSyntax    = "from-syntax"
	RuleSenderMissing = "sender-missing"
	RuleDateSyntax    = "date-syntax"
	RuleFieldSyntax   = "field-syntax"
	RuleLineLength    = "line-length"
	RuleHeaderSize    = "header-size"
)

// headerRules lists every rule with its default action and the reference a
// rejection names.
var headerRules = []struct {
	name   string
	action HeaderAction
	ref    string
}{
	{RuleFromCount, HeaderReject, "RFC 5322 section 3.6"},
	{RuleDateCount, HeaderReject, "RFC 5322 section 3.6"},
	{Rule8Bit, HeaderReject, "RFC 5322 section 2.2, RFC 6532"},
	{RuleDuplicate, HeaderTag, "RFC 5322 section 3.6"},
	{RuleFromSyntax, HeaderTag, "RFC 5322 section 3.6.2"},
	{RuleSenderMissing, HeaderTag, "RFC 5322 section 3.6.2"},
	{RuleDateSyntax, HeaderTag, "RFC 5322 section 3.3"},
	{RuleFieldSyntax, HeaderTag, "RFC 5322 section 2.2"},
	{RuleLineLength, HeaderTag, "RFC 5322 section 2.1.1"},
	{RuleHeaderSize, HeaderTag, "header size limit"},
}

// HeaderRules returns the rule names in report order.
func HeaderRules() []string {
	names := make([]string, len(headerRules))
	for i, r := range headerRules {
		names[i] = r.name
	}
	return names
}

// DefaultHeaderActions returns each rule's default action.
func DefaultHeaderActions() map[string]HeaderAction {
	m := make(map[string]HeaderAction, len(headerRules))
	for _, r := range headerRules {
		m[r.name] = r.action
	}
	return m
}

// HeaderConfig is checks.header in the config:
//
//	header: {max_bytes: 262144, rules: {date-syntax: reject, line-length: off}}
//
// A rule not named in Rules keeps its default action.
type HeaderConfig struct {
	Off      bool                    `yaml:"off"`       // the check lets everything pass
	MaxBytes int                     `yaml:"max_bytes"` // header-size threshold; 0: DefaultHeaderMaxBytes
	Rules    map[string]HeaderAction `yaml:"rules"`     // rule name -> reject / tag / off
}

// Validate reports unknown rule names, unknown actions and a negative bound.
func (c HeaderConfig) Validate() error {
	if c.MaxBytes < 0 {
		return fmt.Errorf("checks.header.max_bytes: %d is negative", c.MaxBytes)
	}
	defaults := DefaultHeaderActions()
	for name, a := range c.Rules {
		if _, ok := defaults[name]; !ok {
			return fmt.Errorf("checks.header.rules: unknown rule %q (known: %s)", name, strings.Join(HeaderRules(), ", "))
		}
		switch a {
		case HeaderReject, HeaderTag, HeaderOff:
		default:
			return fmt.Errorf("checks.header.rules.%s: unknown action %q (reject, tag or off)", name, a)
		}
	}
	return nil
}

// HeaderCheck is the Check named "header".
type HeaderCheck struct {
	off      bool
	maxBytes int
	actions  map[string]HeaderAction
}

// NewHeaderCheck builds the check from its config.
func NewHeaderCheck(c HeaderConfig) (*HeaderCheck, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	h := &HeaderCheck{off: c.Off, maxBytes: c.MaxBytes, actions: DefaultHeaderActions()}
	if h.maxBytes == 0 {
		h.maxBytes = DefaultHeaderMaxBytes
	}
	for name, a := range c.Rules {
		h.actions[name] = a
	}
	return h, nil
}

// Name implements Check.
func (h *HeaderCheck) Name() string { return "header" }

// Stage implements Check.
func (h *HeaderCheck) Stage() Stage { return StageData }

// Check implements Check: it judges tx.Header with tx.SMTPUTF8.
func (h *HeaderCheck) Check(_ context.Context, tx *Transaction) (Verdict, error) {
	if h.off {
		return ContinueVerdict, nil
	}
	return h.Judge(tx.Header, tx.SMTPUTF8), nil
}

// HeaderProblem is one broken rule.
type HeaderProblem struct {
	Rule   string
	Detail string // what was found, for the reply and the log
}

// Judge gives the verdict on a raw header section (CRLF lines; a terminating
// empty line and anything after it are ignored).
func (h *HeaderCheck) Judge(header []byte, smtputf8 bool) Verdict {
	problems := CheckHeader(header, smtputf8, h.maxBytes)
	var reject *HeaderProblem
	var tags []Header
	var reasons []string
	for i := range problems {
		p := &problems[i]
		switch h.actions[p.Rule] {
		case HeaderReject:
			if reject == nil {
				reject = p
			}
		case HeaderTag:
			tags = append(tags, Header{Name: HeaderViolationField, Value: p.Rule})
		default:
			continue
		}
		reasons = append(reasons, p.Rule+": "+p.Detail)
	}
	reason := strings.Join(reasons, "; ")
	if reject != nil {
		return Verdict{
			Action: Reject,
			Reply: policy.HeaderViolation.Withf("message refused: header rule %s broken: %s (%s)",
				reject.Rule, reject.Detail, ruleRef(reject.Rule)),
			Reason: reason,
		}
	}
	if len(tags) > 0 {
		return Verdict{Action: Tag, Headers: tags, Reason: reason}
	}
	return ContinueVerdict
}

func ruleRef(rule string) string {
	for _, r := range headerRules {
		if r.name == rule {
			return r.ref
		}
	}
	return "RFC 5322"
}

// singularFields are the fields RFC 5322 §3.6 allows at most once (besides
// From and Date, which must occur exactly once), by lower-case name.
var singularFields = []string{"sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to", "references", "subject"}

// CheckHeader returns every rule the header section breaks, at most one
// problem per rule, in rule order, whatever the configured actions. The
// whole section is parsed; a section of more than maxBytes octets (0:
// DefaultHeaderMaxBytes) breaks header-size. The caller bounds what it
// reads (the gateway: 1 MiB).
func CheckHeader(header []byte, smtputf8 bool, maxBytes int) []HeaderProblem {
	if maxBytes <= 0 {
		maxBytes = DefaultHeaderMaxBytes
	}
	ph := parseHeader(header, smtputf8)
	found := map[string]string{}
	add := func(rule, format string, args ...any) {
		if _, dup := found[rule]; !dup {
			found[rule] = replySafe(fmt.Sprintf(format, args...))
		}
	}
	for _, p := range ph.problems {
		add(p.Rule, "%s", p.Detail)
	}
	if ph.size > maxBytes {
		add(RuleHeaderSize, "header section of %d octets exceeds %d", ph.size, maxBytes)
	}

	byName := map[string][]headerField{}
	for _, f := range ph.fields {
		n := strings.ToLower(f.name)
		byName[n] = append(byName[n], f)
	}
	countRule := func(rule, field string) {
		n := len(byName[strings.ToLower(field)])
		switch {
		case n == 0:
			add(rule, "no %s field", field)
		case n > 1:
			add(rule, "%d %s fields (lines %d and %d)", n, field, byName[strings.ToLower(field)][0].line, byName[strings.ToLower(field)][1].line)
		}
	}
	countRule(RuleFromCount, "From")
	countRule(RuleDateCount, "Date")
	for _, name := range singularFields {
		if fs := byName[name]; len(fs) > 1 {
			add(RuleDuplicate, "%d %s fields (lines %d and %d)", len(fs), fs[0].name, fs[0].line, fs[1].line)
		}
	}
	if from := byName["from"]; len(from) > 0 {
		n, err := countMailboxes(from[0].value)
		switch {
		case err != nil:
			add(RuleFromSyntax, "From (line %d) is not a mailbox list: %v", from[0].line, err)
		case n == 0:
			add(RuleFromSyntax, "From (line %d) has no mailbox", from[0].line)
		case n > 1 && len(byName["sender"]) == 0:
			add(RuleSenderMissing, "From (line %d) has %d mailboxes and there is no Sender field", from[0].line, n)
		}
	}
	if date := byName["date"]; len(date) > 0 {
		if !dateParses(strings.TrimSpace(date[0].value)) {
			add(RuleDateSyntax, "Date (line %d) does not parse", date[0].line)
		}
	}

	var out []HeaderProblem
	for _, r := range headerRules {
		if d, ok := found[r.name]; ok {
			out = append(out, HeaderProblem{Rule: r.name, Detail: d})
		}
	}
	return out
}

// maxDetail bounds a problem's detail: it goes into an SMTP reply line
// (RFC 5321 §4.5.3.1.5: 512 octets with the code) and into the log.
const maxDetail = 200

// replySafe makes a detail fit an SMTP reply: printable ASCII only (a parse
// error of net/mail may quote the message's own bytes), at most maxDetail
// octets.
func replySafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > maxDetail {
		b = append(b[:maxDetail-3], "..."...)
	}
	return string(b)
}

// addressParser parses From values. Its word decoder accepts every charset
// without converting it: only the syntax matters here, and net/mail's default
// decoder refuses the charsets it does not know (ISO-2022-JP, Shift_JIS,
// which Japanese mail uses in display names all the time).
var addressParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// countMailboxes parses a From value as a mailbox list (RFC 5322 §3.6.2:
// mailbox-list, not address-list: a group is not allowed).
func countMailboxes(value string) (int, error) {
	list, err := parseMailboxes(value)
	return len(list), err
}

func parseMailboxes(value string) ([]*mail.Address, error) {
	if hasGroup(value) {
		return nil, fmt.Errorf("group syntax is not allowed in From")
	}
	return addressParser.ParseList(ipv6LiteralsAsIPv4(value))
}

// FromAddresses returns the addresses of the From field of a header
// section (RFC 5322 §3.6.2), as the header check parses it: the submission
// service compares them with the user's own (RFC 6409 §8.1) and the DKIM
// signer takes the domain to sign for. The whole section is parsed, however
// long. A header without exactly one From field, or one that does not
// parse as a mailbox list, is an error; so is a header with a line that is
// neither a field nor a continuation of one (field-syntax): where such a
// line ends the header section, or which field it belongs to, is up to
// each reader ("From\r\n : b@x" is a From to a reader that unfolds first,
// the start of the body to Postfix), so no From can be vouched for.
func FromAddresses(header []byte, smtputf8 bool) ([]string, error) {
	ph := parseHeader(header, smtputf8)
	for _, p := range ph.problems {
		if p.Rule == RuleFieldSyntax {
			return nil, fmt.Errorf("the header is ambiguous: %s", p.Detail)
		}
	}
	var from []headerField
	for _, f := range ph.fields {
		if strings.EqualFold(f.name, "from") {
			from = append(from, f)
		}
	}
	if len(from) != 1 {
		return nil, fmt.Errorf("%d From fields", len(from))
	}
	list, err := parseMailboxes(from[0].value)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out, nil
}

// ipv6LiteralsAsIPv4 replaces each valid IPv6 domain literal
// ("[IPv6:2001:db8::1]", RFC 5321 §4.1.3) by an IPv4 one: net/mail accepts
// only IPv4 literals, and the syntax of the rest is what counts here.
func ipv6LiteralsAsIPv4(v string) string {
	const tag = "[ipv6:"
	var out strings.Builder
	for {
		i := indexFoldASCII(v, tag)
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], ']')
		if j < 0 {
			break
		}
		out.WriteString(v[:i])
		if a, err := netip.ParseAddr(v[i+len(tag) : i+j]); err == nil && a.Is6() {
			out.WriteString("[192.0.2.1]")
		} else {
			out.WriteString(v[i : i+j+1])
		}
		v = v[i+j+1:]
	}
	if out.Len() == 0 {
		return v
	}
	out.WriteString(v)
	return out.String()
}

// indexFoldASCII is strings.Index ignoring ASCII case, on bytes: unlike
// strings.ToLower it never changes the length of v, so the index is into v.
func indexFoldASCII(v, lowerSub string) int {
	for i := 0; i+len(lowerSub) <= len(v); i++ {
		match := true
		for k := 0; k < len(lowerSub); k++ {
			c := v[i+k]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lowerSub[k] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

// hasGroup reports whether a ':' appears outside quoted strings, comments,
// angle brackets and domain literals: the mark of RFC 5322 group syntax.
func hasGroup(v string) bool {
	depth := 0 // comment nesting
	quoted, angle, literal := false, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			i++ // quoted-pair
		case quoted:
			quoted = c != '"'
		case depth > 0:
			switch c {
			case '(':
				depth++
			case ')':
				depth--
			}
		case literal:
			literal = c != ']'
		case c == '"':
			quoted = true
		case c == '(':
			depth = 1
		case c == '[':
			literal = true
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ':' && !angle:
			return true
		}
	}
	return false
}

// --- The parser -------------------------------------------------------------

// headerField is one unfolded field.
type headerField struct {
	name  string // as written, without trailing white space
	value string // after the colon, continuation lines joined without CRLF
	line  int    // 1-based line of the field's first line
}

// parsedHeader is the parser's result.
type parsedHeader struct {
	fields   []headerField   // the fields the rules look at (ruledField), in order
	problems []HeaderProblem // field-syntax, line-length, 8bit; first of each
	size     int             // octets of the header section, its empty line included
}

// maxLineOctets is RFC 5322 §2.1.1's limit, without the CRLF.
const maxLineOctets = 998

// parseHeader splits the header section into fields. It reads up to the
// first empty line (or the end of b), and records at most one problem per
// rule. It accepts anything without panicking.
func parseHeader(b []byte, smtputf8 bool) parsedHeader {
	var ph parsedHeader
	all := len(b)
	seen := map[string]bool{}
	problem := func(rule, format string, args ...any) {
		if !seen[rule] {
			seen[rule] = true
			ph.problems = append(ph.problems, HeaderProblem{Rule: rule, Detail: fmt.Sprintf(format, args...)})
		}
	}
	var cur *headerField // the current field, if the rules look at it
	open := false        // a field is open: a continuation line belongs to it
	var value strings.Builder
	flush := func() {
		if cur != nil {
			cur.value = value.String()
			ph.fields = append(ph.fields, *cur)
			cur = nil
		}
		value.Reset()
	}
	for lineNo := 1; len(b) > 0; lineNo++ {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break // end of the header section
		}
		if len(line) > maxLineOctets {
			problem(RuleLineLength, "line %d is %d octets long (at most %d)", lineNo, len(line), maxLineOctets)
		}
		if i := firstHighByte(line); i >= 0 {
			if !smtputf8 {
				problem(Rule8Bit, "8-bit octet 0x%02X on line %d without SMTPUTF8", line[i], lineNo)
			} else if !utf8.Valid(line) {
				problem(Rule8Bit, "line %d is not valid UTF-8", lineNo)
			}
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !open {
				problem(RuleFieldSyntax, "line %d continues no field", lineNo)
				continue
			}
			if cur != nil {
				value.Write(line) // unfolding: the CRLF goes, the white space stays
			}
			continue
		}
		flush()
		open = false
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			problem(RuleFieldSyntax, "line %d is not a header field (no colon)", lineNo)
			continue
		}
		// obs-optional (RFC 5322 §4.5): white space between name and colon.
		name := bytes.TrimRight(line[:colon], " \t")
		if len(name) == 0 {
			problem(RuleFieldSyntax, "line %d has an empty field name", lineNo)
			continue
		}
		if i := bytes.IndexFunc(name, func(r rune) bool { return r < 33 || r > 126 }); i >= 0 {
			problem(RuleFieldSyntax, "field name on line %d has a character that is not printable ASCII", lineNo)
			continue
		}
		open = true
		if ruledField(name) {
			cur = &headerField{name: string(name), line: lineNo}
			value.Write(line[colon+1:])
		}
	}
	flush()
	ph.size = all - len(b)
	return ph
}

// ruledField reports whether the rules look at a field of this name: From,
// Date and the singular fields. Only those are kept, so that a header
// section of many other fields (up to the gateway's 1 MiB) costs no more
// than the pass over its lines.
func ruledField(name []byte) bool {
	n := string(name) // not kept: no copy
	if strings.EqualFold(n, "from") || strings.EqualFold(n, "date") {
		return true
	}
	for _, f := range singularFields {
		if strings.EqualFold(n, f) {
			return true
		}
	}
	return false
}

func firstHighByte(b []byte) int {
	for i, c := range b {
		if c >= 0x80 {
			return i
		}
	}
	return -1
}

// usualDateLayout is the form nearly every mail program writes (RFC 5322
// §3.3 with the day of the week): one of net/mail's layouts, but the 25th
// it tries, after the 24 without a day of the week.
const usualDateLayout = "Mon, 2 Jan 2006 15:04:05 -0700"

// dateParses reports whether mail.ParseDate accepts v (trimmed). The usual
// form, with nothing after the zone but spaces or one plain comment
// ("(UTC)"), is tried first with usualDateLayout alone: mail.ParseDate
// would make 24 failed attempts first, each an allocated error, which were
// 6 % of sekisho's allocations under `make bench` (docs/performance.md).
// What the shortcut accepts, mail.ParseDate accepts (the same zone split,
// the same layout among those it tries); everything else goes to it.
func dateParses(v string) bool {
	if i := strings.IndexAny(v, "+-"); i != -1 && len(v) >= i+5 && !strings.ContainsAny(v, "\r\n") && plainComment(v[i+5:]) {
		if _, err := time.Parse(usualDateLayout, v[:i+5]); err == nil {
			return true
		}
	}
	_, err := mail.ParseDate(v)
	return err == nil
}

// plainComment reports whether s is empty or blanks, or one comment
// without nested parentheses or quoted characters, between blanks.
func plainComment(s string) bool {
	s = strings.Trim(s, " \t")
	if s == "" {
		return true
	}
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return false
	}
	return !strings.ContainsAny(s[1:len(s)-1], "()\\")
}
