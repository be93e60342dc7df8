package filters

// DKIM (RFC 6376) and DMARC (RFC 7489): DESIGN.md §3 row 8, at the end of
// DATA on the whole message, before any of it goes to the next hop
// (docs/checks-dmarc.md; docs/flow.md, "The whole message before the next
// hop").
//
// Inbound mail only: a trusted client or an authenticated user is not
// evaluated. For the rest:
//
//	every DKIM-Signature, up to MaxSignatures, is verified (go-msgauth),
//	its key fetched through sekisho's resolver: a key that could not be
//	fetched (timeout, SERVFAIL, NXDOMAIN while the DNS canary is missing)
//	is temperror, never fail;
//	the From domain's DMARC record is looked up (the domain, then its
//	organisational domain, golang.org/x/net/publicsuffix), and DMARC
//	passes when SPF (from the rcpt stage) or a DKIM signature passes with
//	an aligned domain (adkim/aspf: relaxed or strict);
//
//	From in local_domains, not pass      local_from (reject: 550 5.7.1)
//	                                     even with no DMARC record
//	fail under p=reject (sp=, pct=)      reject (550 5.7.1, the default)
//	fail under p=quarantine              quarantine (tag, the default)
//	temperror where the mail would be    temperror (451 4.7.5, the default)
//	refused
//	trusted forwarder                    no refusal; the results are written
//
// The results go into the one Authentication-Results field
// (AuthenticationResults), with SPF's.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/policy"
)

// DMARCAction is what the check does with an outcome (config
// checks.dmarc.reject, quarantine, local_from).
type DMARCAction string

// The actions.
const (
	DMARCActReject     DMARCAction = "reject"     // 550 5.7.1
	DMARCActQuarantine DMARCAction = "quarantine" // as p=quarantine: the quarantine action
	DMARCActTag        DMARCAction = "tag"        // X-Sekisho-DMARC: quarantine, and relay
	DMARCActNone       DMARCAction = "none"       // results written, nothing else
)

// ParseDMARCAction parses the value of key for the actions it allows.
func ParseDMARCAction(key, s string, allowed ...DMARCAction) (DMARCAction, error) {
	var names []string
	for _, a := range allowed {
		if s == string(a) {
			return a, nil
		}
		names = append(names, string(a))
	}
	return "", fmt.Errorf("%s must be %s, not %q", key, strings.Join(names, ", "), s)
}

// DMARCTempErrorAction is what the check does when it could not tell
// (config checks.dmarc.temperror).
type DMARCTempErrorAction string

// The actions on temperror. There is no reject: could not tell is never a
// 5xx.
const (
	DMARCTempfail DMARCTempErrorAction = "tempfail" // 451 4.7.5
	DMARCAccept   DMARCTempErrorAction = "accept"   // relay with the results
)

// ParseDMARCTempErrorAction parses checks.dmarc.temperror.
func ParseDMARCTempErrorAction(s string) (DMARCTempErrorAction, error) {
	switch DMARCTempErrorAction(s) {
	case DMARCTempfail, DMARCAccept:
		return DMARCTempErrorAction(s), nil
	}
	return "", fmt.Errorf("temperror must be tempfail or accept, not %q", s)
}

// DefaultDMARCMaxSignatures is how many DKIM signatures of a message are
// verified; more are reported as not verified.
const DefaultDMARCMaxSignatures = 5

// DefaultDMARCTimeout bounds the check's lookups of one message together
// (every key and the DMARC records): running out of time is a temperror.
const DefaultDMARCTimeout = 20 * time.Second

// DMARCQuarantineField is the field a quarantined message gets, for the
// mailbox server's filters (sieve: header :contains "X-Sekisho-DMARC"
// "quarantine"). Incoming X-Sekisho-* fields are removed by the gateway.
const DMARCQuarantineField = "X-Sekisho-DMARC"

