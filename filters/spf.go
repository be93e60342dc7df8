package filters

// The SPF check (DESIGN.md §3 row 7), on top of
// blitiri.com.ar/go/spf and lookup's resolver adapter.
//
// At RCPT, once per transaction, after the recipient passed every earlier
// check (the chain order puts spf before greylist, which keys on its
// result: greylist.go):
//
//	trusted client (trusted_networks)   continue, not evaluated
//	authenticated client (SMTP AUTH)    continue, not evaluated
//	pass                                continue, headers
//	fail                                550 5.7.23 (fail: reject, the default)
//	                                    or tag (fail: tag)
//	softfail, neutral, none, permerror  tag
//	temperror                           tag (temperror: tag, the default)
//	                                    or 451 4.4.3 (temperror: tempfail)
//
// Every SPF record fetched is checked against the RFC 7208 grammar first
// (spf_syntax.go): a malformed record is a permerror, never a fail.
//
// The identity is the MAIL FROM address; for the null sender it is
// postmaster@<HELO identity> (RFC 7208 §2.4). The result is evaluated on the
// first recipient that reaches the check and kept in tx.Values, so that every
// later recipient of the transaction gets the same verdict without a lookup.
//
// The Received-SPF field (RFC 7208 §9.1) is returned in the verdict as long as no recipient of the
// transaction has been accepted yet (tx.Rcpts is empty). The gateway keeps
// the headers of the verdicts of accepted recipients only, so they reach the
// relayed message exactly once: with the first recipient accepted, even when
// the next hop refused the recipients before it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"blitiri.com.ar/go/spf"

	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// SPFFailAction is what the check does with an SPF "fail" (config
// checks.spf.fail).
type SPFFailAction int

// The actions on "fail".
const (
	// SPFFailReject refuses the recipient with SPFFailed (the default).
	SPFFailReject SPFFailAction = iota
	// SPFFailTag lets the mail pass with the headers saying "fail".
	SPFFailTag
)

func (a SPFFailAction) String() string {
	if a == SPFFailTag {
		return "tag"
	}
	return "reject"
}

// ParseSPFFailAction parses the config value: "reject" (or empty, the
// default) or "tag".
func ParseSPFFailAction(s string) (SPFFailAction, error) {
	switch s {
	case "", "reject":
		return SPFFailReject, nil
	case "tag":
		return SPFFailTag, nil
	}
	return 0, fmt.Errorf("fail must be reject or tag, not %q", s)
}

// SPFTempErrorAction is what the check does with an SPF "temperror"
// (config checks.spf.temperror).
type SPFTempErrorAction int

// The actions on "temperror".
const (
	// SPFTempErrorTag lets the mail pass with the headers saying
	// "temperror" (the default: a DNS problem, ours or the sender's, must
	// not hold mail back).
	SPFTempErrorTag SPFTempErrorAction = iota
	// SPFTempErrorTempfail defers the recipient with SPFTempFailed.
	SPFTempErrorTempfail
)

func (a SPFTempErrorAction) String() string {
	if a == SPFTempErrorTempfail {
		return "tempfail"
	}
	return "tag"
}

// ParseSPFTempErrorAction parses the config value: "tag" (or empty, the
// default) or "tempfail". There is no "reject": a temperror is a "could not
// tell", which never becomes a 5xx.
func ParseSPFTempErrorAction(s string) (SPFTempErrorAction, error) {
	switch s {
	case "", "tag":
		return SPFTempErrorTag, nil
	case "tempfail":
		return SPFTempErrorTempfail, nil
	}
	return 0, fmt.Errorf("temperror must be tag or tempfail, not %q", s)
}

// DefaultSPFTimeout bounds one SPF evaluation (all its DNS lookups
// together). RFC 7208 §4.6.4: a limit on the elapsed time SHOULD allow at
// least 20 seconds; when it is exceeded the result is temperror.
const DefaultSPFTimeout = 20 * time.Second

