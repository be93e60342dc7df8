package filters

import (
	"testing"

	"sekisho/internal/replytest"
)

// TestNoReplyLiteral checks that the checks build no SMTP reply of their
// own: every reply is defined in package policy, next to its RFC, where
// policy/reply_test.go checks its classes (DESIGN.md §1: "every reply is
// built in one place"). A check picks a policy reply and may only replace
// its text (Reply.Withf).
func TestNoReplyLiteral(t *testing.T) {
	for _, pos := range replytest.Anywhere(t) {
		t.Errorf("%s: a Reply literal in package filters: define the reply in policy/replies.go", pos)
	}
}
