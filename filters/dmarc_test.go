package filters

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"

	"sekisho/internal/mailaddr"
	"sekisho/internal/testdns"
	"sekisho/lookup"
)

// TestDMARCAlignment: relaxed compares organisational domains (public
// suffix list), strict the domains; case and a trailing dot do not count.
func TestDMARCAlignment(t *testing.T) {
	for _, c := range []struct {
		from, auth string
		mode       dmarc.AlignmentMode
		want       bool
	}{
		{"example.org", "mail.example.org", dmarc.AlignmentRelaxed, true},
		{"example.org", "mail.example.org", dmarc.AlignmentStrict, false},
		{"Example.ORG.", "example.org", dmarc.AlignmentStrict, true},
		{"a.example.co.uk", "b.example.co.uk", dmarc.AlignmentRelaxed, true},
		{"example.co.uk", "other.co.uk", dmarc.AlignmentRelaxed, false}, // co.uk is a public suffix
		{"campus.test", "evil.test", dmarc.AlignmentRelaxed, false},
		{"example.org", "", dmarc.AlignmentRelaxed, false},
	} {
		if got := aligned(c.from, c.auth, c.mode); got != c.want {
			t.Errorf("aligned(%q, %q, %s) = %t, want %t", c.from, c.auth, c.mode, got, c.want)
		}
	}
	if got := OrganizationalDomain("mail.students.campus.ac.jp"); got != "campus.ac.jp" {
		t.Errorf("OrganizationalDomain = %q", got)
	}
}

// TestDMARCActions: every configured action, for each outcome.
func TestDMARCActions(t *testing.T) {
	reject := DMARCResult{From: "example.org", Result: "fail", Policy: "reject", Applied: "reject"}
	quarantine := DMARCResult{From: "example.org", Result: "fail", Policy: "quarantine", Applied: "quarantine"}
	local := DMARCResult{From: "campus.test", Result: "none", Local: true}
	tempReject := DMARCResult{From: "example.org", Result: "temperror", Policy: "reject"}
	tempUnknown := DMARCResult{From: "example.org", Result: "temperror"}
	tempLocal := DMARCResult{From: "campus.test", Result: "temperror", Local: true}
	for _, c := range []struct {
		name      string
		o         DMARCOptions
		r         DMARCResult
		forwarder string
		want      Action
		code      int
	}{
		{"p=reject default", DMARCOptions{}, reject, "", Reject, 550},
		{"p=reject as quarantine", DMARCOptions{Reject: DMARCActQuarantine}, reject, "", Tag, 0},
		{"p=reject as quarantine as reject", DMARCOptions{Reject: DMARCActQuarantine, Quarantine: DMARCActReject}, reject, "", Reject, 550},
		{"p=reject none", DMARCOptions{Reject: DMARCActNone}, reject, "", Continue, 0},
		{"p=quarantine default", DMARCOptions{}, quarantine, "", Tag, 0},
		{"p=quarantine reject", DMARCOptions{Quarantine: DMARCActReject}, quarantine, "", Reject, 550},
		{"p=quarantine none", DMARCOptions{Quarantine: DMARCActNone}, quarantine, "", Continue, 0},
		{"local default", DMARCOptions{}, local, "", Reject, 550},
		{"local tag", DMARCOptions{LocalFrom: DMARCActTag}, local, "", Tag, 0},
		{"local none", DMARCOptions{LocalFrom: DMARCActNone}, local, "", Continue, 0},
		{"local from a forwarder", DMARCOptions{}, local, "192.0.2.0/24", Continue, 0},
		{"p=reject from a forwarder", DMARCOptions{}, reject, "lists.example.net", Continue, 0},
		{"p=quarantine from a forwarder keeps its tag", DMARCOptions{}, quarantine, "lists.example.net", Tag, 0},
		{"temperror under p=reject", DMARCOptions{}, tempReject, "", Defer, 451},
		{"temperror accepted", DMARCOptions{TempError: DMARCAccept}, tempReject, "", Continue, 0},
		{"temperror, policy unknown", DMARCOptions{}, tempUnknown, "", Continue, 0},
		{"temperror, local", DMARCOptions{}, tempLocal, "", Defer, 451},
		{"temperror from a forwarder", DMARCOptions{}, tempLocal, "192.0.2.0/24", Continue, 0},
		{"pass", DMARCOptions{}, DMARCResult{From: "campus.test", Result: "pass", Local: true}, "", Continue, 0},
	} {
		c.o.Resolver = nil
		d := newTestDMARC(t, c.o)
		v := d.domainVerdict(c.r, c.forwarder)
		if v.Action != c.want || (c.code != 0 && (v.Reply == nil || v.Reply.Code != c.code)) {
			t.Errorf("%s: %s %v, want %s %d", c.name, v.Action, v.Reply, c.want, c.code)
		}
		if v.Action == Reject && !strings.Contains(v.Reply.Text, c.r.From) {
			t.Errorf("%s: reply %q does not name %s", c.name, v.Reply.Text, c.r.From)
		}
		if v.Action == Tag && (len(v.Headers) != 1 || v.Headers[0].Value != "quarantine; header.from="+c.r.From) {
			t.Errorf("%s: headers %v", c.name, v.Headers)
		}
	}
}

