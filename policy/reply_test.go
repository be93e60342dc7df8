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
		"DMARCRejected": 5, "DMARCLocalFrom": 5, "DMARCTempFailed": 4,
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
	// A library's own error type is not an annotation: a go-smtp error that
	// escaped the relay unconverted (a 5xx among them) is a generic 4xx, so
	// no code path can bounce mail by forgetting to translate.
	if se := FromError(smtp.ErrDataTooLarge); !se.Temporary() {
		t.Errorf("an unconverted go-smtp error mapped to %v, want a 4xx", se)
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

// TestWire: multi-line replies carry the code on every line and the enhanced
// code on every line (RFC 5321 §4.2.1, RFC 2034 §3); replies without an
// enhanced code have none; no control character survives into the dialogue.
func TestWire(t *testing.T) {
	cases := map[*Reply]string{
		MailOK:    "250 2.1.0 sender ok\r\n",
		StartData: "354 go ahead, end the message with <CRLF>.<CRLF>\r\n",
		EhloOK("mx", []string{"PIPELINING", "SIZE 10"}):          "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
		RcptOK.Withf("recipient <ålice@x> ok"):                   "250 2.1.5 recipient <ålice@x> ok\r\n",
		TempLocal.Withf("a\rb\x00c"):                             "451 4.3.0 a?b?c\r\n",
		{Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "one\ntwo"}: "550-5.1.1 one\r\n550 5.1.1 two\r\n",
	}
	for r, want := range cases {
		if got := r.Wire(); got != want {
			t.Errorf("Wire() = %q, want %q", got, want)
		}
	}
}

// TestCountsAsError: the flow-control replies (452, greylisting) do not
// count against the error limit; every other 4xx and 5xx does.
func TestCountsAsError(t *testing.T) {
	for r, want := range map[*Reply]bool{
		MailOK: false, StartData: false, TooManyRecipients: false, OtherRoute: false, GreylistDeferred: false,
		UnknownUser: true, RelayDenied: true, BadSequence: true, DirectoryUnavailable: true, UnknownCommand: true,
	} {
		if got := r.CountsAsError(); got != want {
			t.Errorf("%v.CountsAsError() = %v, want %v", r, got, want)
		}
	}
}
