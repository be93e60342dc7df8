package filters

import (
	"context"
	"testing"

	"sekisho/lookup"
)

type fakeDirectory struct {
	res   lookup.AccountResult
	asked []string
}

func (f *fakeDirectory) Account(_ context.Context, addr string) lookup.AccountResult {
	f.asked = append(f.asked, addr)
	return f.res
}

// TestAccountOutcomes maps each directory answer to its verdict; the real
// directory is exercised against slapd in lookup and e2e.
func TestAccountOutcomes(t *testing.T) {
	cases := []struct {
		name string
		res  lookup.AccountResult
		want string // reply prefix, "" for continue
	}{
		{"found", lookup.AccountResult{Outcome: lookup.AccountFound}, ""},
		{"not found", lookup.AccountResult{Outcome: lookup.AccountNotFound}, "550 5.1.1"},
		{"canary missing", lookup.AccountResult{CanaryMissing: true}, "451 4.3.0"},
		{"ldap error", lookup.AccountResult{Reason: "ldap: connection refused"}, "451 4.4.3"},
	}
	for _, c := range cases {
		dir := &fakeDirectory{res: c.res}
		v, err := NewAccountCheck(dir).Check(context.Background(), &Transaction{Rcpt: "u@campus.test", Local: true})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if v.Reply != nil {
			got = v.Reply.String()
		}
		if len(got) < len(c.want) || got[:len(c.want)] != c.want || (c.want == "" && got != "") {
			t.Errorf("%s: reply %q, want %q", c.name, got, c.want)
		}
		if v.Reply != nil && v.Reply.Code/100 != v.Reply.Enhanced[0] {
			t.Errorf("%s: class mismatch in %v", c.name, v.Reply)
		}
	}
}

func TestAccountSkipsNonLocalAndPostmaster(t *testing.T) {
	dir := &fakeDirectory{res: lookup.AccountResult{Outcome: lookup.AccountNotFound}}
	check := NewAccountCheck(dir)
	for _, tx := range []*Transaction{
		{Rcpt: "someone@example.com", Local: false},
		{Rcpt: "Postmaster@campus.test", Local: true},
	} {
		if v, _ := check.Check(context.Background(), tx); v.Action != Continue {
			t.Errorf("%s: %v", tx.Rcpt, v.Action)
		}
	}
	if len(dir.asked) != 0 {
		t.Errorf("directory asked for %v", dir.asked)
	}
}
