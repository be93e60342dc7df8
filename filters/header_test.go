package filters

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
)

// hdr builds a header section from lines: CRLF endings and the empty line
// that ends the section.
func hdr(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
}

const (
	from    = "From: Taro Yamada <taro@example.jp>"
	to      = "To: hanako@campus.example"
	subject = "Subject: hello"
	date    = "Date: Sun, 22 Nov 2026 19:00:00 +0900"
	msgID   = "Message-ID: <20261122.1@example.jp>"
)

func defaultHeaderCheck(t testing.TB) *HeaderCheck {
	t.Helper()
	h, err := NewHeaderCheck(HeaderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHeaderConformingMessagesPass(t *testing.T) {
	cases := []struct {
		name     string
		header   []byte
		smtputf8 bool
	}{
		{"minimal", hdr(from, date), false},
		{"usual", hdr("Received: from a by b; Sun, 22 Nov 2026 19:00:00 +0900", from, to, subject, date, msgID), false},
		{"folded", hdr(from, "To: a@campus.example,", "\tb@campus.example", "Subject: a long", "  subject", date), false},
		{"folded From", hdr("From: Taro", " <taro@example.jp>", date), false},
		{"obs space before colon", hdr("From : taro@example.jp", "Date\t: Sun, 22 Nov 2026 19:00:00 +0900"), false},
		{"ISO-2022-JP display name", hdr("From: =?ISO-2022-JP?B?GyRCO1RMPhsoQg==?= <taro@example.jp>", date), false},
		{"Shift_JIS display name", hdr("From: =?Shift_JIS?B?jlKTYw==?= <taro@example.jp>", date), false},
		{"date with comment", hdr(from, "Date: Sun, 22 Nov 2026 19:00:00 +0900 (JST)"), false},
		{"date without weekday", hdr(from, "Date: 22 Nov 2026 19:00 +0900"), false},
		{"group in To", hdr(from, "To: undisclosed-recipients:;", date), false},
		{"several From with Sender", hdr("From: a@example.jp, b@example.jp", "Sender: a@example.jp", date), false},
		{"UTF-8 with SMTPUTF8", hdr("From: 山田太郎 <taro@例え.jp>", "Subject: こんにちは", date), true},
		{"LF line endings", []byte(from + "\n" + date + "\n\n"), false},
		{"no final empty line", []byte(from + "\r\n" + date + "\r\n"), false},
		{"no final line ending", []byte(from + "\r\n" + date), false},
		{"line of 998 octets", hdr(from, date, "X-Long: "+strings.Repeat("a", 998-len("X-Long: "))), false},
		{"repeatable fields repeated", hdr("Received: a", "Received: b", from, date, "Comments: x", "Comments: y", "Keywords: a", "Keywords: b", "Resent-To: a@b", "Resent-To: c@d"), false},
		{"body ignored", append(hdr(from, date), "From: second@example.jp\r\nDate: x\r\n\xff\xfe\r\n"...), false},
		{"colon in domain literal of From", hdr("From: taro@[IPv6:2001:db8::1]", date), false},
		{"colon in quoted display name", hdr(`From: "Re: x" <taro@example.jp>`, date), false},
	}
	h := defaultHeaderCheck(t)
	for _, c := range cases {
		if p := CheckHeader(c.header, c.smtputf8, 0); len(p) != 0 {
			t.Errorf("%s: problems %+v", c.name, p)
		}
		if v := h.Judge(c.header, c.smtputf8); v.Action != Continue {
			t.Errorf("%s: verdict %v", c.name, v.Action)
		}
	}
}

func TestHeaderRules(t *testing.T) {
	cases := []struct {
		name     string
		header   []byte
		smtputf8 bool
		rule     string // the first problem's rule
		detail   string // part of its detail
		action   Action // with the default actions
	}{
		{"no From", hdr(to, date), false, RuleFromCount, "no From field", Reject},
		{"two From", hdr(from, date, "From: other@example.jp"), false, RuleFromCount, "2 From fields (lines 1 and 3)", Reject},
		{"from case-insensitive", hdr(from, "FROM: other@example.jp", date), false, RuleFromCount, "2 From fields", Reject},
		{"no Date", hdr(from, to), false, RuleDateCount, "no Date field", Reject},
		{"two Date", hdr(from, date, date), false, RuleDateCount, "2 Date fields", Reject},
		{"empty header", []byte("\r\n"), false, RuleFromCount, "no From", Reject},
		{"8-bit without SMTPUTF8", hdr(from, date, "Subject: caf\xc3\xa9"), false, Rule8Bit, "0xC3 on line 3 without SMTPUTF8", Reject},
		{"raw Shift_JIS in From", hdr("From: \x8eR\x93c <a@example.jp>", date), false, Rule8Bit, "line 1", Reject},
		{"invalid UTF-8 with SMTPUTF8", hdr(from, date, "Subject: \xff\xfe"), true, Rule8Bit, "line 3 is not valid UTF-8", Reject},
		{"two Subject", hdr(from, date, subject, "subject: again"), false, RuleDuplicate, "2 Subject fields (lines 3 and 4)", Tag},
		{"two To", hdr(from, date, to, to), false, RuleDuplicate, "To", Tag},
		{"two Cc", hdr(from, date, "Cc: a@b", "Cc: c@d"), false, RuleDuplicate, "Cc", Tag},
		{"two Bcc", hdr(from, date, "Bcc: a@b", "Bcc: c@d"), false, RuleDuplicate, "Bcc", Tag},
		{"two Sender", hdr(from, date, "Sender: a@b", "Sender: c@d"), false, RuleDuplicate, "Sender", Tag},
		{"two Reply-To", hdr(from, date, "Reply-To: a@b", "Reply-To: c@d"), false, RuleDuplicate, "Reply-To", Tag},
		{"two Message-ID", hdr(from, date, msgID, msgID), false, RuleDuplicate, "Message-ID", Tag},
		{"two In-Reply-To", hdr(from, date, "In-Reply-To: <a@b>", "In-Reply-To: <c@d>"), false, RuleDuplicate, "In-Reply-To", Tag},
		{"two References", hdr(from, date, "References: <a@b>", "References: <c@d>"), false, RuleDuplicate, "References", Tag},
		{"From not an address", hdr("From: Taro Yamada", date), false, RuleFromSyntax, "not a mailbox list", Tag},
		{"From empty", hdr("From:", date), false, RuleFromSyntax, "not a mailbox list", Tag},
		{"From null", hdr("From: <>", date), false, RuleFromSyntax, "not a mailbox list", Tag},
		{"From group", hdr("From: friends: a@example.jp, b@example.jp;", date), false, RuleFromSyntax, "group syntax", Tag},
		{"From empty group", hdr("From: undisclosed-recipients:;", date), false, RuleFromSyntax, "group syntax", Tag},
		{"several From without Sender", hdr("From: a@example.jp, b@example.jp", date), false, RuleSenderMissing, "2 mailboxes", Tag},
		{"Date unparsable", hdr(from, "Date: yesterday"), false, RuleDateSyntax, "Date (line 2) does not parse", Tag},
		{"Date empty", hdr(from, "Date:"), false, RuleDateSyntax, "does not parse", Tag},
		{"space in field name", hdr(from, date, "Bad Name: x"), false, RuleFieldSyntax, "line 3", Tag},
		{"DEL in field name", hdr(from, date, "Bad\x7fName: x"), false, RuleFieldSyntax, "not printable ASCII", Tag},
		{"no colon", hdr(from, date, "just some text"), false, RuleFieldSyntax, "line 3 is not a header field", Tag},
		{"empty name", hdr(from, date, ": x"), false, RuleFieldSyntax, "empty field name", Tag},
		{"continuation first", hdr(" folded", from, date), false, RuleFieldSyntax, "line 1 continues no field", Tag},
		{"line of 999 octets", hdr(from, date, "X-Long: "+strings.Repeat("a", 999-len("X-Long: "))), false, RuleLineLength, "line 3 is 999 octets", Tag},
		{"long continuation line", hdr(from, date, "X-Long: a", " "+strings.Repeat("b", 1200)), false, RuleLineLength, "line 4 is 1201 octets", Tag},
	}
	h := defaultHeaderCheck(t)
	for _, c := range cases {
		problems := CheckHeader(c.header, c.smtputf8, 0)
		if len(problems) == 0 {
			t.Errorf("%s: no problem found", c.name)
			continue
		}
		if problems[0].Rule != c.rule || !strings.Contains(problems[0].Detail, c.detail) {
			t.Errorf("%s: first problem %+v, want %s with %q (all: %+v)", c.name, problems[0], c.rule, c.detail, problems)
		}
		v := h.Judge(c.header, c.smtputf8)
		if v.Action != c.action {
			t.Errorf("%s: verdict %v, want %v", c.name, v.Action, c.action)
		}
		switch c.action {
		case Reject:
			if v.Reply.Code != 550 || v.Reply.Enhanced != [3]int{5, 6, 0} || !strings.Contains(v.Reply.Text, "header rule "+c.rule+" broken") {
				t.Errorf("%s: reply %v", c.name, v.Reply)
			}
		case Tag:
			want := Header{Name: "X-Sekisho-Header-Violation", Value: c.rule}
			if len(v.Headers) == 0 || v.Headers[0] != want {
				t.Errorf("%s: headers %+v, want %+v first", c.name, v.Headers, want)
			}
		}
		if !strings.Contains(v.Reason, c.rule+": ") {
			t.Errorf("%s: reason %q does not name %s", c.name, v.Reason, c.rule)
		}
	}
}

func TestHeaderSizeBound(t *testing.T) {
	big := hdr(from, date, "X-Big: "+strings.Repeat("a", 900), "X-Big: "+strings.Repeat("a", 900))
	problems := CheckHeader(big, false, 1000)
	if len(problems) != 1 || problems[0].Rule != RuleHeaderSize || !strings.Contains(problems[0].Detail, "exceeds 1000") {
		t.Errorf("problems %+v, want header-size only", problems)
	}
	// The bound is only the header-size threshold: the fields past it are
	// judged like the others. A From and a Date past it are there...
	late := hdr("X-Pad: "+strings.Repeat("a", 500), "X-Pad: "+strings.Repeat("a", 500), from, date)
	if p := CheckHeader(late, false, 600); len(p) != 1 || p[0].Rule != RuleHeaderSize {
		t.Errorf("From and Date past the bound: %+v, want header-size only", p)
	}
	// ... and a second From past it is a second From (issue 16: it hid
	// there, and the message went out with two).
	second := hdr("From: alice@campus.example", date, "X-Pad: "+strings.Repeat("a", 500), "X-Pad: "+strings.Repeat("a", 500), "From: bob@campus.example")
	if p := CheckHeader(second, false, 600); len(p) == 0 || p[0].Rule != RuleFromCount {
		t.Errorf("second From past the bound not reported: %+v", p)
	}
	if got, err := FromAddresses(second, false); err == nil {
		t.Errorf("FromAddresses with a second From past the bound = %v, want an error", got)
	}
	dup := append(hdr(from, from, date), bytes.Repeat([]byte("X-Pad: x\r\n"), 200)...)
	if p := CheckHeader(dup, false, 200); len(p) == 0 || p[0].Rule != RuleFromCount {
		t.Errorf("duplicate within the bound not reported: %+v", p)
	}
	// The default bound.
	h := defaultHeaderCheck(t)
	huge := hdr(from, date, "X-Big: "+strings.Repeat("a", 900))
	huge = append(bytes.Repeat([]byte("X-Pad: "+strings.Repeat("b", 90)+"\r\n"), DefaultHeaderMaxBytes/99+1), huge...)
	v := h.Judge(huge, false)
	if v.Action != Tag || len(v.Headers) != 1 || v.Headers[0].Value != RuleHeaderSize {
		t.Errorf("header over %d octets: %+v", DefaultHeaderMaxBytes, v)
	}
}

func TestHeaderSeveralProblemsTaggedInRuleOrder(t *testing.T) {
	h := defaultHeaderCheck(t)
	v := h.Judge(hdr("From: a@example.jp, b@example.jp", "Date: soon", subject, subject, "Bad Name: x"), false)
	var got []string
	for _, hd := range v.Headers {
		got = append(got, hd.Value)
	}
	want := []string{RuleDuplicate, RuleSenderMissing, RuleDateSyntax, RuleFieldSyntax}
	if v.Action != Tag || !reflect.DeepEqual(got, want) {
		t.Errorf("verdict %v with %v, want tag with %v", v.Action, got, want)
	}
	// A rejecting rule wins over the tags and is the one the reply names.
	v = h.Judge(hdr("From: a@example.jp, b@example.jp", subject, subject), false)
	if v.Action != Reject || !strings.Contains(v.Reply.Text, RuleDateCount) {
		t.Errorf("verdict %v %v, want reject naming %s", v.Action, v.Reply, RuleDateCount)
	}
}

func TestHeaderConfigActions(t *testing.T) {
	noDate := hdr(from, to)
	badDate := hdr(from, "Date: never")
	cases := []struct {
		name   string
		cfg    HeaderConfig
		header []byte
		want   Action
		value  string // tag value or rule in the reply
	}{
		{"default rejects missing Date", HeaderConfig{}, noDate, Reject, RuleDateCount},
		{"date-count to tag", HeaderConfig{Rules: map[string]HeaderAction{RuleDateCount: HeaderTag}}, noDate, Tag, RuleDateCount},
		{"date-count off", HeaderConfig{Rules: map[string]HeaderAction{RuleDateCount: HeaderOff}}, noDate, Continue, ""},
		{"date-syntax to reject", HeaderConfig{Rules: map[string]HeaderAction{RuleDateSyntax: HeaderReject}}, badDate, Reject, RuleDateSyntax},
		{"date-syntax off", HeaderConfig{Rules: map[string]HeaderAction{RuleDateSyntax: HeaderOff}}, badDate, Continue, ""},
		{"8bit off", HeaderConfig{Rules: map[string]HeaderAction{Rule8Bit: HeaderOff}}, hdr(from, date, "Subject: \xe9"), Continue, ""},
		{"check off", HeaderConfig{Off: true}, []byte("garbage\xff"), Continue, ""},
		{"smaller bound", HeaderConfig{MaxBytes: 100}, hdr(from, date, "X: "+strings.Repeat("a", 100)), Tag, RuleHeaderSize},
	}
	for _, c := range cases {
		h, err := NewHeaderCheck(c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		v, err := h.Check(context.Background(), &Transaction{Header: c.header})
		if err != nil {
			t.Fatal(err)
		}
		if v.Action != c.want {
			t.Errorf("%s: %v, want %v", c.name, v.Action, c.want)
			continue
		}
		switch c.want {
		case Tag:
			if len(v.Headers) != 1 || v.Headers[0].Value != c.value {
				t.Errorf("%s: headers %+v", c.name, v.Headers)
			}
		case Reject:
			if !strings.Contains(v.Reply.Text, c.value) {
				t.Errorf("%s: reply %v", c.name, v.Reply)
			}
		}
	}
}

func TestHeaderConfigValidate(t *testing.T) {
	bad := []struct {
		cfg  HeaderConfig
		want string
	}{
		{HeaderConfig{Rules: map[string]HeaderAction{"from": HeaderTag}}, `unknown rule "from"`},
		{HeaderConfig{Rules: map[string]HeaderAction{RuleDateSyntax: "bounce"}}, `unknown action "bounce"`},
		{HeaderConfig{MaxBytes: -1}, "negative"},
	}
	for _, c := range bad {
		if _, err := NewHeaderCheck(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewHeaderCheck(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
	for _, rule := range HeaderRules() {
		if _, ok := DefaultHeaderActions()[rule]; !ok {
			t.Errorf("rule %s has no default action", rule)
		}
	}
}

func TestHeaderSMTPUTF8FromTransaction(t *testing.T) {
	h := defaultHeaderCheck(t)
	header := hdr(from, date, "Subject: こんにちは")
	for _, utf8 := range []bool{false, true} {
		v, _ := h.Check(context.Background(), &Transaction{Header: header, SMTPUTF8: utf8})
		if want := map[bool]Action{false: Reject, true: Continue}[utf8]; v.Action != want {
			t.Errorf("SMTPUTF8=%v: %v, want %v", utf8, v.Action, want)
		}
	}
}

// TestHeaderThroughTheChain runs the check as the gateway does: in a Chain at
// StageData, so the verdict survives the chain's class checks.
func TestHeaderThroughTheChain(t *testing.T) {
	h := defaultHeaderCheck(t)
	if h.Name() != "header" || h.Stage() != StageData {
		t.Fatalf("name %q stage %v", h.Name(), h.Stage())
	}
	chain := NewChain(h)
	v, results := chain.Run(context.Background(), StageData, &Transaction{Header: hdr(to, date)})
	if v.Action != Reject || v.Reply.String() != "550 5.6.0 message refused: header rule from-count broken: no From field (RFC 5322 section 3.6)" {
		t.Errorf("chain verdict %v %v", v.Action, v.Reply)
	}
	if len(results) != 1 || results[0].Check != "header" {
		t.Errorf("results %+v", results)
	}
	v, _ = chain.Run(context.Background(), StageData, &Transaction{Header: hdr(from, date, subject, subject)})
	if v.Action != Tag || len(v.Headers) != 1 {
		t.Errorf("chain tag verdict %+v", v)
	}
}

// TestHeaderReplyIsSafeASCII: a From value with control and 8-bit bytes,
// rejected by configuration, must not carry them into the SMTP reply.
func TestHeaderReplyIsSafeASCII(t *testing.T) {
	h, err := NewHeaderCheck(HeaderConfig{Rules: map[string]HeaderAction{RuleFromSyntax: HeaderReject, Rule8Bit: HeaderOff}})
	if err != nil {
		t.Fatal(err)
	}
	v := h.Judge(hdr("From: \"\xff\x01"+strings.Repeat("x", 2000), date), false)
	if v.Action != Reject {
		t.Fatalf("verdict %v", v.Action)
	}
	checkReplyLine(t, v.Reply.String())
}

func checkReplyLine(t testing.TB, s string) {
	t.Helper()
	if len(s) > 512 {
		t.Errorf("reply is %d octets long", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			t.Fatalf("reply has octet 0x%02x: %q", s[i], s)
		}
	}
}

// FuzzHeader feeds the parser and the rules arbitrary header sections. It
// checks that nothing panics, that the verdict is well-formed (a rejection
// is a 550 5.6.0 on one printable ASCII line, tags name known rules), that a
// rule is reported at most once, and that LF and CRLF line endings give the
// same problems.
func FuzzHeader(f *testing.F) {
	seeds := [][]byte{
		hdr(from, to, subject, date, msgID),
		hdr(to, date),
		hdr(from, from, date, date),
		hdr("From: =?ISO-2022-JP?B?GyRCO1RMPhsoQg==?= <taro@example.jp>", date),
		hdr("From: a@b, c@d", date),
		hdr("From: g: a@b;", "Date: x"),
		hdr("From: \"unterminated", "Date: Sun, 22 Nov 2026 19:00:00 +0900 (JST"),
		hdr("From: (comment (nested) \\) a@b", date),
		hdr(" cont", "no colon", ": empty", "Bad Name: x", "X\x7f: y"),
		hdr(from, date, "Subject: \xe3\x81\x82\xff"),
		hdr(from, date, "X: "+strings.Repeat("a", 1000)),
		[]byte("From: a@b\nDate: x\n\nbody"),
		[]byte("From: a@b\r\r\nDate:\r"),
		[]byte(""),
		[]byte("\r\n"),
		[]byte(":"),
		[]byte("From:<@>\r\n\t\r\n"),
		[]byte("From: a@[IPv6:::1]\r\nDate: 1 Jan 2000 00:00 +0000\r\n"),
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	rules := map[string]bool{}
	for _, r := range HeaderRules() {
		rules[r] = true
	}
	h, err := NewHeaderCheck(HeaderConfig{})
	if err != nil {
		f.Fatal(err)
	}
	strict := &HeaderCheck{maxBytes: DefaultHeaderMaxBytes, actions: map[string]HeaderAction{}}
	for _, r := range HeaderRules() {
		strict.actions[r] = HeaderReject
	}
	f.Fuzz(func(t *testing.T, header []byte, smtputf8 bool) {
		problems := CheckHeader(header, smtputf8, 0)
		seen := map[string]bool{}
		for _, p := range problems {
			if !rules[p.Rule] || seen[p.Rule] {
				t.Fatalf("unknown or repeated rule %q in %+v", p.Rule, problems)
			}
			seen[p.Rule] = true
		}
		for _, c := range []*HeaderCheck{h, strict} {
			v := c.Judge(header, smtputf8)
			switch v.Action {
			case Continue:
				if len(problems) != 0 && c == strict {
					t.Fatalf("strict check let %+v pass", problems)
				}
			case Tag:
				for _, hd := range v.Headers {
					if hd.Name != HeaderViolationField || !rules[hd.Value] {
						t.Fatalf("bad tag %+v", hd)
					}
				}
			case Reject:
				if v.Reply == nil || v.Reply.Code != 550 || v.Reply.Enhanced != [3]int{5, 6, 0} {
					t.Fatalf("bad reply %v", v.Reply)
				}
				checkReplyLine(t, v.Reply.String())
			default:
				t.Fatalf("action %v", v.Action)
			}
		}
		// LF and CRLF line endings are the same header.
		if !bytes.Contains(header, []byte{'\r'}) {
			crlf := bytes.ReplaceAll(header, []byte{'\n'}, []byte("\r\n"))
			if len(crlf) <= DefaultHeaderMaxBytes {
				if got := CheckHeader(crlf, smtputf8, 0); !reflect.DeepEqual(got, problems) {
					t.Fatalf("LF gives %+v, CRLF gives %+v", problems, got)
				}
			}
		}
		// The parser's fields are well-formed.
		for _, fl := range parseHeader(header, smtputf8).fields {
			if fl.name == "" || strings.ContainsAny(fl.name, ": \t\r\n") || fl.line < 1 {
				t.Fatalf("bad field %+v", fl)
			}
		}
	})
}

func BenchmarkHeaderJudge(b *testing.B) {
	h := defaultHeaderCheck(b)
	header := hdr(
		"Received: from mx.example.jp (mx.example.jp [192.0.2.1]) by mx1.campus.example with ESMTPS id 1; Sun, 22 Nov 2026 19:00:00 +0900",
		"Received: from [10.0.0.1] by mx.example.jp with ESMTPSA id 2; Sun, 22 Nov 2026 18:59:59 +0900",
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.jp; s=s1;",
		"\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;",
		"\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR",
		"From: =?ISO-2022-JP?B?GyRCO1RMPhsoQg==?= <taro@example.jp>",
		"To: hanako@campus.example",
		"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=",
		"Date: Sun, 22 Nov 2026 19:00:00 +0900",
		"Message-ID: <20261122.1@example.jp>",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=ISO-2022-JP",
	)
	b.SetBytes(int64(len(header)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := h.Judge(header, false); v.Action != Continue {
			b.Fatal(v)
		}
	}
}

func TestFromAddresses(t *testing.T) {
	cases := []struct {
		hdr  string
		want []string
		ok   bool
	}{
		{"From: Alice <alice@campus.test>\r\nSubject: x\r\n\r\n", []string{"alice@campus.test"}, true},
		{"from: a@x.test, \"B\" <b@y.test>\r\n\r\n", []string{"a@x.test", "b@y.test"}, true},
		{"From: =?utf-8?q?Al=C3=AFce?= <alice@campus.test>\r\n\r\n", []string{"alice@campus.test"}, true},
		{"Subject: none\r\n\r\n", nil, false},
		{"From: a@x.test\r\nFrom: b@x.test\r\n\r\n", nil, false},
		{"From: group: a@x.test;\r\n\r\n", nil, false},
		{"From: not an address\r\n\r\n", nil, false},
	}
	for _, c := range cases {
		got, err := FromAddresses([]byte(c.hdr), false)
		if (err == nil) != c.ok || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("FromAddresses(%q) = %v, %v", c.hdr, got, err)
		}
	}
}