// DMARCOptions configures NewDMARC.
type DMARCOptions struct {
	// Resolver fetches keys and records, with its cache, timeouts and DNS
	// canary.
	Resolver *lookup.Resolver
	// AuthServID names this gateway in the results.
	AuthServID string
	// LocalDomains are the campus's domains (local_domains).
	LocalDomains mailaddr.DomainSet
	// Reject is the action on a failure under p=reject: reject (default),
	// quarantine or none. Quarantine: tag (default), reject or none.
	// LocalFrom: reject (default), tag or none.
	Reject, Quarantine, LocalFrom DMARCAction
	// TempError is the action when a message that would be refused could
	// not be evaluated: tempfail (default) or accept.
	TempError DMARCTempErrorAction
	// ForwarderNets and ForwarderNames are the trusted forwarders: client
	// networks, and host names matched against the client's
	// forward-confirmed reverse name (a name with a leading dot matches
	// its subdomains).
	ForwarderNets  []netip.Prefix
	ForwarderNames []string
	// MaxSignatures bounds the signatures verified; 0: 5.
	MaxSignatures int
	// Timeout bounds the lookups of one message; 0: DefaultDMARCTimeout.
	Timeout time.Duration
	// Observe, if set, is told every result: method "dkim" (one per
	// signature) or "dmarc", and the result ("pass", "fail", ...).
	Observe func(method, result string)
}

// DMARC is the DKIM and DMARC check. It is safe for concurrent use.
type DMARC struct {
	o          DMARCOptions
	forwarders mailaddr.DomainSet
	rand       func() int // 0..99, for pct
}

var _ Check = (*DMARC)(nil)

// NewDMARC builds the check.
func NewDMARC(o DMARCOptions) (*DMARC, error) {
	if o.Resolver == nil {
		return nil, errors.New("dmarc: no resolver")
	}
	id, err := mailaddr.ToASCII(o.AuthServID)
	if err != nil {
		return nil, fmt.Errorf("dmarc: authserv-id %q is not a host name: %v", o.AuthServID, err)
	}
	o.AuthServID = id
	def := func(a *DMARCAction, v DMARCAction) {
		if *a == "" {
			*a = v
		}
	}
	def(&o.Reject, DMARCActReject)
	def(&o.Quarantine, DMARCActTag)
	def(&o.LocalFrom, DMARCActReject)
	if o.TempError == "" {
		o.TempError = DMARCTempfail
	}
	if o.MaxSignatures <= 0 {
		o.MaxSignatures = DefaultDMARCMaxSignatures
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultDMARCTimeout
	}
	return &DMARC{o: o, forwarders: mailaddr.NewDomainSet(o.ForwarderNames), rand: func() int { return rand.IntN(100) }}, nil
}

// Name implements Check.
func (c *DMARC) Name() string { return "dmarc" }

// Stage implements Check.
func (c *DMARC) Stage() Stage { return StageMessage }

// DryRun implements DryRunner: the same check, telling Observe nothing, so
// that an explanation counts no result in sekisho_auth_results_total. It
// changes no other state: its lookups go through the resolver's cache as a
// session's do.
func (c *DMARC) DryRun() Check {
	d := *c
	d.o.Observe = nil
	return &d
}

// WantsMessage implements MessageWanter: inbound mail only.
func (c *DMARC) WantsMessage(tx *Transaction) bool {
	return !tx.Trusted && tx.Authenticated == ""
}

// DKIMResult is the verification of one DKIM-Signature field.
type DKIMResult struct {
	Domain    string // d=
	Selector  string // s=
	Algorithm string // a=
	// Result: pass, fail, neutral (not verified: over the limit),
	// temperror, permerror (RFC 8601 §2.7.1).
	Result string
	Detail string
}

// DMARCResult is the DMARC evaluation of one From domain.
type DMARCResult struct {
	From string // the RFC5322.From domain
	// Result: pass, fail, none (no record), temperror, permerror.
	Result string
	// Policy is the policy that applies to the domain ("" without a
	// record): p, or sp for a subdomain whose record was found at its
	// organisational domain; Published is the record's p.
	Policy, Published string
	// Applied is what pct made of a fail's policy (RFC 7489 §6.6.4: the
	// next weaker policy for the messages sampled out).
	Applied string
	Pct     int
	// Local: the From domain is one of local_domains.
	Local  bool
	Detail string
}

// DMARCOutcome is the check's evaluation of a message, for the results
// field, explain and tests.
type DMARCOutcome struct {
	DKIM  []DKIMResult
	DMARC []DMARCResult // one per From domain
	// Forwarder names the trusted forwarder the client is ("" if none).
	Forwarder string
}