// SPFOptions configures NewSPF.
type SPFOptions struct {
	// Resolver answers the DNS queries; lookup.NewSPFResolver(resolver) in
	// sekisho. Its errors must be unwrapped *net.DNSError values (IsNotFound
	// for NXDOMAIN/NODATA, IsTemporary for could-not-tell), or the spf
	// package turns a DNS failure into a permerror.
	Resolver spf.DNSResolver
	// AuthServID names this gateway in the headers: the receiver of
	// Received-SPF and the authserv-id of Authentication-Results (the
	// configured hostname).
	AuthServID string
	// Fail is what to do with "fail".
	Fail SPFFailAction
	// TempError is what to do with "temperror".
	TempError SPFTempErrorAction
	// Timeout bounds one evaluation; 0: DefaultSPFTimeout.
	Timeout time.Duration
}

// SPF is the SPF check. It is safe for concurrent use.
type SPF struct {
	resolver   spf.DNSResolver
	authServID string
	fail       SPFFailAction
	tempError  SPFTempErrorAction
	timeout    time.Duration
}

var _ Check = (*SPF)(nil)

// NewSPF builds the check.
func NewSPF(opts SPFOptions) (*SPF, error) {
	if opts.Resolver == nil {
		return nil, errors.New("spf: no resolver")
	}
	id, err := mailaddr.ToASCII(opts.AuthServID)
	if err != nil {
		return nil, fmt.Errorf("spf: authserv-id %q is not a host name: %v", opts.AuthServID, err)
	}
	opts.AuthServID = id
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("spf: timeout %v is negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultSPFTimeout
	}
	return &SPF{
		resolver:   opts.Resolver,
		authServID: opts.AuthServID,
		fail:       opts.Fail,
		tempError:  opts.TempError,
		timeout:    opts.Timeout,
	}, nil
}

// Name implements Check.
func (c *SPF) Name() string { return "spf" }

// Stage implements Check.
func (c *SPF) Stage() Stage { return StageRcpt }

// SPFIdentity is the identity an SPF result is about (RFC 7208 §2.3, §2.4).
type SPFIdentity string

// The identities.
const (
	SPFMailFrom SPFIdentity = "mailfrom" // the MAIL FROM address
	SPFHelo     SPFIdentity = "helo"     // the HELO name, for the null sender
)

// SPFOutcome is one SPF evaluation: what was asked and what came out.
type SPFOutcome struct {
	Result   spf.Result
	Identity SPFIdentity
	// Sender is the address evaluated: the MAIL FROM, or postmaster@HELO
	// for the null sender; "postmaster" stands in for an empty local part
	// (RFC 7208 §4.3).
	Sender string
	// Domain is the domain whose policy was asked (without a trailing dot).
	Domain string
	Client netip.Addr
	Helo   string
	// Mechanism is the directive that matched ("-all", "ip4:192.0.2.0/24",
	// "include:_spf.example.org"), "default" when none did and the result
	// is the default neutral, "" when the result did not come from a
	// mechanism (none, temperror, permerror).
	Mechanism string
	// Detail says why, for the log: the spf package's error, or why the
	// domain was not looked up.
	Detail  string
	Elapsed time.Duration
}

// spfValueKey is the key of the transaction's SPF state in tx.Values.
const spfValueKey = "spf"

// spfState is what the check remembers between the RCPTs of one
// transaction.
type spfState struct {
	outcome SPFOutcome
	verdict Verdict // without headers
	headers []Header
}

// SPFOutcomeOf returns the SPF outcome of the transaction, if the check has
// evaluated it (for explain and tests).
func SPFOutcomeOf(tx *Transaction) (SPFOutcome, bool) {
	st, ok := tx.Values[spfValueKey].(*spfState)
	if !ok {
		return SPFOutcome{}, false
	}
	return st.outcome, true
}

// Check implements Check.
func (c *SPF) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	switch {
	case tx.Trusted:
		return Verdict{Action: Continue, Reason: "spf: trusted client, not evaluated"}, nil
	case tx.Authenticated != "":
		return Verdict{Action: Continue, Reason: "spf: authenticated client, not evaluated"}, nil
	}
	st, evaluated := tx.Values[spfValueKey].(*spfState)
	if !evaluated {
		out := c.Evaluate(ctx, tx.Client, tx.Helo, tx.From)
		st = &spfState{outcome: out, verdict: c.verdict(out), headers: c.headers(out, tx.SMTPUTF8)}
		if tx.Values == nil {
			tx.Values = map[string]any{}
		}
		tx.Values[spfValueKey] = st
	}
	v := st.verdict
	if evaluated {
		v.Reason += " (evaluated at an earlier recipient of this transaction)"
	}
	if (v.Action == Continue || v.Action == Tag) && len(tx.Rcpts) == 0 {
		v.Headers = append([]Header(nil), st.headers...)
	}
	return v, nil
}

