package filters

// The domain-existence check (DESIGN.md §3 rows 3 and 3b): does the
// sender's domain (at MAIL) and each recipient's domain (at RCPT) exist as a
// mail domain?
//
// One implementation, two Check values, both named "domain": the sender
// check runs at StageMail, the recipient check at StageRcpt
// (NewDomainChecks). For each address, the first that applies decides:
//
//	null sender <>                          continue (RFC 5321 §4.5.5)
//	sender of a trusted or authenticated    continue: the campus's own mail
//	client                                  (root@host of a campus server
//	                                        must not bounce; submission
//	                                        checks the sender otherwise)
//	recipient in local_domains              continue (tx.Local)
//	sender in local_domains                 continue: ours, by configuration
//	address literal [192.0.2.1]             continue: no DNS name to check
//	domain not a domain (RFC 5321 §4.1.2,   501 5.1.7 / 501 5.1.3
//	  mailaddr.ToASCII)
//	bad-domain list or special-use name     550 5.1.8 / 550 5.1.2
//	DNS: found (MX, or A/AAAA)              continue
//	DNS: null MX (RFC 7505)                 550 5.7.27 / 556 5.1.10
//	DNS: could not tell                     451 4.4.3
//	DNS: NXDOMAIN or no mail host, and the
//	  DNS canary fails                      451 4.4.3 (could not tell)
//	  NXDOMAIN one edit from a popular
//	  domain                                550 5.1.8 / 550 5.1.2 "did you
//	                                        mean …?"
//	  nxdomain: tempfail (default)          450 4.1.8 / 450 4.1.2
//	  nxdomain: reject                      550 5.1.8 / 550 5.1.2
//
// (sender / recipient.) An internationalized (SMTPUTF8) domain is checked in
// its A-label form, which the replies and the log show. The log reason of an
// NXDOMAIN starts with "NXDOMAIN for <domain>" so that reports can count the
// top NXDOMAIN domains.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/policy"
	"sekisho/report"
)

// NXDomainAction is what an authoritative NXDOMAIN leads to, while the DNS
// canary is healthy (config checks.domain.nxdomain).
type NXDomainAction int

// The NXDOMAIN actions.
const (
	NXDomainTempfail NXDomainAction = iota // 450 4.1.8 / 450 4.1.2 (default)
	NXDomainReject                         // 550 5.1.8 / 550 5.1.2
)

func (a NXDomainAction) String() string {
	if a == NXDomainReject {
		return "reject"
	}
	return "tempfail"
}

// ParseNXDomainAction parses "tempfail" (or empty, the default) or
// "reject".
func ParseNXDomainAction(s string) (NXDomainAction, error) {
	switch s {
	case "", "tempfail":
		return NXDomainTempfail, nil
	case "reject":
		return NXDomainReject, nil
	}
	return 0, fmt.Errorf("nxdomain must be tempfail or reject, not %q", s)
}

// DomainResolver is what the check needs of DNS: the existence of a mail
// domain and the DNS canary.
type DomainResolver interface {
	DomainExists(ctx context.Context, domain string) lookup.DomainResult
	Health(ctx context.Context) lookup.DNSHealth
}

// BadDomainMatcher is what the check needs of the bad-domain list: the list
// in force, then the special-use names (policy.BadDomains).
type BadDomainMatcher interface {
	Match(domain string) (policy.BadDomainMatch, bool)
}

// DomainOptions configures NewDomainChecks.
type DomainOptions struct {
	Resolver DomainResolver
	// BadDomains is the bad-domain list; nil: special-use names only.
	BadDomains BadDomainMatcher
	// NXDomain is what an NXDOMAIN leads to while DNS is healthy.
	NXDomain NXDomainAction
	// LocalDomains are the campus's domains ("campus.example",
	// ".campus.example" for the subdomains too): a sender in them is not
	// looked up, and they are the first candidates of the typo suggestion.
	LocalDomains []string
	// Popular is the list a mistyped domain is compared with; nil:
	// DefaultTypoDomains(LocalDomains). An empty, non-nil list turns the
	// suggestion off.
	Popular []string
	// Logger is for the warnings of the check; nil: slog.Default().
	Logger *slog.Logger
}