const dmarcValueKey = "dmarc"

// DMARCOutcomeOf returns the check's outcome for tx, if it ran.
func DMARCOutcomeOf(tx *Transaction) (DMARCOutcome, bool) {
	o, ok := tx.Values[dmarcValueKey].(*DMARCOutcome)
	if !ok {
		return DMARCOutcome{}, false
	}
	return *o, true
}

// Check implements Check.
func (c *DMARC) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	if !c.WantsMessage(tx) {
		return Verdict{Action: Continue, Reason: "dmarc: trusted or authenticated client, not evaluated"}, nil
	}
	if tx.Message == nil {
		return Verdict{}, errors.New("dmarc: the message was not spooled")
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	out := c.Evaluate(ctx, tx)
	if tx.Values == nil {
		tx.Values = map[string]any{}
	}
	tx.Values[dmarcValueKey] = &out
	return c.verdict(out), nil
}

// Evaluate verifies the signatures and evaluates DMARC for every From
// domain of tx (whose Message, Header, SPF outcome and client it reads).
func (c *DMARC) Evaluate(ctx context.Context, tx *Transaction) DMARCOutcome {
	var out DMARCOutcome
	out.DKIM = c.verifyDKIM(ctx, tx.Message())
	if c.o.Observe != nil {
		for _, d := range out.DKIM {
			c.o.Observe("dkim", d.Result)
		}
	}
	addrs, err := FromAddresses(tx.Header, tx.SMTPUTF8)
	var domains []string
	for _, a := range addrs {
		d := a[strings.LastIndexByte(a, '@')+1:]
		if ascii, err := mailaddr.ToASCII(d); err == nil {
			d = ascii
		}
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if !contains(domains, d) {
			domains = append(domains, d)
		}
	}
	if err == nil && len(domains) == 0 {
		err = errors.New("no address in From")
	}
	if err != nil {
		// No From domain to ask about. But a From that does not parse
		// (the header check only tags from-syntax and field-syntax by
		// default) may still show one of our domains in a mail reader:
		// each of our domains written after an "@" in a From field is
		// judged as our From would be.
		out.DMARC = []DMARCResult{{Result: "permerror", Detail: "From: " + err.Error()}}
		for _, d := range looseFromDomains(tx.Header) {
			if c.o.LocalDomains.Contains(d) && !contains(domains, d) {
				domains = append(domains, d)
			}
		}
	}
	spfOut, spfDone := SPFOutcomeOf(tx)
	for _, d := range domains {
		r := c.evaluateDomain(ctx, d, out.DKIM, spfOut, spfDone)
		out.DMARC = append(out.DMARC, r)
	}
	if c.o.Observe != nil {
		for _, d := range out.DMARC {
			c.o.Observe("dmarc", d.Result)
		}
	}
	out.Forwarder = c.forwarder(ctx, tx.Client)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// forwarder names the trusted forwarder the client is, "" if none. A
// reverse name that could not be verified grants nothing.
func (c *DMARC) forwarder(ctx context.Context, client netip.Addr) string {
	client = client.Unmap()
	for _, p := range c.o.ForwarderNets {
		if p.Contains(client) {
			return p.String()
		}
	}
	if c.forwarders.Len() == 0 {
		return ""
	}
	res := c.o.Resolver.VerifiedName(ctx, client)
	if res.Outcome == lookup.ReverseNameVerified {
		if entry, ok := c.forwarders.Match(res.Name); ok {
			return res.Name + " (" + entry + ")"
		}
	}
	return ""
}

// sigTags are the tags of one DKIM-Signature field that the results name.
type sigTags struct{ d, s, a string }

// signatureTags reads d=, s= and a= of every DKIM-Signature field of a
// header section, in order (the order go-msgauth verifies them in).
func signatureTags(hdr []byte) []sigTags {
	var out []sigTags
	for _, value := range fieldValues(hdr, "dkim-signature") {
		var t sigTags
		for _, kv := range strings.Split(value, ";") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			v = strings.Join(strings.Fields(v), "")
			switch strings.TrimSpace(k) {
			case "d":
				t.d = v
			case "s":
				t.s = v
			case "a":
				t.a = v
			}
		}
		out = append(out, t)
	}
	return out
}