// newTestDMARC builds the check without a resolver (its actions only).
func newTestDMARC(t *testing.T, o DMARCOptions) *DMARC {
	t.Helper()
	def := func(a *DMARCAction, v DMARCAction) {
		if *a == "" {
			*a = v
		}
	}
	def(&o.Reject, DMARCActReject)
	def(&o.Quarantine, DMARCActTag)
	def(&o.LocalFrom, DMARCActReject)
	if o.TempError == "" {
		o.TempError = DMARCTempfail
	}
	o.LocalDomains = mailaddr.NewDomainSet([]string{"campus.test"})
	return &DMARC{o: o}
}

// TestAuthenticationResultsHostileValues: whatever a signature's d=, s=
// and a= hold (CR, LF, NUL, quotes, semicolons, parentheses, 8-bit, a
// second field), the field stays one field, folded only where we fold,
// every value a token or a quoted string.
func TestAuthenticationResultsHostileValues(t *testing.T) {
	tx := &Transaction{Values: map[string]any{}, Client: netip.MustParseAddr("192.0.2.9")}
	tx.Values[dmarcValueKey] = &DMARCOutcome{
		DKIM: []DKIMResult{
			{Domain: "evil.example\r\nX-Injected: 1", Selector: "s;dmarc=pass", Algorithm: "rsa-sha256\x00", Result: "fail", Detail: "dkim: body hash (did) not \\verify\r\n"},
			{Domain: "ok.example", Selector: `"quoted"`, Algorithm: "ed25519-sha256", Result: "pass"},
			{Domain: "caf\xc3\xa9.example", Selector: strings.Repeat("s", 300), Algorithm: "(x)", Result: "neutral", Detail: "not verified"},
		},
		DMARC: []DMARCResult{{From: "campus.test", Result: "none", Local: true}},
	}
	h, ok := AuthenticationResults("mx.campus.test", tx)
	if !ok {
		t.Fatal("no field")
	}
	unfolded := strings.ReplaceAll(h.Value, "\r\n\t", " ")
	if strings.ContainsAny(unfolded, "\r\n\x00") {
		t.Fatalf("a line break or NUL outside folding: %q", h.Value)
	}
	for i := 0; i < len(unfolded); i++ {
		if unfolded[i] >= 0x7f {
			t.Fatalf("8-bit byte %#x in %q", unfolded[i], h.Value)
		}
	}
	for _, line := range strings.Split(h.Value, "\r\n") {
		if len(line) > 998 {
			t.Errorf("a line of %d bytes", len(line))
		}
	}
	for _, want := range []string{
		`header.d="evil.example??X-Injected: 1"`, `header.s="s;dmarc=pass"`, `header.a="rsa-sha256?"`,
		`(dkim: body hash \(did\) not \\verify??)`, `header.s="\"quoted\""`, "dkim=neutral (not verified)",
		"dmarc=none (local domain) header.from=campus.test",
	} {
		if !strings.Contains(unfolded, want) {
			t.Errorf("%q lacks %q", unfolded, want)
		}
	}
	if !strings.HasPrefix(h.Value, "mx.campus.test; dkim=fail") || strings.Count(unfolded, "; ") != 4 {
		t.Errorf("resinfo separators: %q", unfolded)
	}
}

// TestLooseFromDomains: the domains after an "@" in From fields that do
// not parse, as a lenient reader would see them.
func TestLooseFromDomains(t *testing.T) {
	hdr := []byte("Subject: x@not-from.example\r\nFrom: IT <it@Campus.Test\r\nfrom\r\n : b@other.example.,\r\n\r\nbody@body.example\r\n")
	got := strings.Join(looseFromDomains(hdr), " ")
	if got != "campus.test other.example" {
		t.Errorf("looseFromDomains = %q", got)
	}
}

// dkimTestWorld is a DNS server with the key of sel._domainkey.signed.test
// (p=reject) and the campus canary, and a message signed by
// signed.test with the selectors given (the same key for each).
func dkimTestWorld(t *testing.T, selectors ...string) (*testdns.Server, string) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	s := testdns.Start(t)
	s.AddZone("test.", 60)
	s.Add("campus.test. 300 IN MX 10 mx.campus.test.", "mx.campus.test. 300 IN A 192.0.2.1",
		`_dmarc.signed.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`sel._domainkey.signed.test. 300 IN TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"`)
	msg := "From: a@signed.test\r\nSubject: s\r\n\r\nbody\r\n"
	for _, sel := range selectors {
		var out bytes.Buffer
		if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: "signed.test", Selector: sel, Signer: key}); err != nil {
			t.Fatal(err)
		}
		msg = out.String()
	}
	return s, msg
}