// verdict maps an outcome to the check's verdict (without headers).
func (c *SPF) verdict(out SPFOutcome) Verdict {
	reason := out.reason()
	switch out.Result {
	case spf.Pass:
		return Verdict{Action: Continue, Reason: reason}
	case spf.Fail:
		if c.fail == SPFFailReject {
			return Verdict{Action: Reject, Reason: reason,
				Reply: policy.SPFFailed.Withf("SPF validation failed: %s does not permit %s to send its mail", out.Domain, out.Client)}
		}
		return Verdict{Action: Tag, Reason: reason + "; fail: tag"}
	case spf.TempError:
		if c.tempError == SPFTempErrorTempfail {
			return Verdict{Action: Defer, Reason: reason, Reply: policy.SPFTempFailed}
		}
		return Verdict{Action: Tag, Reason: reason}
	}
	// softfail, neutral, none, permerror: tag. RFC 7208 §8.7 allows a
	// rejection on permerror, but a broken record at the sender is no proof
	// that the mail is forged.
	return Verdict{Action: Tag, Reason: reason}
}

// reason is the outcome as one line for the log.
func (o SPFOutcome) reason() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spf=%s %s=%s client=%s", o.Result, o.Identity, o.Sender, o.Client)
	if o.Mechanism != "" {
		fmt.Fprintf(&b, " mechanism=%s", o.Mechanism)
	}
	if o.Detail != "" {
		fmt.Fprintf(&b, " (%s)", o.Detail)
	}
	fmt.Fprintf(&b, " in %v", o.Elapsed.Round(time.Microsecond))
	return b.String()
}

// Evaluate runs check_host() (RFC 7208 §4) for client, with the identity
// from from (the MAIL FROM address, "" for the null sender) or helo. It
// honours ctx and the check's own timeout; running out of time is a
// temperror.
func (c *SPF) Evaluate(ctx context.Context, client netip.Addr, helo, from string) SPFOutcome {
	start := time.Now()
	client = client.Unmap().WithZone("")
	out := SPFOutcome{Client: client, Helo: helo, Identity: SPFMailFrom}
	local, domain := "", ""
	if from == "" {
		// RFC 7208 §2.4: for the null sender, the MAIL FROM identity is
		// postmaster@ the HELO identity.
		out.Identity = SPFHelo
		local, domain = "postmaster", helo
	} else if i := strings.LastIndexByte(from, '@'); i >= 0 {
		local, domain = from[:i], from[i+1:]
	} else {
		domain = from // not an address; looked up as a domain, which fails the checks below
	}
	if local == "" {
		local = "postmaster" // RFC 7208 §4.3
	}
	// The spf package splits the sender at its first "@": one inside a
	// quoted local part must not move the domain.
	local = strings.ReplaceAll(local, "@", "")
	domain = strings.TrimSuffix(domain, ".")
	out.Sender = local + "@" + domain
	out.Domain = domain

	ascii, why := spfLookupDomain(domain)
	if why != "" {
		// RFC 7208 §4.3: a malformed domain or one that is not a
		// multi-label domain name gives "none" without a lookup.
		out.Result, out.Detail = spf.None, why
		out.Elapsed = time.Since(start)
		return out
	}
	out.Domain = ascii
	out.Sender = local + "@" + ascii

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var mechanism string
	strict := &spfStrictResolver{DNSResolver: c.resolver}
	res, err := spf.CheckHostWithSender(net.IP(client.AsSlice()), helo, out.Sender,
		spf.WithResolver(strict),
		spf.WithContext(ctx),
		spf.WithTraceFunc(func(format string, a ...any) { spfTraceMechanism(&mechanism, format, a) }))
	out.Result = res
	switch {
	case res == spf.Neutral && err == nil:
		out.Mechanism = "default" // RFC 7208 §4.7: no mechanism matched
	case spfMatched(err) && mechanism != "":
		out.Mechanism = spfQualifier(res) + mechanism
	}
	if err != nil && !spfMatched(err) && !errors.Is(err, spf.ErrNoResult) {
		out.Detail = err.Error()
	}
	if problem := strict.syntaxProblem(); res == spf.PermError && problem != "" {
		out.Detail = problem
	}
	if res == spf.TempError && ctx.Err() != nil && out.Detail == "" {
		out.Detail = "evaluation took longer than " + c.timeout.String()
	}
	if res == spf.None && out.Detail == "" {
		out.Detail = "no SPF record for " + ascii
	}
	out.Elapsed = time.Since(start)
	return out
}