// fieldValues returns the values of the fields of a header section with
// that name (case-insensitive), continuation lines joined, as a lenient
// reader sees them: a line that is not a field ("From" without its colon,
// then " : a@b" on the next line) is joined with its continuations too.
func fieldValues(hdr []byte, name string) []string {
	var fields []string
	for _, line := range strings.Split(strings.ReplaceAll(string(hdr), "\r\n", "\n"), "\n") {
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += line
			continue
		}
		fields = append(fields, line)
	}
	var out []string
	for _, f := range fields {
		n, v, ok := strings.Cut(f, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, v)
		}
	}
	return out
}

// looseFromDomains finds every domain written after an "@" in the From
// fields, however malformed they are, lower-case, without a trailing dot.
func looseFromDomains(hdr []byte) []string {
	var out []string
	for _, v := range fieldValues(hdr, "from") {
		for i := 0; i < len(v); i++ {
			if v[i] != '@' {
				continue
			}
			j := i + 1
			for j < len(v) && (v[j] == '.' || v[j] == '-' || v[j] == '_' || v[j] >= '0' && v[j] <= '9' ||
				v[j]|0x20 >= 'a' && v[j]|0x20 <= 'z' || v[j] >= 0x80) {
				j++
			}
			d := strings.ToLower(strings.TrimSuffix(v[i+1:j], "."))
			if ascii, err := mailaddr.ToASCII(d); err == nil {
				d = ascii
			}
			if d != "" && !contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// verifyDKIM verifies the signatures of msg, at most MaxSignatures.
func (c *DMARC) verifyDKIM(ctx context.Context, msg io.Reader) []DKIMResult {
	// The header section is read twice: for the tags, and by go-msgauth.
	var head bytes.Buffer
	br := newHeaderTee(msg, &head)
	verifs, err := dkim.VerifyWithOptions(br, &dkim.VerifyOptions{
		LookupTXT:        c.lookupTXT(ctx),
		MaxVerifications: c.o.MaxSignatures,
	})
	// go-msgauth may return before reading the whole body (no signature);
	// the reader is the spool's, nothing waits on it.
	tags := signatureTags(head.Bytes())
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		out := make([]DKIMResult, 0, len(tags))
		for _, t := range tags {
			out = append(out, DKIMResult{Domain: t.d, Selector: t.s, Algorithm: t.a, Result: "permerror", Detail: err.Error()})
		}
		return out
	}
	out := make([]DKIMResult, 0, len(tags))
	for i, t := range tags {
		r := DKIMResult{Domain: t.d, Selector: t.s, Algorithm: t.a}
		switch {
		case i >= len(verifs):
			r.Result, r.Detail = "neutral", fmt.Sprintf("not verified: more than %d signatures", c.o.MaxSignatures)
		case verifs[i].Err == nil:
			r.Result = "pass"
			r.Domain = verifs[i].Domain
		case dkim.IsTempFail(verifs[i].Err):
			r.Result, r.Detail = "temperror", verifs[i].Err.Error()
		case dkim.IsPermFail(verifs[i].Err):
			r.Result, r.Detail = "permerror", verifs[i].Err.Error()
		default:
			r.Result, r.Detail = "fail", verifs[i].Err.Error()
		}
		if ctx.Err() != nil && r.Result != "pass" && r.Result != "fail" {
			r.Result, r.Detail = "temperror", "out of time: "+r.Detail
		}
		out = append(out, r)
	}
	return out
}

// headerTee copies what is read from r into head until the end of the
// header section (the first empty line).
type headerTee struct {
	r    io.Reader
	head *bytes.Buffer
	done bool
}

func newHeaderTee(r io.Reader, head *bytes.Buffer) io.Reader {
	return &headerTee{r: r, head: head}
}

func (t *headerTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if !t.done && n > 0 {
		// Only the new bytes (and the 3 before them) can hold the end.
		from := max(t.head.Len()-3, 0)
		t.head.Write(p[:n])
		if i := bytes.Index(t.head.Bytes()[from:], []byte("\n\r\n")); i >= 0 {
			t.head.Truncate(from + i + 3)
			t.done = true
		} else if i := bytes.Index(t.head.Bytes()[from:], []byte("\n\n")); i >= 0 {
			t.head.Truncate(from + i + 2)
			t.done = true
		}
	}
	return n, err
}

// lookupTXT is the TXT lookup go-msgauth is given, through our resolver.
// Its errors are *net.DNSError values, as go-msgauth inspects them: not
// found (a certain answer) only while the DNS canary is found, temporary
// otherwise, so that a key or record that could not be fetched is a
// temperror, never a fail or a "no policy".
func (c *DMARC) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		ascii := strings.TrimSuffix(name, ".")
		for i := 0; i < len(ascii); i++ {
			if ascii[i] < 0x21 || ascii[i] > 0x7e {
				// RFC 6376 §3.5: d= and s= are A-labels; anything else
				// names no key (and no record) that DNS can hold.
				return nil, &net.DNSError{Err: "not an ASCII DNS name", Name: spfClean(name, 255, false), IsNotFound: true}
			}
		}
		txts, res := c.o.Resolver.LookupTXT(ctx, ascii)
		switch {
		case res.Outcome == lookup.DNSFound:
			return txts, nil
		case res.NotFound():
			if h := c.o.Resolver.Health(ctx); !h.Healthy {
				return nil, &net.DNSError{Err: res.Outcome.String() + ", but the DNS canary is missing: " + h.Reason, Name: ascii, IsTemporary: true}
			}
			return nil, &net.DNSError{Err: res.Outcome.String(), Name: ascii, IsNotFound: true}
		}
		return nil, &net.DNSError{Err: res.Reason, Name: ascii, IsTemporary: true}
	}
}

