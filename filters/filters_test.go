package filters

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"sekisho/policy"
)

type fakeCheck struct {
	name  string
	stage Stage
	v     Verdict
	err   error
	panic bool
	ran   *[]string
}

func (f fakeCheck) Name() string { return f.name }
func (f fakeCheck) Stage() Stage { return f.stage }
func (f fakeCheck) Check(context.Context, *Transaction) (Verdict, error) {
	*f.ran = append(*f.ran, f.name)
	if f.panic {
		panic("boom")
	}
	return f.v, f.err
}

// TestOrderIsPinned pins the execution order of DESIGN.md §3. Changing
// order.go must change this test too, so that the change shows in review.
func TestOrderIsPinned(t *testing.T) {
	want := []string{"greet_pause", "dnsbl", "domain", "account", "spf", "greylist", "header", "dmarc"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("check order = %v, want %v", order, want)
	}
	var ran []string
	// Registered in scrambled order: the chain sorts them.
	chain := NewChain(
		fakeCheck{name: "spf", stage: StageRcpt, ran: &ran},
		fakeCheck{name: "greylist", stage: StageRcpt, ran: &ran},
		fakeCheck{name: "domain", stage: StageRcpt, ran: &ran},
		fakeCheck{name: "account", stage: StageRcpt, ran: &ran},
		fakeCheck{name: "dnsbl", stage: StageRcpt, ran: &ran},
	)
	chain.Run(context.Background(), StageRcpt, &Transaction{})
	if w := []string{"dnsbl", "domain", "account", "spf", "greylist"}; !reflect.DeepEqual(ran, w) {
		t.Errorf("rcpt stage ran %v, want %v", ran, w)
	}
}

func TestRunStopsAtFirstVerdictAndGathersTags(t *testing.T) {
	var ran []string
	tagged := Verdict{Action: Tag, Headers: []Header{{"X-Tag", "1"}}}
	reject := Verdict{Action: Reject, Reply: &policy.Reply{Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "no"}}
	chain := NewChain(
		fakeCheck{name: "domain", stage: StageRcpt, v: tagged, ran: &ran},
		fakeCheck{name: "account", stage: StageRcpt, v: reject, ran: &ran},
		fakeCheck{name: "greylist", stage: StageRcpt, ran: &ran},
	)
	v, results := chain.Run(context.Background(), StageRcpt, &Transaction{})
	if v.Action != Reject || v.Reply.Code != 550 {
		t.Errorf("verdict = %+v", v)
	}
	if len(ran) != 2 || len(results) != 2 {
		t.Errorf("ran %v after a reject", ran)
	}
	if len(v.Headers) != 1 {
		t.Errorf("headers = %v", v.Headers)
	}
}

// TestCheckFailuresNeverBounce: an error, a panic, a Reject with a 4xx reply
// or a Defer with a 5xx reply all end as a temporary failure.
func TestCheckFailuresNeverBounce(t *testing.T) {
	perm := &policy.Reply{Code: 550, Enhanced: [3]int{5, 0, 0}, Text: "x"}
	temp := &policy.Reply{Code: 451, Enhanced: [3]int{4, 0, 0}, Text: "x"}
	cases := map[string]fakeCheck{
		"error":                {err: errors.New("ldap: connection reset")},
		"panic":                {panic: true},
		"defer with 5xx":       {v: Verdict{Action: Defer, Reply: perm}},
		"reject with 4xx":      {v: Verdict{Action: Reject, Reply: temp}},
		"reject without reply": {v: Verdict{Action: Reject}},
	}
	for name, fc := range cases {
		var ran []string
		fc.name, fc.stage, fc.ran = "account", StageRcpt, &ran
		v, _ := NewChain(fc).Run(context.Background(), StageRcpt, &Transaction{})
		if v.Action != Defer || v.Reply == nil || !v.Reply.Temporary() {
			t.Errorf("%s: verdict %+v, want Defer with a 4xx", name, v)
		}
	}
}

func TestUnknownCheckNamePanicsAtStartup(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewChain accepted a check with no cost in order.go")
		}
	}()
	var ran []string
	NewChain(fakeCheck{name: "nonesuch", ran: &ran})
}

// recordingCheck records its runs; its dry run records them elsewhere.
type recordingCheck struct {
	fakeCheck
	dry *[]string
}

func (r recordingCheck) DryRun() Check {
	return fakeCheck{name: r.name, stage: r.stage, ran: r.dry}
}

// TestChainDryRun: the chain explain runs has the same checks in the same
// order, each DryRunner replaced by its dry run; the chain itself is left
// as it was.
func TestChainDryRun(t *testing.T) {
	var ran, dry []string
	chain := NewChain(
		recordingCheck{fakeCheck{name: "greylist", stage: StageRcpt, ran: &ran}, &dry},
		fakeCheck{name: "account", stage: StageRcpt, ran: &ran},
		fakeCheck{name: "spf", stage: StageRcpt, ran: &ran},
	)
	chain.DryRun().Run(context.Background(), StageRcpt, &Transaction{})
	if !reflect.DeepEqual(ran, []string{"account", "spf"}) || !reflect.DeepEqual(dry, []string{"greylist"}) {
		t.Errorf("dry run: ran %v, dry %v; want account and spf, then the greylist check's dry run", ran, dry)
	}
	ran, dry = nil, nil
	chain.Run(context.Background(), StageRcpt, &Transaction{})
	if !reflect.DeepEqual(ran, []string{"account", "spf", "greylist"}) || dry != nil {
		t.Errorf("the chain after DryRun: ran %v, dry %v", ran, dry)
	}
}
