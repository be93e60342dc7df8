package gateway

import (
	"strings"
	"testing"
)

// TestStripOwnFieldsForgedForms: every Authentication-Results field whose
// authserv-id is ours goes, however it is written (folded, after a comment,
// quoted, with a trailing dot, in another case, with a version, with white
// space before the colon), and so does one whose identifier cannot be read;
// fields naming another server stay byte for byte. Received-SPF fields go
// when their receiver= is ours.
func TestStripOwnFieldsForgedForms(t *testing.T) {
	const us = "smtp.campus.test"
	forged := []string{
		"Authentication-Results: smtp.campus.test; spf=pass\r\n",
		"Authentication-Results:\r\n smtp.campus.test; spf=pass smtp.mailfrom=evil.example\r\n",
		"Authentication-Results:\r\n\t\r\n smtp.campus.test;\r\n spf=pass\r\n",
		"Authentication-Results: (x) smtp.campus.test; spf=pass\r\n",
		"Authentication-Results: (nested (comment) \\) here) smtp.campus.test; dkim=pass\r\n",
		"Authentication-Results: smtp.campus.test (trusted); spf=pass\r\n",
		"Authentication-Results: smtp.campus.test(x); spf=pass\r\n",
		"Authentication-Results: \"smtp.campus.test\"; spf=pass\r\n",
		"Authentication-Results: \"smtp.campus\\.test\" 1; spf=pass\r\n",
		"Authentication-Results: smtp.campus.test.; spf=pass\r\n",
		"Authentication-Results: SMTP.Campus.TEST; spf=pass\r\n",
		"authentication-results: smtp.campus.test 1; dmarc=pass\r\n",
		"AUTHENTICATION-RESULTS : smtp.campus.test; spf=pass\r\n",
		"Authentication-Results\t: smtp.campus.test; spf=pass\r\n",
		"Authentication-Results\r\n : smtp.campus.test; spf=pass\r\n",
		"Authentication-Results: smtp.campus.test; none\r\n",
		"Authentication-Results: smtp.campus.test; spf=pass (comment; with semicolon) smtp.mailfrom=x\r\n",
		"Authentication-Results: smtp.campus.test; garbage\r\n",
		"Authentication-Results:\tsmtp.campus.test\t1\t;\tspf=pass\r\n",
		"Authentication-Results: smtp.campus.test\u00a0; spf=pass\r\n", // UTF-8 no-break space (SMTPUTF8)
		// Identifiers that cannot be read: a lenient reader could take
		// them for ours.
		"Authentication-Results: smtp.campus.test 2; spf=pass\r\n",
		"Authentication-Results: smtp.campus.test junk; spf=pass\r\n",
		"Authentication-Results: (only a comment)\r\n",
		"Authentication-Results:\r\n",
		"Received-SPF: pass (smtp.campus.test: forged) client-ip=192.0.2.1; receiver=smtp.campus.test; identity=mailfrom;\r\n",
		"Received-SPF: pass\r\n receiver = \"SMTP.campus.test.\" ;\r\n",
		"Received-SPF: pass (c) RECEIVER=smtp.campus.test\r\n",
		"Received-SPF: pass receiver=mx.example.org; receiver=smtp.campus.test\r\n",
		"X-Sekisho-Header-Violation: none\r\n\tcontinued\r\n",
		"x-sekisho-anything : x\r\n",
	}
	kept := []string{
		"Received: from a by smtp.campus.test; Sun, 22 Nov 2026 10:00:00 +0000\r\n",
		"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org\r\n",
		"Authentication-Results: (smtp.campus.test) mx.example.org; spf=pass\r\n",
		"Authentication-Results:\r\n mx.example.org 1;\r\n dkim=pass header.d=example.org\r\n",
		"Authentication-Results: \"mx.example.org\"; spf=pass\r\n",
		"Authentication-Results: smtp.campus.test.example.org; spf=pass\r\n",
		"Authentication-Results: campus.test; spf=pass\r\n",
		"Received-SPF: pass (mx.example.org: smtp.campus.test) receiver=mx.example.org;\r\n",
		"Received-SPF: pass client-ip=192.0.2.1; xreceiver=smtp.campus.test; receiver=mx.example.org\r\n",
		"Received-SPF: none\r\n",
		"X-Authentication-Results: smtp.campus.test; spf=pass\r\n",
		"Subject: Authentication-Results: smtp.campus.test; spf=pass\r\n",
		"Subject: kept\r\n\tkept continuation\r\n",
	}
	for _, f := range forged {
		in := "Subject: before\r\n" + f + "To: after@campus.test\r\n\r\n"
		want := "Subject: before\r\nTo: after@campus.test\r\n\r\n"
		if got := string(stripOwnFields([]byte(in), us)); got != want {
			t.Errorf("forged %q kept:\n%q", f, got)
		}
	}
	for _, f := range kept {
		in := "Subject: before\r\n" + f + "To: after@campus.test\r\n\r\n"
		if got := string(stripOwnFields([]byte(in), us)); got != in {
			t.Errorf("%q removed or changed:\n%q", f, got)
		}
	}
	// All at once: only the kept fields remain, in their order.
	in := strings.Join(forged, "") + strings.Join(kept, "") + strings.Join(forged, "") + "\r\n"
	if got, want := string(stripOwnFields([]byte(in), us)), strings.Join(kept, "")+"\r\n"; got != want {
		t.Errorf("mixed:\n%s\nwant\n%s", got, want)
	}
}