// OrganizationalDomain is a domain's organisational domain (RFC 7489
// §3.2): the public suffix and one label more; a public suffix itself is
// its own.
func OrganizationalDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned reports whether an authenticated domain is aligned with the From
// domain (RFC 7489 §3.1): the same domain (strict), or the same
// organisational domain (relaxed).
func aligned(from, authenticated string, mode dmarc.AlignmentMode) bool {
	from = strings.ToLower(strings.TrimSuffix(from, "."))
	authenticated = strings.ToLower(strings.TrimSuffix(authenticated, "."))
	if from == "" || authenticated == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return from == authenticated
	}
	return OrganizationalDomain(from) == OrganizationalDomain(authenticated)
}

// evaluateDomain is DMARC for one From domain (RFC 7489 §6.6).
func (c *DMARC) evaluateDomain(ctx context.Context, from string, sigs []DKIMResult, spfOut SPFOutcome, spfDone bool) DMARCResult {
	r := DMARCResult{From: from, Local: c.o.LocalDomains.Contains(from), Pct: 100}
	rec, err := c.record(ctx, from, &r)
	switch {
	case err != nil && dmarc.IsTempFail(err):
		r.Result, r.Detail = "temperror", err.Error()
	case errors.Is(err, dmarc.ErrNoPolicy):
		r.Result = "none"
	case err != nil:
		r.Result, r.Detail = "permerror", err.Error()
	}
	// Alignment: relaxed when there is no record (the local-domain rule).
	var dkimMode, spfMode dmarc.AlignmentMode = dmarc.AlignmentRelaxed, dmarc.AlignmentRelaxed
	if rec != nil {
		dkimMode, spfMode = rec.DKIMAlignment, rec.SPFAlignment
	}
	pass, temp := false, false
	var why []string
	for _, s := range sigs {
		if !aligned(from, s.Domain, dkimMode) {
			continue
		}
		switch s.Result {
		case "pass":
			pass = true
			why = append(why, "dkim "+s.Domain+" aligned")
		case "temperror":
			temp = true
			why = append(why, "dkim "+s.Domain+" temperror")
		}
	}
	if spfDone && aligned(from, spfOut.Domain, spfMode) {
		switch string(spfOut.Result) {
		case "pass":
			pass = true
			why = append(why, "spf "+spfOut.Domain+" aligned")
		case "temperror":
			temp = true
			why = append(why, "spf "+spfOut.Domain+" temperror")
		}
	}
	if len(why) == 0 {
		why = append(why, "no aligned identifier")
	}
	if r.Detail == "" {
		r.Detail = strings.Join(why, ", ")
	} else {
		r.Detail += "; " + strings.Join(why, ", ")
	}
	switch {
	case r.Result == "temperror":
		if pass {
			// An aligned pass decides whatever the record says.
			r.Result = "pass"
		}
	case pass:
		r.Result = "pass"
	case rec == nil:
		// none or permerror; an aligned identifier that could not be
		// told matters for a local domain only.
		if temp && r.Local {
			r.Result = "temperror"
		}
	case temp:
		r.Result = "temperror"
	default:
		r.Result = "fail"
	}
	if r.Result == "fail" {
		r.Applied = r.Policy
		if r.Pct < 100 && c.rand() >= r.Pct {
			// RFC 7489 §6.6.4: sampled out, the next weaker policy.
			switch r.Policy {
			case string(dmarc.PolicyReject):
				r.Applied = string(dmarc.PolicyQuarantine)
			case string(dmarc.PolicyQuarantine):
				r.Applied = string(dmarc.PolicyNone)
			}
		}
	}
	return r
}

