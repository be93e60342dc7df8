package filters

import (
	"net/mail"
	"testing"
)

// TestDateParsesAsNetMail: dateParses, with its shortcut for the usual
// form, accepts exactly what mail.ParseDate accepts.
func TestDateParsesAsNetMail(t *testing.T) {
	for _, v := range []string{
		"Tue, 1 Dec 2026 07:34:13 +0000",
		"Tue,  1 Dec 2026 07:34:13 +0000 (UTC)", // smtp-source's
		"Sun, 22 Nov 2026 19:00:00 +0900 (JST)",
		"Sun, 22 Nov 2026 19:00:00 -0500",
		"Sun, 22 Nov 2026 19:00:00 -0500   (EST)  ",
		"Sun, 02 Nov 2026 19:00:00 +0100",
		"Sun, 22 Nov 26 19:00:00 +0900",       // 2-digit year: not the shortcut's layout
		"22 Nov 2026 19:00 +0900",             // no weekday, no seconds
		"Sun, 22 Nov 2026 19:00 +0900",        // no seconds
		"Sun, 22 Nov 2026 19:00:00 GMT",       // obsolete zone
		"Thu, 20 Nov 1997 09:55:06 MDT (MDT)", // obsolete zone and comment
		"Sun, 22 Nov 2026 19:00:00 +0900 garbage",
		"Sun, 22 Nov 2026 19:00:00 +0900 (a (nested) comment)",
		"Sun, 22 Nov 2026 19:00:00 +0900 (unbalanced",
		"Sun, 22 Nov 2026 19:00:00 +0900 (quoted \\) paren)",
		"Sun, 31 Feb 2026 19:00:00 +0900",
		"Xyz, 22 Nov 2026 19:00:00 +0900",
		"Sun, 22 Nov 2026 25:00:00 +0900",
		"Sun, 22 Nov 2026 19:00:00 +09",
		"Sun, 22 Nov\r\n 2026 19:00:00 +0900",
		"Sun, 22 Nov 2026 19:00:00\r +0900",
		"Sun, 22 Nov 2026 19:00:00 +0900\n",
		"-0000",
		"yesterday",
		"",
	} {
		_, err := mail.ParseDate(v)
		if got, want := dateParses(v), err == nil; got != want {
			t.Errorf("dateParses(%q) = %v, mail.ParseDate says %v", v, got, want)
		}
	}
}

// TestDateParsesShortcut: the usual form costs a fraction of
// mail.ParseDate's allocations (which fails 24 layouts first).
func TestDateParsesShortcut(t *testing.T) {
	const v = "Tue, 1 Dec 2026 07:34:13 +0100 (CET)"
	fast := testing.AllocsPerRun(100, func() { dateParses(v) })
	slow := testing.AllocsPerRun(100, func() { mail.ParseDate(v) })
	if fast > 3 || slow < 20 {
		t.Errorf("allocations: dateParses %v, mail.ParseDate %v; want at most 3 against at least 20", fast, slow)
	}
}

func BenchmarkDateParses(b *testing.B) {
	const v = "Tue,  1 Dec 2026 07:34:13 +0000 (UTC)"
	b.ReportAllocs()
	for b.Loop() {
		if !dateParses(v) {
			b.Fatal("does not parse")
		}
	}
}

// FuzzDateParses: the shortcut never disagrees with mail.ParseDate.
func FuzzDateParses(f *testing.F) {
	f.Add("Tue,  1 Dec 2026 07:34:13 +0000 (UTC)")
	f.Add("Sun, 22 Nov 2026 19:00:00 -0500 (a (b) c)")
	f.Add("22 Nov 26 19:00 GMT")
	f.Fuzz(func(t *testing.T, v string) {
		_, err := mail.ParseDate(v)
		if got, want := dateParses(v), err == nil; got != want {
			t.Errorf("dateParses(%q) = %v, mail.ParseDate says %v", v, got, want)
		}
	})
}