// DefaultTypoDomains is the default list of the typo suggestion: the local
// domains (without the leading dot of a subdomain entry) first, then
// policy.PopularDomains.
func DefaultTypoDomains(local []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range append(append([]string{}, local...), policy.PopularDomains...) {
		d = mailaddr.Fold(strings.TrimPrefix(d, "."))
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	return out
}

type domainCore struct {
	resolver DomainResolver
	bad      BadDomainMatcher
	nxdomain NXDomainAction
	local    mailaddr.DomainSet
	popular  []string
	logger   *slog.Logger
}

// DomainCheck is the Check named "domain", for the sender (StageMail) or
// the recipients (StageRcpt). It is safe for concurrent use.
type DomainCheck struct {
	core      *domainCore
	recipient bool
}

// NewDomainChecks builds the sender check (StageMail) and the recipient
// check (StageRcpt), which share one configuration.
func NewDomainChecks(opt DomainOptions) (sender, recipient *DomainCheck, err error) {
	if opt.Resolver == nil {
		return nil, nil, fmt.Errorf("domain: no resolver")
	}
	c := &domainCore{resolver: opt.Resolver, bad: opt.BadDomains, nxdomain: opt.NXDomain, logger: opt.Logger}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	c.local = mailaddr.NewDomainSet(opt.LocalDomains)
	c.popular = opt.Popular
	if c.popular == nil {
		c.popular = DefaultTypoDomains(opt.LocalDomains)
	}
	for _, p := range c.popular {
		if _, err := mailaddr.ToASCII(p); err != nil {
			return nil, nil, fmt.Errorf("domain: popular domain %q: %v", p, err)
		}
	}
	return &DomainCheck{core: c}, &DomainCheck{core: c, recipient: true}, nil
}

// Name implements Check.
func (d *DomainCheck) Name() string { return "domain" }

// Stage implements Check: StageMail for the sender check, StageRcpt for the
// recipient check.
func (d *DomainCheck) Stage() Stage {
	if d.recipient {
		return StageRcpt
	}
	return StageMail
}

// Check implements Check.
func (d *DomainCheck) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	if d.recipient {
		if tx.Local {
			return domainSkip("recipient in local_domains"), nil
		}
		return d.core.judge(ctx, tx.Rcpt, true), nil
	}
	switch {
	case tx.From == "":
		return domainSkip("null sender"), nil
	case tx.Trusted:
		return domainSkip("sender of a trusted client"), nil
	case tx.Authenticated != "":
		return domainSkip("sender of an authenticated client"), nil
	}
	return d.core.judge(ctx, tx.From, false), nil
}

func domainSkip(why string) Verdict {
	return Verdict{Action: Continue, Reason: "domain: " + why + ", not checked"}
}

// domainReplies are the replies of one role.
type domainReplies struct {
	role                string // "sender" or "recipient"
	bad, nullMX, nxTemp *policy.Reply
	syntax              *policy.Reply
}

var (
	domainSenderReplies    = domainReplies{"sender", policy.DomainBadSender, policy.DomainNullMXSender, policy.DomainNXSenderTempfail, policy.BadSenderSyntax}
	domainRecipientReplies = domainReplies{"recipient", policy.DomainBadRecipient, policy.NullMXRecipient, policy.DomainNXRecipientTempfail, policy.BadRecipientSyntax}
)