// record finds the DMARC record of a From domain (RFC 7489 §6.6.3): the
// domain's own, else its organisational domain's, whose sp= then applies.
func (c *DMARC) record(ctx context.Context, from string, r *DMARCResult) (*dmarc.Record, error) {
	opts := &dmarc.LookupOptions{LookupTXT: c.lookupTXT(ctx)}
	rec, err := dmarc.LookupWithOptions(from, opts)
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := OrganizationalDomain(from); org != from {
			rec, err = dmarc.LookupWithOptions(org, opts)
			sub = true
		}
	}
	if err != nil {
		return nil, err
	}
	r.Published, r.Policy = string(rec.Policy), string(rec.Policy)
	if sub && rec.SubdomainPolicy != "" {
		r.Policy = string(rec.SubdomainPolicy)
	}
	if rec.Percent != nil {
		r.Pct = *rec.Percent
	}
	return rec, nil
}

// verdict applies the configured actions to the outcome: the most severe
// of its From domains decides.
func (c *DMARC) verdict(out DMARCOutcome) Verdict {
	best := Verdict{Action: Continue}
	var reasons []string
	for _, s := range out.DKIM {
		reasons = append(reasons, fmt.Sprintf("dkim=%s d=%s s=%s a=%s", s.Result, s.Domain, s.Selector, s.Algorithm)+detail(s.Detail))
	}
	if len(out.DKIM) == 0 {
		reasons = append(reasons, "dkim=none")
	}
	for _, d := range out.DMARC {
		v := c.domainVerdict(d, out.Forwarder)
		reasons = append(reasons, fmt.Sprintf("dmarc=%s from=%s policy=%s applied=%s local=%t", d.Result, d.From, orNone(d.Policy), orNone(d.Applied), d.Local)+detail(d.Detail))
		if severity(v.Action) > severity(best.Action) {
			best = v
		}
	}
	if out.Forwarder != "" {
		reasons = append(reasons, "trusted forwarder "+out.Forwarder+": not refused")
	}
	best.Reason = strings.Join(reasons, "; ")
	if best.Action == Reject || best.Action == Defer {
		best.Cause = "dmarc"
	}
	return best
}