func dkimTestEvaluate(t *testing.T, s *testdns.Server, canary, msg string, max int) DMARCOutcome {
	t.Helper()
	r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}, Timeout: spfTestDNSTimeout, Attempts: 1, Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewDMARC(DMARCOptions{Resolver: r, AuthServID: "mx.campus.test", MaxSignatures: max,
		LocalDomains: mailaddr.NewDomainSet([]string{"campus.test"})})
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	tx := &Transaction{Client: netip.MustParseAddr("192.0.2.9"), Header: []byte(head + "\r\n\r\n"),
		Message: func() io.Reader { return strings.NewReader(msg) }}
	return c.Evaluate(context.Background(), tx)
}

// TestDKIMKeyNotFoundNeedsTheCanary: a key that is certainly not there
// (NXDOMAIN while the DNS canary resolves) is a permerror; the same answer
// while the canary is missing is a temperror, and so DMARC for a p=reject
// domain is a temperror (451), never a fail: our DNS may be what is broken.
func TestDKIMKeyNotFoundNeedsTheCanary(t *testing.T) {
	s, msg := dkimTestWorld(t, "gone")
	out := dkimTestEvaluate(t, s, "campus.test", msg, 0)
	if len(out.DKIM) != 1 || out.DKIM[0].Result != "permerror" || out.DMARC[0].Result != "fail" {
		t.Errorf("canary found: %+v", out)
	}
	out = dkimTestEvaluate(t, s, "missing.test", msg, 0)
	if len(out.DKIM) != 1 || out.DKIM[0].Result != "temperror" || !strings.Contains(out.DKIM[0].Detail, "canary") || out.DMARC[0].Result != "temperror" {
		t.Errorf("canary missing: %+v", out)
	}
}

// TestDKIMMaxSignatures: beyond max_signatures a signature is not
// verified, and its result says so (neutral); the ones verified keep
// theirs.
func TestDKIMMaxSignatures(t *testing.T) {
	sels := []string{"sel", "sel", "sel", "gone"}
	s, msg := dkimTestWorld(t, sels...)
	out := dkimTestEvaluate(t, s, "campus.test", msg, 2)
	var got []string
	for _, d := range out.DKIM {
		got = append(got, d.Selector+"="+d.Result)
	}
	// dkim.Sign puts each new signature on top: the last signed is first.
	if w := "gone=permerror sel=pass sel=neutral sel=neutral"; strings.Join(got, " ") != w {
		t.Errorf("results %q, want %q", got, w)
	}
	if d := out.DKIM[3].Detail; d != fmt.Sprintf("not verified: more than %d signatures", 2) {
		t.Errorf("detail %q", d)
	}
}

// TestDMARCDryRunObservesNothing: the check as `sekisho explain` runs it
// (Chain.DryRun) verifies the same signatures and gives the same results,
// but tells Observe nothing: an explanation counts no result in
// sekisho_auth_results_total. The check itself still observes.
func TestDMARCDryRunObservesNothing(t *testing.T) {
	s, msg := dkimTestWorld(t, "sel")
	r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}, Timeout: spfTestDNSTimeout, Attempts: 1, Canary: "campus.test"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	c, err := NewDMARC(DMARCOptions{Resolver: r, AuthServID: "mx.campus.test",
		LocalDomains: mailaddr.NewDomainSet([]string{"campus.test"}),
		Observe:      func(method, result string) { seen = append(seen, method+"="+result) }})
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	tx := func() *Transaction {
		return &Transaction{Client: netip.MustParseAddr("192.0.2.9"), Header: []byte(head + "\r\n\r\n"),
			Message: func() io.Reader { return strings.NewReader(msg) }}
	}
	dry := NewChain(c).DryRun().Checks(StageMessage)
	if len(dry) != 1 {
		t.Fatalf("the dry-run chain has %d checks of stage message, want the dmarc check", len(dry))
	}
	d, ok := dry[0].(*DMARC)
	if !ok {
		t.Fatalf("the dry run of the dmarc check is a %T", dry[0])
	}
	got := d.Evaluate(context.Background(), tx())
	if len(seen) != 0 {
		t.Errorf("the dry run observed %v", seen)
	}
	want := c.Evaluate(context.Background(), tx())
	if len(seen) == 0 {
		t.Errorf("the check itself observed nothing")
	}
	if len(got.DKIM) != 1 || len(want.DKIM) != 1 || got.DKIM[0].Result != want.DKIM[0].Result || got.DMARC[0].Result != want.DMARC[0].Result {
		t.Errorf("dry run %+v, the check %+v: want the same results", got, want)
	}
}