// spfTraceMechanism picks the directive that matched from the spf package's
// trace. The trace is not a stable interface: if its format changes, the
// mechanism is simply not reported (and spf_test.go fails on the upgrade).
// The package traces a matching directive, without its qualifier, after
// everything it evaluated inside it (an include's own record), so the last
// such line names the directive of the top-level record — or, through a
// redirect=, of the record redirected to (the redirect itself is traced in
// another format, which is ignored).
func spfTraceMechanism(dst *string, format string, a []any) {
	switch format {
	case "%q %v, %v":
		if len(a) > 0 {
			if s, ok := a[0].(string); ok {
				*dst = s
			}
		}
	case "all: %v":
		*dst = "all"
	}
}

// spfMatched reports whether the spf package's error says a mechanism
// matched.
func spfMatched(err error) bool {
	switch err {
	case spf.ErrMatchedAll, spf.ErrMatchedA, spf.ErrMatchedIP, spf.ErrMatchedMX, spf.ErrMatchedPTR, spf.ErrMatchedExists:
		return true
	}
	return false
}

// spfQualifier is the qualifier of a directive that gave res ("" for "+",
// which is the default).
func spfQualifier(res spf.Result) string {
	switch res {
	case spf.Fail:
		return "-"
	case spf.SoftFail:
		return "~"
	case spf.Neutral:
		return "?"
	}
	return ""
}

// spfLookupDomain returns the domain as looked up, in A-labels (RFC 7208
// §4.3: "Internationalized domain names MUST be encoded as A-labels"), or
// why it is not looked up (RFC 7208 §4.3: malformed, or not a multi-label
// domain name, e.g. an address literal or a bare HELO name).
func spfLookupDomain(domain string) (string, string) {
	if domain == "" {
		return "", "no domain to check"
	}
	if strings.HasPrefix(domain, "[") {
		return "", "address literal " + spfQuoteDetail(domain) + ": no domain to check"
	}
	ascii, err := mailaddr.ToASCII(domain)
	if err != nil {
		return "", "domain " + spfQuoteDetail(domain) + " is malformed: " + err.Error()
	}
	if !strings.Contains(ascii, ".") {
		return "", "domain " + spfQuoteDetail(ascii) + " is not a multi-label domain name"
	}
	return ascii, ""
}

func spfQuoteDetail(s string) string {
	return fmt.Sprintf("%q", spfClean(s, 100, false))
}

// The headers.

// headers builds Received-SPF for out (the spf result of the one
// Authentication-Results field is written by AuthenticationResults, from
// the outcome kept in tx.Values). Every
// value that comes from the client (MAIL FROM, HELO) or from DNS (the
// mechanism, error texts) is cleaned of control characters — no CR or LF
// can end the field early — and quoted or escaped as its syntax requires.
// UTF-8 is kept only in an SMTPUTF8 transaction (RFC 6532), replaced by "?"
// otherwise.
func (c *SPF) headers(out SPFOutcome, utf8OK bool) []Header {
	return []Header{{Name: "Received-SPF", Value: c.receivedSPF(out, utf8OK)}}
}

