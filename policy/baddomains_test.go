package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseBadDomainsValidLines(t *testing.T) {
	content := "\xEF\xBB\xBF# header comment\r\n" +
		"\r\n" +
		"Gmail.CON.   # trailing comment\r\n" +
		"  .lan\t\r\n" +
		"xn--gmil-6na.com\n" +
		"a-b.c0m\n" +
		"#.commented.out\n" +
		"gmail.con\n" + // duplicate: allowed, first wins
		"last.entry" // no final newline
	l, err := ParseBadDomains("bd.txt", []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	want := []BadDomainEntry{
		{"gmail.con", false, 3},
		{"lan", true, 4},
		{"xn--gmil-6na.com", false, 5},
		{"a-b.c0m", false, 6},
		{"gmail.con", false, 8},
		{"last.entry", false, 9},
	}
	got := l.Entries()
	if len(got) != len(want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if m, ok := l.Match("GMAIL.con."); !ok || m.Line != 3 || m.Rule != "bd.txt:3: gmail.con" {
		t.Errorf("Match(GMAIL.con.) = %+v, %v; want line 3 (first of the duplicates)", m, ok)
	}
	// An internationalized name matches in its A-label form.
	if m, ok := l.Match("www.Gmáil.com"); ok || m.Line != 0 {
		t.Errorf("Match(www.Gmáil.com) = %+v, %v; want no match (xn--gmil-6na.com is exact)", m, ok)
	}
	if m, ok := l.Match("Gmáil.com."); !ok || m.Line != 5 || m.Domain != "xn--gmil-6na.com" {
		t.Errorf("Match(Gmáil.com.) = %+v, %v; want line 5", m, ok)
	}
	// A U-label entry is stored as A-labels.
	if e, err := ParseBadDomainEntry(".Bücher.Example"); err != nil || e.Domain != "xn--bcher-kva.example" || !e.Subtree || !e.Covers("www.bücher.example") {
		t.Errorf("ParseBadDomainEntry(.Bücher.Example) = %+v, %v", e, err)
	}
}

func TestParseBadDomainsErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		line string
		want string // part of the error text
	}{
		{"gmail,con", `character ','`},
		{"foo bar.com", "more than one name"},
		{"user@gmail.con", "address, not a domain"},
		{"*.example.org", "wildcards are not supported"},
		{"..example.org", "dot too many"},
		{"a..b", "empty label"},
		{".", "empty name"},
		{"-a.com", "hyphen"},
		{"a-.com", "hyphen"},
		{"under_score.com", `character '_'`},
		{"192.0.2.1", "all digits"},
		{"gmä_il.com", "IDNA"},
		{strings.Repeat("a", 64) + ".com", "at most 63"},
		{strings.Repeat("abcdefghi.", 26) + "com", "at most 253"},
	}
	for _, c := range cases {
		content := "# comment\nok.example.net\n" + c.line + "  # why\n"
		_, err := ParseBadDomains("/etc/sekisho/bd.txt", []byte(content))
		if err == nil {
			t.Errorf("%q: no error", c.line)
			continue
		}
		var le *BadDomainLineError
		if !errors.As(err, &le) || le.Line != 3 || le.File != "/etc/sekisho/bd.txt" {
			t.Errorf("%q: error %v is not a line error for bd.txt:3", c.line, err)
		}
		if !strings.HasPrefix(err.Error(), "/etc/sekisho/bd.txt:3: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q does not start with file:line or lacks %q", c.line, err, c.want)
		}
	}
}

