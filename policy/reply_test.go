package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sekisho/internal/replytest"
)

// TestEveryReplyLiteralHasMatchingClass checks every Reply literal of this
// package: the enhanced code's class must equal the basic code's class (the
// bug where a 451 carried a 5.x.x). Reading the source means a reply added
// later is checked without anyone remembering to list it.
func TestEveryReplyLiteralHasMatchingClass(t *testing.T) {
	byName := map[string]int{}
	for _, l := range replytest.CheckClasses(t, 20) {
		byName[l.Name] = l.Code
	}
	// The checks' replies with the class DESIGN.md §3 gives them (package
	// filters defines none of its own: filters/replies_test.go).
	for name, wantClass := range map[string]int{
		"DNSBLBlocked": 5, "DomainBadSender": 5, "DomainBadRecipient": 5,
		"DomainNullMXSender": 5, "NullMXRecipient": 5,
		"DomainNXSenderTempfail": 4, "DomainNXRecipientTempfail": 4, "DomainUnverifiable": 4,
		"HeaderViolation": 5, "UnknownUser": 5, "DirectoryIncomplete": 4, "DirectoryUnavailable": 4,
		"GreylistDeferred": 4, "GreylistStoreUnavailable": 4, "SPFFailed": 5, "SPFTempFailed": 4,
	} {
		code, ok := byName[name]
		if !ok {
			t.Errorf("reply %s not found: renamed? update this test", name)
		} else if code/100 != wantClass {
			t.Errorf("%s is %d, want a %dxx", name, code, wantClass)
		}
	}
}

func TestFromErrorNeverPermanentForUnannotated(t *testing.T) {
	cases := []error{
		errors.New("boom"),
		io.ErrUnexpectedEOF,
		context.DeadlineExceeded,
		fmt.Errorf("wrapped: %w", context.DeadlineExceeded),
		context.Canceled,
		&os.PathError{Op: "write", Path: "/x", Err: errors.New("no space left on device")},
	}
	for _, err := range cases {
		r := FromError(err)
		if !r.Temporary() {
			t.Errorf("FromError(%v) = %v, want a 4xx", err, r)
		}
		if strings.Contains(r.Text, err.Error()) {
			t.Errorf("FromError(%v) leaks the internal error text: %q", err, r.Text)
		}
	}
}

func TestFromErrorKeepsAnnotatedReplies(t *testing.T) {
	wrapped := fmt.Errorf("rcpt check: %w", RelayDenied)
	if got := FromError(wrapped); got != RelayDenied {
		t.Errorf("FromError(wrapped RelayDenied) = %v", got)
	}
	se := FromError(smtp.ErrDataTooLarge)
	if se.Code != 552 || se.Enhanced != [3]int{5, 3, 4} {
		t.Errorf("go-smtp ErrDataTooLarge mapped to %v", se)
	}
	if FromError(nil) != nil {
		t.Error("FromError(nil) != nil")
	}
}

func TestFromNextHopKeepsClassAndFixesEnhanced(t *testing.T) {
	cases := []struct {
		code     int
		enh      [3]int
		wantCode int
		wantEnh  [3]int
	}{
		{550, [3]int{5, 1, 1}, 550, [3]int{5, 1, 1}},
		{451, [3]int{4, 3, 0}, 451, [3]int{4, 3, 0}},
		{451, [3]int{5, 7, 1}, 451, [3]int{4, 0, 0}}, // confused next hop
		{554, [3]int{0, 0, 0}, 554, [3]int{5, 0, 0}},
		{250, [3]int{2, 0, 0}, 451, [3]int{4, 4, 0}}, // 2xx where failure expected
		{999, [3]int{9, 9, 9}, 451, [3]int{4, 4, 0}},
	}
	for _, c := range cases {
		r := FromNextHop(c.code, c.enh, "text")
		if r.Code != c.wantCode || r.Enhanced != c.wantEnh {
			t.Errorf("FromNextHop(%d, %v) = %v, want %d %v", c.code, c.enh, r, c.wantCode, c.wantEnh)
		}
	}
}

func TestWithfKeepsCodes(t *testing.T) {
	r := TempLocal.Withf("x %d", 1)
	if r.Code != TempLocal.Code || r.Enhanced != TempLocal.Enhanced || r.Text != "x 1" {
		t.Errorf("Withf = %v", r)
	}
	if TempLocal.Text == "x 1" {
		t.Error("Withf modified the original")
	}
}