func detail(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func severity(a Action) int {
	return map[Action]int{Continue: 0, Tag: 1, Defer: 2, Reject: 3}[a]
}

// domainVerdict is the action for one From domain's result.
func (c *DMARC) domainVerdict(d DMARCResult, forwarder string) Verdict {
	action := DMARCActNone
	temp := false
	switch {
	case d.Result == "pass" || d.From == "":
	case d.Local && d.Result == "temperror":
		temp = true
	case d.Local:
		action = c.o.LocalFrom
	case d.Result == "temperror" && d.Policy == string(dmarc.PolicyReject):
		temp = true
	case d.Result == "fail" && d.Applied == string(dmarc.PolicyReject):
		action = c.o.Reject
	case d.Result == "fail" && d.Applied == string(dmarc.PolicyQuarantine):
		action = DMARCActQuarantine
	}
	if action == DMARCActQuarantine {
		action = c.o.Quarantine
	}
	if forwarder != "" {
		// Exempt from refusal; a quarantine tag still goes on.
		if temp || action == DMARCActReject {
			return Verdict{Action: Continue}
		}
	}
	if temp {
		if c.o.TempError == DMARCAccept {
			return Verdict{Action: Continue}
		}
		return Verdict{Action: Defer, Reply: policy.DMARCTempFailed, Domain: d.From}
	}
	switch action {
	case DMARCActReject:
		if d.Local {
			return Verdict{Action: Reject, Domain: d.From,
				Reply: policy.DMARCLocalFrom.Withf("From domain %s is a domain of this site, but the message is not authenticated by it (DMARC)", d.From)}
		}
		return Verdict{Action: Reject, Domain: d.From,
			Reply: policy.DMARCRejected.Withf("message refused by the DMARC policy of %s", d.From)}
	case DMARCActTag:
		return Verdict{Action: Tag, Headers: []Header{{Name: DMARCQuarantineField, Value: "quarantine; header.from=" + spfPValue(d.From)}}}
	}
	return Verdict{Action: Continue}
}

// AuthenticationResults is the one Authentication-Results field (RFC 8601)
// of a transaction: our authserv-id, then spf (evaluated at RCPT), every
// dkim and dmarc result (evaluated on the message). ok is false when no
// method was evaluated (a trusted or authenticated client).
func AuthenticationResults(authServID string, tx *Transaction) (Header, bool) {
	id, err := mailaddr.ToASCII(authServID)
	if err != nil {
		id = authServID
	}
	utf8OK := tx.SMTPUTF8
	// Each resinfo is a list of words; folding goes only between words,
	// never inside a quoted value or a comment.
	var parts [][]string
	pv := func(s string, max int, utf8 bool) string { return spfPValue(spfClean(s, max, utf8)) }
	comment := func(s string) string { return "(" + spfEscapeComment(spfClean(s, 200, false)) + ")" }
	if o, ok := SPFOutcomeOf(tx); ok {
		prop := "smtp.mailfrom=" + pv(o.Domain, 255, utf8OK)
		if o.Identity == SPFHelo {
			prop = "smtp.helo=" + pv(o.Helo, 255, utf8OK)
		}
		parts = append(parts, []string{"spf=" + string(o.Result), comment("sender IP is " + o.Client.String()), prop})
	}
	if o, ok := DMARCOutcomeOf(tx); ok {
		if len(o.DKIM) == 0 {
			parts = append(parts, []string{"dkim=none"})
		}
		for _, s := range o.DKIM {
			p := []string{"dkim=" + s.Result}
			if s.Result != "pass" && s.Detail != "" {
				p = append(p, comment(s.Detail))
			}
			p = append(p, "header.d="+pv(s.Domain, 255, false), "header.s="+pv(s.Selector, 64, false), "header.a="+pv(s.Algorithm, 32, false))
			parts = append(parts, p)
		}
		for _, d := range o.DMARC {
			p := []string{"dmarc=" + d.Result}
			var cm []string
			if d.Published != "" {
				cm = append(cm, "p="+d.Published)
				if d.Policy != d.Published {
					cm = append(cm, "sp="+d.Policy)
				}
				if d.Pct != 100 {
					cm = append(cm, "pct="+strconv.Itoa(d.Pct))
				}
			}
			if d.Applied != "" {
				cm = append(cm, "dis="+d.Applied)
			}
			if d.Local {
				cm = append(cm, "local domain")
			}
			if o.Forwarder != "" && d.Result != "pass" {
				cm = append(cm, "trusted forwarder")
			}
			if len(cm) > 0 {
				p = append(p, comment(strings.Join(cm, " ")))
			}
			if d.From != "" {
				p = append(p, "header.from="+pv(d.From, 255, false))
			}
			if d.Policy != "" {
				p = append(p, "policy.dmarc="+pv(d.Policy, 32, false))
			}
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return Header{}, false
	}
	words := []string{id + ";"}
	for i, p := range parts {
		if i < len(parts)-1 {
			p[len(p)-1] += ";"
		}
		words = append(words, p...)
	}
	return Header{Name: "Authentication-Results", Value: spfFold(len("Authentication-Results: "), words)}, true
}