func (c *domainCore) judge(ctx context.Context, addr string, recipient bool) Verdict {
	rp := domainSenderReplies
	if recipient {
		rp = domainRecipientReplies
	}
	domain := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		domain = addr[at+1:]
	}
	switch {
	case strings.TrimSuffix(domain, ".") == "":
		return domainSkip(rp.role + " without a domain")
	case strings.HasPrefix(domain, "["):
		return domainSkip(rp.role + " domain is an address literal " + dnsblPrintable(domain, 64))
	case !recipient && c.local.Contains(domain):
		return domainSkip("sender domain " + dnsblPrintable(mailaddr.Fold(domain), 100) + " is in local_domains")
	}
	ascii, err := mailaddr.ToASCII(domain)
	if err != nil {
		shown := dnsblPrintable(strings.ToLower(domain), 100)
		problem := dnsblPrintable(err.Error(), 200)
		return Verdict{Action: Reject,
			Reply:  rp.syntax.Withf("%s domain %s is not a valid domain name: %s", rp.role, shown, problem),
			Reason: fmt.Sprintf("domain: %s domain %q: syntax: %s", rp.role, shown, problem)}
	}
	domain = ascii

	if m, ok := c.matchBad(domain); ok {
		where := "on the bad-domain list"
		if m.SpecialUse() {
			where = "special-use"
		}
		return Verdict{Action: Reject, Cause: report.BadDomain,
			Reply:  rp.bad.Withf("%s domain %s is not a valid mail domain (%s)", rp.role, domain, dnsblPrintable(m.Entry, 100)),
			Reason: fmt.Sprintf("domain: %s domain %s %s: %s", rp.role, domain, where, m.Rule)}
	}

	res := c.resolver.DomainExists(ctx, domain)
	switch res.Outcome {
	case lookup.DomainFound:
		return Verdict{Action: Continue, Reason: fmt.Sprintf("domain: %s domain %s exists (%s)", rp.role, domain, res.Reason)}
	case lookup.DomainNullMX:
		return Verdict{Action: Reject, Cause: report.BadDomain,
			Reply:  rp.nullMX.Withf("%s domain %s accepts no mail (null MX, RFC 7505)", rp.role, domain),
			Reason: fmt.Sprintf("domain: %s domain %s: %s", rp.role, domain, res.Reason)}
	case lookup.DomainCouldNotTell:
		return Verdict{Action: Defer, Cause: report.DNSTempfail,
			Reply:  policy.DomainUnverifiable.Withf("%s domain %s cannot be verified now (DNS), please try again later", rp.role, domain),
			Reason: fmt.Sprintf("domain: %s domain %s: could not tell (%s)", rp.role, domain, res.Reason)}
	}

	// Not found: certain only while DNS is known healthy.
	what := "NXDOMAIN for " + domain
	if !res.NXDomain {
		what = "no mail host for " + domain + " (no MX, A or AAAA)"
	}
	what += " (" + res.Reason + ")"
	if h := c.resolver.Health(ctx); !h.Healthy {
		return Verdict{Action: Defer, Cause: report.DNSTempfail,
			Reply:  policy.DomainUnverifiable.Withf("%s domain %s cannot be verified now (DNS), please try again later", rp.role, domain),
			Reason: fmt.Sprintf("domain: %s; but the DNS canary failed (%s): could not tell", what, h.Reason)}
	}
	if res.NXDomain {
		if s, ok := policy.SuggestDomain(domain, c.popular); ok {
			return Verdict{Action: Reject, Cause: report.NXDomain,
				Reply:  rp.bad.Withf("%s domain %s does not exist; did you mean %s?", rp.role, domain, s),
				Reason: fmt.Sprintf("domain: %s; typo of %s", what, s)}
		}
	}
	if c.nxdomain == NXDomainReject {
		return Verdict{Action: Reject, Cause: report.NXDomain,
			Reply:  rp.bad.Withf("%s domain %s does not exist", rp.role, domain),
			Reason: fmt.Sprintf("domain: %s; nxdomain: reject", what)}
	}
	return Verdict{Action: Defer, Cause: report.NXDomain,
		Reply:  rp.nxTemp.Withf("%s domain %s does not exist (yet?), please try again later", rp.role, domain),
		Reason: fmt.Sprintf("domain: %s; nxdomain: tempfail", what)}
}

func (c *domainCore) matchBad(domain string) (policy.BadDomainMatch, bool) {
	if c.bad != nil {
		return c.bad.Match(domain)
	}
	return policy.MatchBadDomain(nil, domain)
}
