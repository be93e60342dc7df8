package filters

import (
	"testing"

	"sekisho/internal/replytest"
)

// TestReplyLiteralClasses checks every policy.Reply literal of the package:
// its enhanced code's class must equal its basic code's class (never a
// "451 5.x.x"). A reply a check adds later is checked without anyone listing
// it. policy's own replies are checked the same way in policy/reply_test.go.
func TestReplyLiteralClasses(t *testing.T) {
	byName := map[string]int{}
	for _, l := range replytest.CheckClasses(t, 10) {
		byName[l.Name] = l.Code
	}
	// The replies the checks must have, with the class DESIGN.md §3 gives.
	for name, wantClass := range map[string]int{
		"UnknownUser": 5, "DirectoryIncomplete": 4, "DirectoryUnavailable": 4,
		"GreylistDeferred": 4, "GreylistStoreUnavailable": 4,
		"SPFFailed": 5, "SPFTempFailed": 4, "DNSBLBlocked": 5,
		"DomainUnverifiable": 4, "DomainNXSenderTempfail": 4, "DomainNXRecipientTempfail": 4,
		"HeaderViolation": 5,
	} {
		code, ok := byName[name]
		if !ok {
			t.Errorf("reply %s not found: renamed? update this test", name)
		} else if code/100 != wantClass {
			t.Errorf("%s is %d, want a %dxx", name, code, wantClass)
		}
	}
}
