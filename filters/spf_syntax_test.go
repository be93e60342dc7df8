package filters

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"blitiri.com.ar/go/spf"
)

func TestSPFRecordSyntax(t *testing.T) {
	valid := []string{
		"v=spf1",
		"v=spf1 -all",
		"V=SPF1 +A MX -ALL",
		"v=spf1  a  mx   ~all  ",
		"v=spf1 ip4:192.0.2.0/24 ip4:192.0.2.1 ip6:2001:db8::/32 ip6:::1.1.1.1/0 -all",
		"v=spf1 a/24 a//64 a/24//64 mx:mail.example.org/28 a:example.org//0 -all",
		"v=spf1 include:_spf.google.com include:spf.protection.outlook.com ~all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 ptr ptr:example.org ?all",
		"v=spf1 redirect=_spf.example.org",
		"v=spf1 -all exp=explain._spf.%{d}",
		"v=spf1 a:%{d} mx:%{h}",
		"v=spf1 a:xn--zckzah.xn--zckzah a:example.org. -all",
		"v=spf1 moo.cow-far_out=man:dog/cat ip4:192.0.2.1 -all",
		"v=spf1 foo=%{c}%{r}%{t} -all",
		"v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
	}
	for _, r := range valid {
		if why := spfRecordSyntax(r); why != "" {
			t.Errorf("%q: %s", r, why)
		}
	}
	invalid := []struct{ record, why string }{
		{"v=spf1 ip4:192.0.2.1 -all moo", "unknown mechanism"},
		{"v=spf1 ip4:192.0.2.1 redirect:example.org", "unknown mechanism"},
		{"v=spf1 -all ip6", "needs :address"},
		{"v=spf1 ip4:192.0.2.1/032", "bad CIDR length"},
		{"v=spf1 ip4:192.0.2.1/33", "bad CIDR length"},
		{"v=spf1 ip4:2001:db8::1", "bad address"},
		{"v=spf1 ip6:192.0.2.1", "bad address"},
		{"v=spf1 ip4:192.0.2.01", "bad address"},
		{"v=spf1 mx//129", "bad CIDR length"},
		{"v=spf1 a:foo-bar -all", "does not end in .toplabel"},
		{"v=spf1 a:example.123 -all", "bad top label"},
		{"v=spf1 a:example.-com -all", "bad top label"},
		{"v=spf1 a: -all", "empty domain"},
		{"v=spf1 include: -all", "empty domain"},
		{"v=spf1 -all exp=", "empty domain"},
		{"v=spf1 -all exp=a.example.org exp=b.example.org", "more than one exp="},
		{"v=spf1 redirect=a.example.org redirect=b.example.org", "more than one redirect="},
		{"v=spf1 a:%{x}.example.org", "bad macro letter"},
		{"v=spf1 a:%{r}.example.org", "bad macro letter"},
		{"v=spf1 a:%{d2r!}.example.org", "bad macro delimiter"},
		{"v=spf1 a:%{d.example.org", "unterminated macro"},
		{"v=spf1 a:%x.example.org", "bad macro %x"},
		{"v=spf1 a:example.org%", "% at the end"},
		{"v=spf1 a:ctrl.example.com\rptr -all", "not allowed"},
		{"v=spf1 a:\xc3\xafgarbage.example.net -all", "not allowed"},
		{"v=spf1 all:x", "all takes no argument"},
		{"v=spf1 ptr/24", "ptr takes :domain only"},
		{"v=spf1 exists", "needs :domain"},
		{"v=spf1 +", "unknown mechanism"},
	}
	for _, c := range invalid {
		if why := spfRecordSyntax(c.record); !strings.Contains(why, c.why) {
			t.Errorf("%q: got %q, want %q", c.record, why, c.why)
		}
	}
}

// TestSPFMalformedRecordIsPermError: a record that ends in -all but has a
// syntax error after the matching term is a permerror (tagged), not a fail
// (550); the problem is named in the header and the log.
func TestSPFMalformedRecordIsPermError(t *testing.T) {
	s := spfTestDNS(t)
	s.Add(`broken.spf.test. 300 IN TXT "v=spf1 -all exp=a.spf.test exp=b.spf.test"`,
		`incbroken.spf.test. 300 IN TXT "v=spf1 include:broken.spf.test -all"`,
		`other.spf.test. 300 IN TXT "not spf at all \"quoted\""`,
		`other.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"`)
	c := spfTestCheck(t, s, SPFOptions{})
	for _, from := range []string{"bob@broken.spf.test", "bob@incbroken.spf.test"} {
		tx := spfTx("192.0.2.99", "client.example", from)
		v, _ := c.Check(context.Background(), tx)
		out, _ := SPFOutcomeOf(tx)
		if out.Result != spf.PermError || v.Action != Tag {
			t.Fatalf("%s: got %s/%s (%s)", from, out.Result, v.Action, v.Reason)
		}
		if !strings.Contains(out.Detail, "syntax error in the SPF record of broken.spf.test") || !strings.Contains(out.Detail, "more than one exp=") {
			t.Errorf("%s: detail %q", from, out.Detail)
		}
		rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
		if !strings.Contains(rs.kv["problem"], "more than one exp=") {
			t.Errorf("%s: problem=%q", from, rs.kv["problem"])
		}
	}
	// Other TXT records at the name are none of the check's business.
	out := c.Evaluate(context.Background(), netip.MustParseAddr("192.0.2.10"), "client.example", "bob@other.spf.test")
	if out.Result != spf.Pass {
		t.Fatalf("other.spf.test: %s (%s)", out.Result, out.Detail)
	}
}

// FuzzSPFRecordSyntax: records come from DNS, i.e. from anyone; the syntax
// check must not panic on any of them.
func FuzzSPFRecordSyntax(f *testing.F) {
	for _, s := range []string{"v=spf1 a:%{d}.x -all", "v=spf1 %", "v=spf1 a:%{", "v=spf1 a:%{}", "v=spf1 ip4:/", "v=spf1 a//", "v=spf1 -", "v=spf1 x=%-%{l1r.}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spfRecordSyntax("v=spf1 " + s)
		spfRecordSyntax(s)
	})
}
