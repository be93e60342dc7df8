package policy

import (
	"fmt"
	"strings"
	"testing"
)

// wireByFmt and stringByFmt are Wire and String as they were written first
// (fmt and strings.Map on every line): the reference the faster ones must
// equal octet for octet.
func wireByFmt(r *Reply) string {
	lines := strings.Split(r.Text, "\n")
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%d%s", r.Code, sep)
		if r.Enhanced[0] != 0 {
			fmt.Fprintf(&b, "%d.%d.%d ", r.Enhanced[0], r.Enhanced[1], r.Enhanced[2])
		}
		b.WriteString(strings.Map(func(c rune) rune {
			if c < 32 || c == 127 {
				return '?'
			}
			return c
		}, l))
		b.WriteString("\r\n")
	}
	return b.String()
}

func stringByFmt(r *Reply) string {
	if r.Enhanced[0] == 0 {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

var wireTexts = []string{
	"", "ok", "one\ntwo", "one\n", "\n", "a\rb\x00c\x7fd", "ålice", "bad \xff utf-8", "c1 \u0085 control",
	"tab\there", "three\nlines\nhere", strings.Repeat("x", 600),
}

// TestWireAsBefore: Wire and String give the same octets as the fmt-based
// first versions, for every reply in replies.go's style and odd texts.
func TestWireAsBefore(t *testing.T) {
	var replies []*Reply
	for _, text := range wireTexts {
		replies = append(replies,
			&Reply{Code: 250, Enhanced: [3]int{2, 1, 0}, Text: text},
			&Reply{Code: 354, Text: text},
			&Reply{Code: 451, Enhanced: [3]int{4, 7, 1}, Text: text},
			&Reply{Code: 550, Enhanced: [3]int{5, 1, 10}, Text: text})
	}
	replies = append(replies, MailOK, StartData, TempLocal, GreylistDeferred, EhloOK("mx", []string{"PIPELINING", "SIZE 10"}))
	for _, r := range replies {
		if got, want := r.Wire(), wireByFmt(r); got != want {
			t.Errorf("Wire(%q) = %q, want %q", r.Text, got, want)
		}
		if got, want := r.String(), stringByFmt(r); got != want {
			t.Errorf("String(%q) = %q, want %q", r.Text, got, want)
		}
	}
}

func FuzzWire(f *testing.F) {
	for _, text := range wireTexts {
		f.Add(text, 550, 5, 1, 1)
	}
	f.Fuzz(func(t *testing.T, text string, code, a, b, c int) {
		r := &Reply{Code: code, Enhanced: [3]int{a, b, c}, Text: text}
		if got, want := r.Wire(), wireByFmt(r); got != want {
			t.Errorf("Wire(%+v) = %q, want %q", r, got, want)
		}
		if got, want := r.String(), stringByFmt(r); got != want {
			t.Errorf("String(%+v) = %q, want %q", r, got, want)
		}
	})
}

func BenchmarkWire(b *testing.B) {
	r := RcptOK.Withf("recipient <alice@campus.test> ok")
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Wire()
	}
}
