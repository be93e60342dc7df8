package filters

// The LDAP account check (DESIGN.md §3 row 5): is a local recipient a real
// account? It asks the directory once, for the recipient and the canary
// together (lookup.Directory.Account), and answers 550 only when the
// directory is known complete: the canary was found and the recipient was
// not. Everything else it cannot be sure of is a 451.

import (
	"context"
	"strings"

	"sekisho/lookup"
	"sekisho/policy"
)

// AccountDirectory is what the check needs of the directory.
type AccountDirectory interface {
	Account(ctx context.Context, addr string) lookup.AccountResult
}

// AccountCheck verifies local recipients against the directory.
type AccountCheck struct {
	dir AccountDirectory
}

// NewAccountCheck builds the check on a directory.
func NewAccountCheck(dir AccountDirectory) *AccountCheck { return &AccountCheck{dir: dir} }

// Name implements Check.
func (a *AccountCheck) Name() string { return "account" }

// Stage implements Check.
func (a *AccountCheck) Stage() Stage { return StageRcpt }

// Check implements Check. Only recipients in the local domains are
// verified; postmaster is always accepted (RFC 5321 §4.5.1 requires every
// domain to take mail for it), whatever the directory says, and left to the
// next hop.
func (a *AccountCheck) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	if !tx.Local || IsPostmaster(tx.Rcpt) {
		return ContinueVerdict, nil
	}
	res := a.dir.Account(ctx, tx.Rcpt)
	switch res.Outcome {
	case lookup.AccountFound:
		return Verdict{Action: Continue, Reason: "account: " + res.Reason}, nil
	case lookup.AccountNotFound:
		return Verdict{Action: Reject, Reply: policy.UnknownUser.Withf("<%s>: no such user here", sanitizeAddr(tx.Rcpt)), Reason: "account: " + res.Reason}, nil
	}
	if res.CanaryMissing {
		return Verdict{Action: Defer, Reply: policy.DirectoryIncomplete, Reason: "account: " + res.Reason}, nil
	}
	return Verdict{Action: Defer, Reply: policy.DirectoryUnavailable, Reason: "account: " + res.Reason}, nil
}

// sanitizeAddr keeps an address printable and short for a reply text.
func sanitizeAddr(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r > 0x7e || b.Len() >= 200 {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
