package gateway

import (
	"time"

	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
	"sekisho/report"
)

// causeOf names the report cause of a decision (DESIGN.md §6) from the check
// or gateway rule that made it, its reply, and the cause the check gave (the
// domain check tells the bad list from NXDOMAIN and from DNS trouble). ""
// means not counted: syntax and sequence errors, flow control (452), and a
// next hop's own 5xx passed on, which are not decisions of ours about mail.
func causeOf(check string, r *policy.Reply, given string) string {
	if given != "" {
		return given
	}
	if r.Code/100 == 2 {
		return report.Accepted
	}
	temp := r.Temporary()
	switch check {
	case "dnsbl":
		return report.DNSBL
	case "account":
		if temp {
			return report.LDAPTempfail
		}
		return report.UnknownUser
	case "greylist":
		if r.Enhanced == policy.GreylistDeferred.Enhanced && r.Code == policy.GreylistDeferred.Code {
			return report.Greylist
		}
		return report.OtherTempfail
	case "spf":
		if temp {
			return report.DNSTempfail // temperror, under spf.temperror: tempfail
		}
		return report.SPF
	case "header":
		return report.Header
	case "dmarc":
		return report.DMARC // refused, or deferred because it could not tell
	case "relay":
		if temp {
			return report.OtherTempfail
		}
		return report.RelayDenied
	case "call_ahead", "next_hop":
		if temp {
			return report.NexthopTempfail
		}
		if r.Code == policy.NullMXRecipient.Code && r.Enhanced == policy.NullMXRecipient.Enhanced {
			return report.BadDomain
		}
		return ""
	case "auth":
		return report.AuthFailure
	}
	if temp && r.Code != 452 {
		return report.OtherTempfail
	}
	return ""
}

// count reports one decision to the recorder (none in explain, which
// decides nothing).
func (e *engine) count(check string, r *policy.Reply, given string, rcpt mailaddr.Address) {
	rec := e.gen.cfg.Recorder
	if rec == nil || e.dryRun || (e.gone != nil && e.gone()) {
		// explain decides nothing; a client that hung up under its
		// lookups or call-ahead made no decision to count either (and
		// must not look like an outage to the tempfail alarm).
		return
	}
	cause := causeOf(check, r, given)
	if cause == "" {
		return
	}
	ev := report.Event{
		Time: time.Now(), Cause: cause, Listener: e.base.Listener, Client: e.base.Client,
		Sender: e.tx.From, Recipient: rcpt.String(), Check: check,
	}
	if cause == report.NXDomain || cause == report.BadDomain {
		// The domain refused: the recipient's at RCPT, the sender's at MAIL.
		ev.Domain = rcpt.Domain
		if rcpt.Domain == "" {
			ev.Domain = e.from.Domain
		}
		ev.Domain = mailaddr.Fold(ev.Domain)
	}
	if cause == report.DMARC {
		// The From domain refused: the report's top spoofed domains.
		ev.Domain = mailaddr.Fold(e.refusedDomain)
	}
	rec.Record(ev)
}

// countPassed reports the causes that checks gave to a recipient they let
// pass (the account check's ldap_stale: accepted from the account memory
// while the directory could not tell), once the recipient is accepted.
func (e *engine) countPassed(results []filters.Result, r *policy.Reply, rcpt mailaddr.Address) {
	for _, res := range results {
		if res.Verdict.Cause != "" && res.Verdict.Action != filters.Defer && res.Verdict.Action != filters.Reject {
			e.count(res.Check, r, res.Verdict.Cause, rcpt)
		}
	}
}