func TestParseBadDomainsReportsEveryBadLine(t *testing.T) {
	_, err := ParseBadDomains("f", []byte("bad_1.com\ngood.com\nbad_2.com\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"f:1: ", "f:3: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestBadDomainListSubtreeRules(t *testing.T) {
	l, err := ParseBadDomains("f", []byte("exact.example.net\n.sub.example.net\n.deep.sub.example.net\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		domain string
		line   int // 0: not listed
	}{
		{"exact.example.net", 1},
		{"EXACT.example.net.", 1},
		{"x.exact.example.net", 0}, // exact entries do not cover subdomains
		{"example.net", 0},
		{"sub.example.net", 2}, // ".sub..." covers the name itself
		{"a.sub.example.net", 2},
		{"a.b.c.sub.example.net", 2},
		{"deep.sub.example.net", 3}, // the closest subtree entry is reported
		{"x.deep.sub.example.net", 3},
		{"notsub.example.net", 0}, // suffix must be at a label boundary
		{"xsub.example.net", 0},
		{"", 0},
	}
	for _, c := range cases {
		e, ok := l.Lookup(c.domain)
		if c.line == 0 {
			if ok {
				t.Errorf("Lookup(%q) = %v, want no match", c.domain, e)
			}
			continue
		}
		if !ok || e.Line != c.line {
			t.Errorf("Lookup(%q) = %+v, %v; want line %d", c.domain, e, ok, c.line)
		}
	}
}

func TestSpecialUse(t *testing.T) {
	cases := []struct {
		domain string
		want   string // part of the rule; "" = not special
	}{
		{"foo.invalid", ".invalid (RFC 6761"},
		{"INVALID", ".invalid"},
		{"a.b.test.", ".test"},
		{"example", ".example"},
		{"www.example.com", ".example.com (RFC 2606"},
		{"example.org", ".example.org"},
		{"localhost", ".localhost"},
		{"mail.localhost", ".localhost"},
		{"printer.local", ".local (RFC 6762"},
		{"localhost.localdomain", ".localhost.localdomain"},
		{"x.onion", ".onion"},
		{"nas.home.arpa", ".home.arpa"},
		{"foo.alt", ".alt"},
		{"mailhost", "bare host name"},
		{"gmail.com", ""},
		{"localdomain.example.jp", ""},
		{"local.ne.jp", ""},   // only as the last labels
		{"test.com", ""},      // .test is the TLD only
		{"myexample.com", ""}, // suffix at a label boundary
		{"[192.0.2.1]", ""},   // a domain literal is not a host name
		{"", ""},
	}
	for _, c := range cases {
		rule, ok := SpecialUse(c.domain)
		if c.want == "" {
			if ok {
				t.Errorf("SpecialUse(%q) = %q, want not special", c.domain, rule)
			}
			continue
		}
		if !ok || !strings.Contains(rule, c.want) {
			t.Errorf("SpecialUse(%q) = %q, %v; want a rule containing %q", c.domain, rule, ok, c.want)
		}
	}
}

func TestMatchBadDomainListBeforeSpecialUse(t *testing.T) {
	l, err := ParseBadDomains("bd.txt", []byte(".lan\nfoo.invalid\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := MatchBadDomain(l, "foo.invalid")
	if !ok || m.Line != 2 || m.SpecialUse() {
		t.Errorf("listed special-use name: %+v, %v; want the list's line 2", m, ok)
	}
	m, ok = MatchBadDomain(l, "bar.invalid")
	if !ok || !m.SpecialUse() || m.Entry != ".invalid" || m.File != "" {
		t.Errorf("unlisted special-use name: %+v, %v", m, ok)
	}
	m, ok = MatchBadDomain(nil, "pc.lan")
	if ok {
		t.Errorf("nil list matched %+v", m)
	}
	m, ok = MatchBadDomain(l, "pc12.lan")
	if !ok || m.Rule != "bd.txt:1: .lan" || m.Entry != ".lan" || m.Domain != "pc12.lan" {
		t.Errorf("subtree: %+v, %v", m, ok)
	}
	if _, ok := MatchBadDomain(l, "gmail.com"); ok {
		t.Error("gmail.com matched")
	}
}

// TestShippedBadDomainsFile checks the list at the repository root: it parses,
// has at least 100 entries, lists nothing twice, no entry that the built-in
// rules already cover, and none that would make a popular mail domain bad.
func TestShippedBadDomainsFile(t *testing.T) {
	const path = "../baddomains.txt"
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseBadDomains(path, content)
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() < 100 {
		t.Errorf("shipped list has %d entries, want >= 100", l.Len())
	}
	seen := map[string]int{}
	for _, e := range l.Entries() {
		if prev, dup := seen[e.String()]; dup {
			t.Errorf("line %d: %s repeats line %d", e.Line, e, prev)
		}
		seen[e.String()] = e.Line
		if rule, ok := SpecialUse(e.Domain); ok && (!e.Subtree || specialUseName(e.Domain) != "") {
			t.Errorf("line %d: %s is already bad by %s", e.Line, e, rule)
		}
		for _, p := range PopularDomains {
			if e.Covers(p) {
				t.Errorf("line %d: %s covers the popular domain %s", e.Line, e, p)
			}
		}
	}
	for _, d := range []string{"gmail.con", "docomo.ne.jo", "pc12.lan", "localhost6.localdomain6", "yahoo.co.jo"} {
		if _, ok := l.Lookup(d); !ok {
			t.Errorf("shipped list does not cover %s", d)
		}
	}
	// Each entry is covered by itself only: no entry is shadowed by another.
	for _, e := range l.Entries() {
		if got, _ := l.Lookup(e.Domain); got.Line != e.Line {
			t.Errorf("line %d: %s is shadowed by line %d: %s", e.Line, e, got.Line, got)
		}
	}
}

func BenchmarkBadDomainsMatch(b *testing.B) {
	content, err := os.ReadFile("../baddomains.txt")
	if err != nil {
		b.Fatal(err)
	}
	bd := NewBadDomains(BadDomainsOptions{})
	l, err := ParseBadDomains("baddomains.txt", content)
	if err != nil {
		b.Fatal(err)
	}
	bd.list.Store(l)
	domains := []string{"mail.student.campus.example.ac.jp", "gmail.con", "pc12.lan", "docomo.ne.jp"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bd.Match(domains[i%len(domains)])
	}
}