// receivedSPF is the Received-SPF field body (RFC 7208 §9.1):
//
//	result (comment) client-ip=...; envelope-from=...; helo=...;
//	  receiver=...; identity=...; [mechanism=...;] [problem=...;]
func (c *SPF) receivedSPF(out SPFOutcome, utf8OK bool) string {
	sender := spfClean(out.Sender, 320, utf8OK)
	ip := out.Client.String()
	var comment string
	switch out.Result {
	case spf.Pass:
		comment = fmt.Sprintf("domain of %s designates %s as permitted sender", sender, ip)
	case spf.Fail:
		comment = fmt.Sprintf("domain of %s does not designate %s as permitted sender", sender, ip)
	case spf.SoftFail:
		comment = fmt.Sprintf("domain of transitioning %s does not designate %s as permitted sender", sender, ip)
	case spf.Neutral:
		comment = fmt.Sprintf("%s is neither permitted nor denied by domain of %s", ip, sender)
	case spf.None:
		comment = fmt.Sprintf("domain of %s does not designate permitted sender hosts", sender)
	case spf.TempError:
		comment = fmt.Sprintf("error in processing during lookup of domain of %s", sender)
	case spf.PermError:
		comment = fmt.Sprintf("domain of %s has an SPF record that cannot be interpreted", sender)
	}
	envelopeFrom := spfClean(out.Sender, 320, utf8OK)
	if out.Identity == SPFHelo {
		envelopeFrom = "" // RFC 7208 §9.1: the null sender, as it was given
	}
	parts := []string{
		string(out.Result),
		"(" + spfEscapeComment(c.authServID+": "+comment) + ")",
		"client-ip=" + spfKVValue(ip) + ";",
		"envelope-from=" + spfKVValue(envelopeFrom) + ";",
		"helo=" + spfKVValue(spfClean(out.Helo, 255, utf8OK)) + ";",
		"receiver=" + spfKVValue(c.authServID) + ";",
		"identity=" + string(out.Identity) + ";",
	}
	if out.Mechanism != "" {
		parts = append(parts, "mechanism="+spfKVValue(spfClean(out.Mechanism, 255, utf8OK))+";")
	}
	if (out.Result == spf.TempError || out.Result == spf.PermError) && out.Detail != "" {
		parts = append(parts, "problem="+spfKVValue(spfClean(out.Detail, 200, utf8OK))+";")
	}
	return spfFold(len("Received-SPF: "), parts)
}

// spfClean returns s without control characters (C0, DEL, C1: each becomes
// "?"), invalid UTF-8 replaced by "?", non-ASCII replaced by "?" unless
// utf8OK, and cut to at most max bytes (at a character boundary, "..."
// marking the cut).
func spfClean(s string, max int, utf8OK bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			r = '?'
		case r >= utf8.RuneSelf && !utf8OK:
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > max {
			return b.String() + "..."
		}
		b.WriteRune(r)
	}
	return b.String()
}

// spfEscapeComment escapes what may not stand bare in a comment (RFC 5322
// §3.2.2: ctext excludes "(", ")" and "\"; they go as quoted-pairs).
func spfEscapeComment(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '(' || r == ')' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// spfKVValue is a Received-SPF key-value value: a dot-atom as it is, else a
// quoted-string (RFC 7208 §9.1, RFC 5322 §3.2.3, §3.2.4).
func spfKVValue(s string) string {
	if spfIsDotAtom(s) {
		return s
	}
	return spfQuote(s)
}

// spfPValue is an Authentication-Results property value: a domain name as
// it is, else a quoted-string (RFC 8601 §2.2 pvalue).
func spfPValue(s string) string {
	if spfIsDomainToken(s) {
		return s
	}
	return spfQuote(s)
}

func spfQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// spfIsDotAtom reports whether s is an RFC 5322 dot-atom-text (ASCII).
func spfIsDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// spfIsDomainToken reports whether s can be written as it is in a header
// value: letters, digits, "-" and "_" in non-empty dot-separated labels (a
// token of RFC 8601 §2.2, not a host-name check: that is mailaddr.ToASCII).
func spfIsDomainToken(s string) bool {
	if s == "" {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// spfFold joins parts with spaces, folding (CRLF + tab) before a part that
// would take the line past 78 characters (RFC 5322 §2.1.1). prefix is the
// length of "Name: " on the first line.
func spfFold(prefix int, parts []string) string {
	var b strings.Builder
	line := prefix
	for i, p := range parts {
		if i > 0 {
			if line+1+len(p) > 78 {
				b.WriteString("\r\n\t")
				line = 8
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(p)
		line += len(p)
	}
	return b.String()
}
