package mailaddr

import (
	"strings"
	"testing"
)

func TestToASCII(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(long63+".", 3) + strings.Repeat("b", 61) // 63*3+3+61 = 253
	for _, tc := range []struct {
		in, want string
		errHas   string // "" for success
	}{
		{"example.com", "example.com", ""},
		{"Example.COM.", "example.com", ""},
		{"localhost", "localhost", ""},
		{"a-b.c0.example", "a-b.c0.example", ""},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", ""},
		{"Bücher.example", "xn--bcher-kva.example", ""},
		{"BÜCHER.Example.", "xn--bcher-kva.example", ""},
		{"例え.jp", "xn--r8jz45g.jp", ""},
		{"faß.de", "xn--fa-hia.de", ""},                 // non-transitional: ß stays ß
		{"bücher。example", "xn--bcher-kva.example", ""}, // ideographic full stop
		{name253, name253, ""},
		{long63 + ".example", long63 + ".example", ""},

		{"", "", "empty"},
		{".", "", "empty"},
		{"example..com", "", "empty label"},
		{".example.com", "", "empty label"},
		{"example.com..", "", "empty label"},
		{long63 + "a.example", "", "64 octets"},
		{name253 + "b", "", "254 octets"},
		{"ex_ample.com", "", `'_'`},
		{"ex ample.com", "", `' '`},
		{"user@example.com", "", `'@'`},
		{"-a.example", "", "hyphen"},
		{"a-.example", "", "hyphen"},
		{"192.0.2.1", "", "all digits"},
		{"[192.0.2.1]", "", "address literal"},
		{"bü_cher.example", "", "IDNA"},
		{"\xff.example", "", "IDNA"},
	} {
		got, err := ToASCII(tc.in)
		if tc.errHas == "" {
			if err != nil || got != tc.want {
				t.Errorf("ToASCII(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if !Valid(tc.in) {
				t.Errorf("Valid(%q) = false", tc.in)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("ToASCII(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.errHas)
		}
		if Valid(tc.in) {
			t.Errorf("Valid(%q) = true", tc.in)
		}
	}
}

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.":   "example.com",
		"Bücher.Example": "xn--bcher-kva.example",
		"ex_ample.COM":   "ex_ample.com", // not valid, folded all the same
		"[192.0.2.1]":    "[192.0.2.1]",
		"":               "",
	} {
		if got := Fold(in); got != want {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDomainSet(t *testing.T) {
	ds := NewDomainSet([]string{"campus.test", ".campus.test", "Other.Test.", " .sub.Only.test ", "bücher.test", ""})
	if ds.Len() != 5 {
		t.Errorf("Len = %d, want 5", ds.Len())
	}
	for d, want := range map[string]bool{
		"campus.test":           true,
		"CAMPUS.TEST.":          true,
		"a.campus.test":         true,
		"a.b.campus.test":       true,
		"xcampus.test":          false,
		"other.test":            true,
		"a.other.test":          false,
		"sub.only.test":         false, // ".x" alone: subdomains only
		"a.sub.only.test":       true,
		"only.test":             false,
		"xn--bcher-kva.test":    true,
		"BÜCHER.test":           true,
		"a.bücher.test":         false,
		"[192.0.2.1]":           false,
		"":                      false,
		"test":                  false,
		"campus.test.elsewhere": false,
	} {
		if got := ds.Contains(d); got != want {
			t.Errorf("Contains(%q) = %v, want %v", d, got, want)
		}
	}

	any := NewDomainSet([]string{"*"})
	if !any.Contains("anything.example") || !any.Contains("localhost") || any.Contains("[192.0.2.1]") || any.Contains("") {
		t.Error("* must match every domain name and no address literal")
	}
	var zero DomainSet
	if zero.Contains("example.com") || zero.Len() != 0 {
		t.Error("the zero DomainSet must be empty")
	}
}

func TestDomainTree(t *testing.T) {
	ds := NewDomainTree([]string{"exact.test", ".tree.test", ".a.tree.test", ".xn--bcher-kva.test", "*.bad"})
	for d, want := range map[string]string{
		"exact.test":              "exact.test",
		"a.exact.test":            "",
		"tree.test":               ".tree.test", // ".x" covers x too
		"b.tree.test":             ".tree.test",
		"a.tree.test":             ".a.tree.test", // the closest subtree entry
		"b.a.tree.test":           ".a.tree.test",
		"bücher.test":             ".xn--bcher-kva.test",
		"www.Bücher.test.":        ".xn--bcher-kva.test",
		"xtree.test":              "",
		"test":                    "",
		"*.bad":                   "*.bad", // no wildcard syntax: an ordinary (invalid) name
		"x.bad":                   "",
		"[192.0.2.1]":             "",
		"tree.test.somewhere.net": "",
	} {
		got, ok := ds.Match(d)
		if got != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", d, got, ok, want)
		}
		if ds.Contains(d) != ok {
			t.Errorf("Contains(%q) != Match's ok", d)
		}
	}

	// An exact entry wins over a subtree entry, a subtree over "*".
	ds = NewDomainTree([]string{"*", ".example.com", "www.example.com"})
	for d, want := range map[string]string{
		"www.example.com": "www.example.com",
		"a.example.com":   ".example.com",
		"example.net":     "*",
	} {
		if got, _ := ds.Match(d); got != want {
			t.Errorf("Match(%q) = %q, want %q", d, got, want)
		}
	}
}

func BenchmarkDomainSetContains(b *testing.B) {
	ds := NewDomainSet([]string{"campus.example", ".campus.example", "other.example"})
	for b.Loop() {
		ds.Contains("mail.dept.campus.example")
	}
}
