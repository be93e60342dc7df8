package policy

import (
	"math/rand/v2"
	"testing"
)

func TestSuggestDomain(t *testing.T) {
	cases := []struct {
		domain string
		want   string // "" = no suggestion
	}{
		{"gmail.con", "gmail.com"},     // substitution
		{"gmial.com", "gmail.com"},     // transposition
		{"gmai.com", "gmail.com"},      // deletion
		{"gmaill.com", "gmail.com"},    // insertion
		{"GMAIL.CON.", "gmail.com"},    // case and trailing dot
		{"mgail.com", "gmail.com"},     // transposition at the start
		{"gmail.cmo", "gmail.com"},     // transposition at the end
		{"gmail.comm", "gmail.com"},    // insertion at the end
		{"ygmail.com", "gmail.com"},    // insertion at the start
		{"yahoo.co.jo", "yahoo.co.jp"}, // Japanese TLD slip
		{"docomo.ne.jo", "docomo.ne.jp"},
		{"docomo.nejp", "docomo.ne.jp"},
		{"ezweb.ne.pj", "ezweb.ne.jp"},
		{"softbank.ne.jpp", "softbank.ne.jp"},
		{"i.sofbank.jp", "i.softbank.jp"},
		{"hotmial.com", "hotmail.com"},
		{"outlok.com", "outlook.com"},
		{"icloud.con", "icloud.com"},
		{"gmail.com", ""},    // exact: no suggestion
		{"Gmail.Com.", ""},   // exact after folding
		{"me.com", ""},       // exact, although one edit from other names
		{"gmal.con", ""},     // two edits
		{"gamil.con", ""},    // two edits (transposition + substitution)
		{"campus.ac.jp", ""}, // nothing near
		{"", ""},
		{"liam.com", ""}, // "live.com" is two edits away
	}
	for _, c := range cases {
		got, ok := SuggestDomain(c.domain, PopularDomains)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("SuggestDomain(%q) = %q, %v; want %q", c.domain, got, ok, c.want)
		}
	}
	// The first popular domain wins when two are one edit away.
	if got, _ := SuggestDomain("ab.com", []string{"abc.com", "ab.co"}); got != "abc.com" {
		t.Errorf("first-wins: got %q", got)
	}
	if got, ok := SuggestDomain("x.com", nil); ok {
		t.Errorf("empty list suggested %q", got)
	}
}

// osaDistance is the textbook optimal-string-alignment distance, the
// reference the linear OneEdit is checked against.
func osaDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func TestOneEditAgreesWithOSADistance(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab."
	word := func() string {
		b := make([]byte, r.IntN(6))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for i := 0; i < 200000; i++ {
		a, b := word(), word()
		if got, want := OneEdit(a, b), osaDistance(a, b) == 1; got != want {
			t.Fatalf("OneEdit(%q, %q) = %v, OSA distance %d", a, b, got, osaDistance(a, b))
		}
	}
}

func FuzzOneEdit(f *testing.F) {
	f.Add("gmail.com", "gmial.com")
	f.Add("ab", "ba")
	f.Fuzz(func(t *testing.T, a, b string) {
		if len(a) > 64 || len(b) > 64 {
			return
		}
		if got, want := OneEdit(a, b), osaDistance(a, b) == 1; got != want {
			t.Fatalf("OneEdit(%q, %q) = %v, OSA distance %d", a, b, got, osaDistance(a, b))
		}
	})
}

func BenchmarkSuggestDomain(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		SuggestDomain("studentmail.campus.ac.jp", PopularDomains)
	}
}
