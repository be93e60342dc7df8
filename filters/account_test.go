package filters

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/greylist"
	"sekisho/internal/testenv"
	"sekisho/lookup"
	"sekisho/report"
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
		v, err := NewAccountCheck(dir, AccountOptions{}).Check(context.Background(), &Transaction{Rcpt: "u@campus.test", Local: true})
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
	check := NewAccountCheck(dir, AccountOptions{})
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

// memoryStore opens a real embedded store on the clock for the account
// memory.
func memoryStore(t *testing.T, clock *testenv.Clock) *greylist.BoltStore {
	t.Helper()
	s, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestAccountServeStale: a recipient the directory found is accepted while
// the directory cannot tell (down or canary missing), for stale_ttl after
// its confirmation and not at stale_ttl, with cause ldap_stale; an
// address never found, and one the directory has since said is gone, get
// the 451; stale_ttl 0 serves nothing.
func TestAccountServeStale(t *testing.T) {
	clock := testenv.NewClock()
	store := memoryStore(t, clock)
	dir := &fakeDirectory{}
	check := NewAccountCheck(dir, AccountOptions{Memory: store, StaleTTL: 7 * 24 * time.Hour, Now: clock.Now})
	rcpt := func(addr string) Verdict {
		t.Helper()
		v, err := check.Check(context.Background(), &Transaction{Rcpt: addr, Local: true})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dir.res = lookup.AccountResult{Outcome: lookup.AccountFound, Address: "alice@campus.test", DN: "uid=alice"}
	rcpt("Alice@campus.test")
	dir.res = lookup.AccountResult{Outcome: lookup.AccountFound, Address: "bob@campus.test", DN: "uid=bob"}
	rcpt("bob@campus.test")

	down := lookup.AccountResult{Address: "alice@campus.test", Reason: "ldap: connection refused"}
	dir.res = down
	clock.Advance(3 * time.Hour)
	if v := rcpt("alice@campus.test"); v.Action != Continue || v.Cause != report.LDAPStale || !strings.Contains(v.Reason, "served stale, confirmed 3h0m0s ago") {
		t.Fatalf("alice with the directory down: %+v", v)
	}
	dir.res = lookup.AccountResult{Address: "alice@campus.test", CanaryMissing: true, Reason: "canary missing"}
	if v := rcpt("alice@campus.test"); v.Action != Continue || v.Cause != report.LDAPStale {
		t.Fatalf("alice with the canary missing: %+v", v)
	}
	dir.res = lookup.AccountResult{Address: "carol@campus.test", Reason: "ldap: timeout"}
	if v := rcpt("carol@campus.test"); v.Action != Defer || v.Reply.String()[:9] != "451 4.4.3" {
		t.Fatalf("carol, never confirmed: %+v", v)
	}
	// bob is gone: the directory says so while it works, and he is
	// forgotten; the next outage does not serve him.
	dir.res = lookup.AccountResult{Outcome: lookup.AccountNotFound, Address: "bob@campus.test"}
	if v := rcpt("bob@campus.test"); v.Action != Reject {
		t.Fatalf("bob not found: %+v", v)
	}
	dir.res = lookup.AccountResult{Address: "bob@campus.test", Reason: "ldap: connection refused"}
	if v := rcpt("bob@campus.test"); v.Action != Defer {
		t.Fatalf("bob, not found before the outage, was served stale: %+v", v)
	}
	// The age limit: the memory entry is kept for stale_ttl (the store's
	// clock) and its age is checked against stale_ttl (the check's).
	dir.res = down
	clock.Advance(7*24*time.Hour - 3*time.Hour - time.Millisecond)
	if v := rcpt("alice@campus.test"); v.Action != Continue {
		t.Fatalf("alice a millisecond before stale_ttl: %+v", v)
	}
	clock.Advance(time.Millisecond)
	if v := rcpt("alice@campus.test"); v.Action != Defer {
		t.Fatalf("alice at stale_ttl: %+v", v)
	}
	if n := check.ServedStale(); n != 3 {
		t.Errorf("ServedStale = %d, want 3", n)
	}

	off := NewAccountCheck(dir, AccountOptions{Memory: store, StaleTTL: 0, Now: clock.Now})
	dir.res = lookup.AccountResult{Outcome: lookup.AccountFound, Address: "dave@campus.test"}
	off.Check(context.Background(), &Transaction{Rcpt: "dave@campus.test", Local: true})
	if _, ok, _ := store.GetValue(context.Background(), AccountMemoryPrefix+"dave@campus.test"); ok {
		t.Error("stale_ttl 0 remembered an account")
	}
}

// TestAccountMemoryDown: a store that cannot answer never refuses a found
// recipient and never turns the 451 of an outage into anything else; its
// errors are counted, and logged once per incident.
func TestAccountMemoryDown(t *testing.T) {
	clock := testenv.NewClock()
	store := memoryStore(t, clock)
	store.Close()
	dir := &fakeDirectory{res: lookup.AccountResult{Outcome: lookup.AccountFound, Address: "alice@campus.test"}}
	var log logBuffer
	check := NewAccountCheck(dir, AccountOptions{Memory: store, StaleTTL: time.Hour, Now: clock.Now, Logger: log.logger()})
	if v, _ := check.Check(context.Background(), &Transaction{Rcpt: "alice@campus.test", Local: true}); v.Action != Continue {
		t.Fatalf("found, memory down: %+v", v)
	}
	dir.res = lookup.AccountResult{Address: "alice@campus.test", Reason: "ldap: down"}
	if v, _ := check.Check(context.Background(), &Transaction{Rcpt: "alice@campus.test", Local: true}); v.Action != Defer || v.Reply.Code != 451 {
		t.Fatalf("directory and memory down: %+v", v)
	}
	if check.MemoryErrors() != 2 {
		t.Errorf("MemoryErrors = %d, want 2", check.MemoryErrors())
	}
	if n := log.count("account memory unavailable"); n != 1 {
		t.Errorf("%d incident lines for 2 errors, want 1", n)
	}
}
