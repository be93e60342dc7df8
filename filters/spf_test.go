package filters

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"

	"sekisho/internal/testdns"
	"sekisho/lookup"
	"sekisho/policy"
)

// spfTestDNS serves the spf.test zone of the SPF check's tests.
func spfTestDNS(t testing.TB) *testdns.Server {
	t.Helper()
	s := testdns.Start(t)
	s.AddZone("spf.test.", 60)
	s.Add(
		`pass.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`soft.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 ~all"`,
		`neutral.spf.test. 300 IN TXT "v=spf1 ?all"`,
		`nomatch.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10"`,
		`perm.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 frobnicate:x -all"`,
		`inc.spf.test. 300 IN TXT "v=spf1 include:pass.spf.test -all"`,
		`v6.spf.test. 300 IN TXT "v=spf1 ip6:2001:db8::/32 -all"`,
		"nospf.spf.test. 300 IN A 192.0.2.20",
		`mail.spf.test. 300 IN TXT "v=spf1 a -all"`,
		"mail.spf.test. 300 IN A 192.0.2.10",
		`silent.spf.test. 300 IN TXT "v=spf1 -all"`,
		`xn--bcher-kva.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"`,
	)
	s.SetBehavior("silent.spf.test.", testdns.AnyType, testdns.Silent)
	return s
}

const (
	spfTestDNSTimeout = 200 * time.Millisecond
	spfTestSlack      = 500 * time.Millisecond
)

func spfTestCheck(t testing.TB, s *testdns.Server, opts SPFOptions) *SPF {
	t.Helper()
	r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}, Timeout: spfTestDNSTimeout, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	opts.Resolver = lookup.NewSPFResolver(r)
	if opts.AuthServID == "" {
		opts.AuthServID = "mx.campus.test"
	}
	c, err := NewSPF(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spfTx(client, helo, from string) *Transaction {
	return &Transaction{
		SessionID: "s1", Client: netip.MustParseAddr(client), Helo: helo, Listener: "smtp",
		From: from, Rcpt: "alice@campus.test", Local: true, Values: map[string]any{},
	}
}

// spfAR is the Authentication-Results field of a transaction the SPF check
// has seen (filters.AuthenticationResults, with spf only).
func spfAR(t *testing.T, tx *Transaction) string {
	t.Helper()
	h, ok := AuthenticationResults("mx.campus.test", tx)
	if !ok {
		t.Fatal("no Authentication-Results for a transaction SPF evaluated")
	}
	return h.Value
}

func spfHeaderValue(t *testing.T, hs []Header, name string) string {
	t.Helper()
	var found []string
	for _, h := range hs {
		if h.Name == name {
			found = append(found, h.Value)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s headers in %v, want 1", len(found), name, hs)
	}
	return found[0]
}

func TestSPFResults(t *testing.T) {
	s := spfTestDNS(t)
	c := spfTestCheck(t, s, SPFOptions{})
	for _, tc := range []struct {
		name, client, helo, from string
		result                   spf.Result
		action                   Action
		mechanism                string
	}{
		{"pass", "192.0.2.10", "client.example", "bob@pass.spf.test", spf.Pass, Continue, "ip4:192.0.2.10"},
		{"fail", "192.0.2.99", "client.example", "bob@pass.spf.test", spf.Fail, Reject, "-all"},
		{"softfail", "192.0.2.99", "client.example", "bob@soft.spf.test", spf.SoftFail, Tag, "~all"},
		{"neutral", "192.0.2.99", "client.example", "bob@neutral.spf.test", spf.Neutral, Tag, "?all"},
		{"neutral by default", "192.0.2.99", "client.example", "bob@nomatch.spf.test", spf.Neutral, Tag, "default"},
		{"none: no record", "192.0.2.99", "client.example", "bob@nospf.spf.test", spf.None, Tag, ""},
		{"none: nxdomain", "192.0.2.99", "client.example", "bob@nx.spf.test", spf.None, Tag, ""},
		{"permerror", "192.0.2.99", "client.example", "bob@perm.spf.test", spf.PermError, Tag, ""},
		{"include", "192.0.2.10", "client.example", "bob@inc.spf.test", spf.Pass, Continue, "include:pass.spf.test"},
		{"ipv6", "2001:db8::25", "client.example", "bob@v6.spf.test", spf.Pass, Continue, "ip6:2001:db8::/32"},
		{"ipv4-mapped client", "::ffff:192.0.2.10", "client.example", "bob@pass.spf.test", spf.Pass, Continue, "ip4:192.0.2.10"},
		{"null sender: helo identity", "192.0.2.10", "mail.spf.test", "", spf.Pass, Continue, "a"},
		{"null sender: helo fails", "192.0.2.99", "mail.spf.test", "", spf.Fail, Reject, "-all"},
		{"null sender: address literal helo", "192.0.2.99", "[192.0.2.99]", "", spf.None, Tag, ""},
		{"null sender: single-label helo", "192.0.2.99", "localhost", "", spf.None, Tag, ""},
		{"empty local part", "192.0.2.10", "client.example", "@pass.spf.test", spf.Pass, Continue, "ip4:192.0.2.10"},
		{"quoted local part with @", "192.0.2.10", "client.example", `"a@b"@pass.spf.test`, spf.Pass, Continue, "ip4:192.0.2.10"},
		{"trailing dot", "192.0.2.10", "client.example", "bob@pass.spf.test.", spf.Pass, Continue, "ip4:192.0.2.10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := spfTx(tc.client, tc.helo, tc.from)
			v, err := c.Check(context.Background(), tx)
			if err != nil {
				t.Fatal(err)
			}
			out, ok := SPFOutcomeOf(tx)
			if !ok {
				t.Fatal("no outcome kept in tx.Values")
			}
			if out.Result != tc.result || v.Action != tc.action || out.Mechanism != tc.mechanism {
				t.Fatalf("got %s/%s mechanism %q, want %s/%s %q (%s)", out.Result, v.Action, out.Mechanism, tc.result, tc.action, tc.mechanism, v.Reason)
			}
			if !strings.Contains(v.Reason, "spf="+string(tc.result)) {
				t.Errorf("reason %q does not name the result", v.Reason)
			}
			switch v.Action {
			case Reject:
				if v.Reply == nil || v.Reply.Code != 550 || v.Reply.Enhanced != [3]int{5, 7, 23} {
					t.Errorf("reply %v, want 550 5.7.23", v.Reply)
				}
				if !strings.Contains(v.Reply.Text, tc.client) && !strings.Contains(v.Reply.Text, netip.MustParseAddr(tc.client).Unmap().String()) {
					t.Errorf("reply text %q does not name the client", v.Reply.Text)
				}
				if len(v.Headers) != 0 {
					t.Errorf("a rejection carries headers %v", v.Headers)
				}
			default:
				rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
				if rs.result != string(tc.result) {
					t.Errorf("Received-SPF result %q", rs.result)
				}
				ar := spfParseAuthResults(t, spfAR(t, tx))
				if ar.props["spf"] != string(tc.result) {
					t.Errorf("Authentication-Results spf=%q", ar.props["spf"])
				}
			}
		})
	}
}

func TestSPFFailTag(t *testing.T) {
	s := spfTestDNS(t)
	c := spfTestCheck(t, s, SPFOptions{Fail: SPFFailTag})
	tx := spfTx("192.0.2.99", "client.example", "bob@pass.spf.test")
	v, err := c.Check(context.Background(), tx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Action != Tag || v.Reply != nil {
		t.Fatalf("fail: tag gave %s %v", v.Action, v.Reply)
	}
	rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
	if rs.result != "fail" || rs.kv["mechanism"] != "-all" {
		t.Fatalf("Received-SPF %+v", rs)
	}
}

// TestSPFTempError: the server is silent for the sender's domain. By
// default the mail is tagged temperror; under temperror: tempfail the
// recipient gets 451 4.4.3 — never a 5xx. Either way the answer comes back
// within the DNS timeout.
func TestSPFTempError(t *testing.T) {
	s := spfTestDNS(t)
	for _, tc := range []struct {
		action SPFTempErrorAction
		want   Action
	}{{SPFTempErrorTag, Tag}, {SPFTempErrorTempfail, Defer}} {
		t.Run(tc.action.String(), func(t *testing.T) {
			c := spfTestCheck(t, s, SPFOptions{TempError: tc.action})
			tx := spfTx("192.0.2.10", "client.example", "bob@silent.spf.test")
			start := time.Now()
			v, err := c.Check(context.Background(), tx)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if elapsed > spfTestDNSTimeout+spfTestSlack {
				t.Errorf("took %v with a %v DNS timeout", elapsed, spfTestDNSTimeout)
			}
			out, _ := SPFOutcomeOf(tx)
			if out.Result != spf.TempError || v.Action != tc.want {
				t.Fatalf("got %s/%s, want temperror/%s (%s)", out.Result, v.Action, tc.want, v.Reason)
			}
			if !strings.Contains(v.Reason, "timeout") {
				t.Errorf("reason %q does not say it was a timeout", v.Reason)
			}
			if tc.want == Defer {
				if v.Reply != policy.SPFTempFailed || !v.Reply.Temporary() {
					t.Fatalf("reply %v, want policy.SPFTempFailed", v.Reply)
				}
				// Through the chain too: still a 451.
				cv, _ := NewChain(c).Run(context.Background(), StageRcpt, spfTx("192.0.2.10", "client.example", "bob@silent.spf.test"))
				if cv.Action != Defer || cv.Reply.Code != 451 || cv.Reply.Enhanced != [3]int{4, 4, 3} {
					t.Fatalf("chain gave %s %v", cv.Action, cv.Reply)
				}
				return
			}
			rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
			if rs.result != "temperror" || !strings.Contains(rs.kv["problem"], "timeout") {
				t.Fatalf("Received-SPF %+v", rs)
			}
		})
	}
}

// TestSPFCheckTimeout: the check's own deadline ends an evaluation whose
// lookups would take longer: temperror, within the deadline.
func TestSPFCheckTimeout(t *testing.T) {
	s := spfTestDNS(t)
	r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}, Timeout: 5 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewSPF(SPFOptions{Resolver: lookup.NewSPFResolver(r), AuthServID: "mx.campus.test", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := c.Evaluate(context.Background(), netip.MustParseAddr("192.0.2.10"), "client.example", "bob@silent.spf.test")
	if elapsed := time.Since(start); elapsed > 300*time.Millisecond+spfTestSlack {
		t.Errorf("took %v with a 300ms check timeout", elapsed)
	}
	if out.Result != spf.TempError {
		t.Fatalf("got %s (%s), want temperror", out.Result, out.Detail)
	}
}

// TestSPFOncePerTransaction: the second and third recipients reuse the
// first one's result without a DNS query; the headers come with every
// recipient until one has been accepted (tx.Rcpts), then no more.
func TestSPFOncePerTransaction(t *testing.T) {
	s := spfTestDNS(t)
	c := spfTestCheck(t, s, SPFOptions{})
	tx := spfTx("192.0.2.99", "client.example", "bob@soft.spf.test")
	v1, _ := c.Check(context.Background(), tx)
	queries := s.TotalQueries()
	if queries == 0 || v1.Action != Tag || len(v1.Headers) != 1 {
		t.Fatalf("first recipient: %d queries, %s, %d headers", queries, v1.Action, len(v1.Headers))
	}
	// The next hop refused the first recipient: it was not accepted, so
	// its headers were dropped; the next recipient brings them again.
	tx.Rcpt = "carol@campus.test"
	v2, _ := c.Check(context.Background(), tx)
	if len(v2.Headers) != 1 || v2.Action != Tag {
		t.Fatalf("second recipient, none accepted yet: %s, %d headers", v2.Action, len(v2.Headers))
	}
	tx.Rcpts = append(tx.Rcpts, "carol@campus.test")
	tx.Rcpt = "dave@campus.test"
	v3, _ := c.Check(context.Background(), tx)
	if len(v3.Headers) != 0 || v3.Action != Tag {
		t.Fatalf("third recipient, one accepted: %s, %d headers", v3.Action, len(v3.Headers))
	}
	if !strings.Contains(v3.Reason, "earlier recipient") {
		t.Errorf("reason %q does not say the result was reused", v3.Reason)
	}
	if n := s.TotalQueries(); n != queries {
		t.Fatalf("%d queries after three recipients, %d after the first", n, queries)
	}
	// A rejection is the same for every recipient, also without a lookup.
	tx = spfTx("192.0.2.99", "client.example", "bob@pass.spf.test")
	v1, _ = c.Check(context.Background(), tx)
	queries = s.TotalQueries()
	v2, _ = c.Check(context.Background(), tx)
	if v1.Action != Reject || v2.Action != Reject || v2.Reply.Code != 550 || s.TotalQueries() != queries {
		t.Fatalf("fail: %s then %s, %d then %d queries", v1.Action, v2.Action, queries, s.TotalQueries())
	}
	// A new transaction (new Values) evaluates again (from the DNS cache).
	tx = spfTx("192.0.2.99", "client.example", "bob@soft.spf.test")
	c.Check(context.Background(), tx)
	if _, ok := SPFOutcomeOf(tx); !ok {
		t.Fatal("new transaction not evaluated")
	}
}

func TestSPFSkips(t *testing.T) {
	s := spfTestDNS(t)
	c := spfTestCheck(t, s, SPFOptions{})
	trusted := spfTx("192.0.2.99", "client.example", "bob@pass.spf.test")
	trusted.Trusted = true
	authed := spfTx("192.0.2.99", "client.example", "bob@pass.spf.test")
	authed.Authenticated = "bob"
	for name, tx := range map[string]*Transaction{"trusted": trusted, "authenticated": authed} {
		v, err := c.Check(context.Background(), tx)
		if err != nil || v.Action != Continue || len(v.Headers) != 0 || !strings.Contains(v.Reason, name) {
			t.Errorf("%s: %s %v %v %q", name, v.Action, v.Headers, err, v.Reason)
		}
		if _, ok := SPFOutcomeOf(tx); ok {
			t.Errorf("%s: evaluated", name)
		}
	}
	if n := s.TotalQueries(); n != 0 {
		t.Fatalf("%d DNS queries for skipped clients", n)
	}
}

// TestSPFHeaders parses the two headers back and checks every field.
func TestSPFHeaders(t *testing.T) {
	s := spfTestDNS(t)
	c := spfTestCheck(t, s, SPFOptions{})
	tx := spfTx("192.0.2.99", "client.example", "bob@soft.spf.test")
	v, _ := c.Check(context.Background(), tx)
	rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
	want := map[string]string{
		"client-ip": "192.0.2.99", "envelope-from": "bob@soft.spf.test", "helo": "client.example",
		"receiver": "mx.campus.test", "identity": "mailfrom", "mechanism": "~all",
	}
	if rs.result != "softfail" || !strings.HasPrefix(rs.comment, "mx.campus.test: domain of transitioning bob@soft.spf.test does not designate 192.0.2.99") {
		t.Errorf("Received-SPF %q (%q)", rs.result, rs.comment)
	}
	for k, w := range want {
		if rs.kv[k] != w {
			t.Errorf("Received-SPF %s=%q, want %q", k, rs.kv[k], w)
		}
	}
	if _, ok := rs.kv["problem"]; ok {
		t.Errorf("problem= on a softfail")
	}
	ar := spfParseAuthResults(t, spfAR(t, tx))
	if ar.authservID != "mx.campus.test" || ar.props["spf"] != "softfail" || ar.props["smtp.mailfrom"] != "soft.spf.test" {
		t.Errorf("Authentication-Results %+v", ar)
	}

	// The null sender: identity helo, an empty envelope-from, smtp.helo.
	tx = spfTx("192.0.2.10", "mail.spf.test", "")
	v, _ = c.Check(context.Background(), tx)
	rs = parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
	if rs.result != "pass" || rs.kv["identity"] != "helo" || rs.kv["envelope-from"] != "" || rs.kv["helo"] != "mail.spf.test" {
		t.Errorf("null sender Received-SPF %+v", rs)
	}
	if !strings.Contains(rs.comment, "postmaster@mail.spf.test designates 192.0.2.10") {
		t.Errorf("null sender comment %q", rs.comment)
	}
	ar = spfParseAuthResults(t, spfAR(t, tx))
	if ar.props["spf"] != "pass" || ar.props["smtp.helo"] != "mail.spf.test" || ar.props["smtp.mailfrom"] != "" {
		t.Errorf("null sender Authentication-Results %+v", ar)
	}

	// IPv6: client-ip is quoted (":" is no atext) and parses back.
	v, _ = c.Check(context.Background(), spfTx("2001:db8::25", "client.example", "bob@v6.spf.test"))
	rs = parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
	if rs.kv["client-ip"] != "2001:db8::25" || rs.kv["mechanism"] != "ip6:2001:db8::/32" {
		t.Errorf("IPv6 Received-SPF %+v", rs)
	}

	// permerror and temperror say what the problem was.
	v, _ = c.Check(context.Background(), spfTx("192.0.2.99", "client.example", "bob@perm.spf.test"))
	rs = parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
	if rs.result != "permerror" || rs.kv["problem"] == "" {
		t.Errorf("permerror Received-SPF %+v", rs)
	}
}

// TestSPFHeaderInjection: whatever the client puts in HELO and MAIL FROM,
// and whatever DNS puts in a record, the headers stay one field each, with
// folding as the only line breaks, and parse back.
func TestSPFHeaderInjection(t *testing.T) {
	s := spfTestDNS(t)
	s.Add(`evil.spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.10\013\010X-Evil:\0321 -all"`)
	c := spfTestCheck(t, s, SPFOptions{Fail: SPFFailTag})
	for _, tc := range []struct{ helo, from string }{
		{"evil\r\nX-Injected: 1", "\"x\r\nX-Injected: 1(\\\\\"@pass.spf.test"},
		{"client.example\x00\x1b\x7f", "bob\x85\xff@pass.spf.test"},
		{"evil)\\(\"", `"a;b=c"@pass.spf.test`},
		{strings.Repeat("h", 2000), strings.Repeat("l", 2000) + "@pass.spf.test"},
		{"client.example", "bob@evil.spf.test"},
		{"cliënt.example", "bøb@pass.spf.test"},
	} {
		tx := spfTx("192.0.2.99", tc.helo, tc.from)
		v, _ := c.Check(context.Background(), tx)
		if len(v.Headers) != 1 {
			t.Fatalf("%q: %d headers (%s)", tc.from, len(v.Headers), v.Reason)
		}
		ar, _ := AuthenticationResults("mx.campus.test", tx)
		for _, h := range append(v.Headers, ar) {
			unfolded := strings.ReplaceAll(h.Value, "\r\n\t", " ")
			if strings.ContainsAny(unfolded, "\r\n") {
				t.Errorf("%s carries a line break or a field: %q", h.Name, h.Value)
			}
			for _, line := range strings.Split(h.Value, "\r\n") {
				if len(line) > 998 {
					t.Errorf("%s has a line of %d bytes", h.Name, len(line))
				}
			}
			for i := 0; i < len(unfolded); i++ {
				if b := unfolded[i]; b < 0x20 || b >= 0x7f {
					t.Errorf("%s has byte %#x (not an SMTPUTF8 transaction): %q", h.Name, b, h.Value)
					break
				}
			}
		}
		rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
		if rs.kv["receiver"] != "mx.campus.test" || rs.kv["identity"] != "mailfrom" {
			t.Errorf("%q: Received-SPF did not parse back: %+v", tc.from, rs)
		}
		spfParseAuthResults(t, spfAR(t, tx))
	}
	// In an SMTPUTF8 transaction UTF-8 is kept (RFC 6532).
	tx := spfTx("192.0.2.10", "cliënt.example", "bøb@pass.spf.test")
	tx.SMTPUTF8 = true
	v, _ := c.Check(context.Background(), tx)
	rs := parseReceivedSPF(t, spfHeaderValue(t, v.Headers, "Received-SPF"))
	if rs.kv["envelope-from"] != "bøb@pass.spf.test" || rs.kv["helo"] != "cliënt.example" {
		t.Errorf("SMTPUTF8: %+v", rs)
	}
}

// TestSPFInternationalDomain: a U-label domain is evaluated in its A-label
// form (RFC 7208 §4.3); a malformed one gives "none" without a query.
func TestSPFInternationalDomain(t *testing.T) {
	s := spfTestDNS(t)
	c := spfTestCheck(t, s, SPFOptions{})
	out := c.Evaluate(context.Background(), netip.MustParseAddr("192.0.2.10"), "client.example", "bob@Bücher.spf.test")
	if out.Result != spf.Pass || out.Domain != "xn--bcher-kva.spf.test" || out.Sender != "bob@xn--bcher-kva.spf.test" {
		t.Fatalf("got %s (%s) for %s", out.Result, out.Detail, out.Sender)
	}
	before := s.TotalQueries()
	out = c.Evaluate(context.Background(), netip.MustParseAddr("192.0.2.10"), "client.example", "bob@bü_cher.spf.test")
	if out.Result != spf.None || !strings.Contains(out.Detail, "IDNA") {
		t.Fatalf("got %s (%s)", out.Result, out.Detail)
	}
	if n := s.TotalQueries() - before; n != 0 {
		t.Fatalf("%d queries for a malformed domain", n)
	}
}

func TestSPFOptionsAndParsing(t *testing.T) {
	s := spfTestDNS(t)
	r, _ := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}})
	res := lookup.NewSPFResolver(r)
	for _, o := range []SPFOptions{
		{AuthServID: "mx.campus.test"},
		{Resolver: res},
		{Resolver: res, AuthServID: "mx campus"},
		{Resolver: res, AuthServID: "mx.campus.test", Timeout: -time.Second},
	} {
		if _, err := NewSPF(o); err == nil {
			t.Errorf("NewSPF(%+v) accepted", o)
		}
	}
	c, err := NewSPF(SPFOptions{Resolver: res, AuthServID: "mx.campus.test"})
	if err != nil || c.timeout != DefaultSPFTimeout || c.Name() != "spf" || c.Stage() != StageRcpt {
		t.Fatalf("%v %v", c, err)
	}
	for in, want := range map[string]SPFFailAction{"": SPFFailReject, "reject": SPFFailReject, "tag": SPFFailTag} {
		if got, err := ParseSPFFailAction(in); err != nil || got != want || (in != "" && got.String() != in) {
			t.Errorf("ParseSPFFailAction(%q) = %v, %v", in, got, err)
		}
	}
	for in, want := range map[string]SPFTempErrorAction{"": SPFTempErrorTag, "tag": SPFTempErrorTag, "tempfail": SPFTempErrorTempfail} {
		if got, err := ParseSPFTempErrorAction(in); err != nil || got != want || (in != "" && got.String() != in) {
			t.Errorf("ParseSPFTempErrorAction(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"bounce", "Reject"} {
		if _, err := ParseSPFFailAction(bad); err == nil {
			t.Errorf("fail %q accepted", bad)
		}
	}
	if _, err := ParseSPFTempErrorAction("reject"); err == nil {
		t.Error("temperror: reject accepted: a temperror must never bounce mail")
	}
}

// The order: spf runs before greylist, whose triplet for a client SPF
// authorised is (sender domain, recipient) (issue 19).
func TestSPFRunsBeforeGreylist(t *testing.T) {
	g, _ := costOf("greylist")
	s, ok := costOf("spf")
	if !ok || s >= g {
		t.Fatalf("spf cost %d (known %v), greylist %d", s, ok, g)
	}
}

// A parsed Received-SPF field.
type spfReceived struct {
	result, comment string
	kv              map[string]string
}

// parseReceivedSPF parses a Received-SPF field body (RFC 7208 §9.1) strictly
// enough to catch a broken quote, comment or separator.
func parseReceivedSPF(t *testing.T, v string) spfReceived {
	t.Helper()
	v = strings.ReplaceAll(v, "\r\n\t", " ")
	if strings.ContainsAny(v, "\r\n") {
		t.Fatalf("Received-SPF has a bare line break: %q", v)
	}
	p := &spfHdrParser{s: v}
	out := spfReceived{kv: map[string]string{}}
	out.result = p.atom()
	p.space()
	if p.peek() == '(' {
		out.comment = p.comment(t)
		p.space()
	}
	for !p.done() {
		key := p.atom()
		if key == "" || !p.eat('=') {
			t.Fatalf("Received-SPF: bad key-value at %d in %q", p.i, v)
		}
		var val string
		if p.peek() == '"' {
			val = p.quoted(t)
		} else {
			val = p.atom()
		}
		if _, dup := out.kv[key]; dup {
			t.Fatalf("Received-SPF: %s twice in %q", key, v)
		}
		out.kv[key] = val
		if !p.eat(';') {
			t.Fatalf("Received-SPF: no ; after %s in %q", key, v)
		}
		p.space()
	}
	return out
}

// A parsed Authentication-Results field.
type spfAuthResults struct {
	authservID string
	props      map[string]string // method=result and ptype.property=value
}

func spfParseAuthResults(t *testing.T, v string) spfAuthResults {
	t.Helper()
	v = strings.ReplaceAll(v, "\r\n\t", " ")
	if strings.ContainsAny(v, "\r\n") {
		t.Fatalf("Authentication-Results has a bare line break: %q", v)
	}
	p := &spfHdrParser{s: v}
	out := spfAuthResults{props: map[string]string{}}
	out.authservID = p.atom()
	if !p.eat(';') {
		t.Fatalf("Authentication-Results: no ; after the authserv-id in %q", v)
	}
	p.space()
	for !p.done() {
		if p.peek() == '(' {
			p.comment(t)
			p.space()
			continue
		}
		key := p.atom()
		if key == "" || !p.eat('=') {
			t.Fatalf("Authentication-Results: bad property at %d in %q", p.i, v)
		}
		if p.peek() == '"' {
			out.props[key] = p.quoted(t)
		} else {
			out.props[key] = p.atom()
		}
		p.space()
	}
	return out
}

type spfHdrParser struct {
	s string
	i int
}

func (p *spfHdrParser) done() bool { return p.i >= len(p.s) }
func (p *spfHdrParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}
func (p *spfHdrParser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}
func (p *spfHdrParser) space() {
	for p.peek() == ' ' {
		p.i++
	}
}

// atom reads up to a space, ";", "=", "(" or '"'.
func (p *spfHdrParser) atom() string {
	start := p.i
	for !p.done() && !strings.ContainsRune(" ;=(\"", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *spfHdrParser) quoted(t *testing.T) string {
	t.Helper()
	p.i++ // opening quote
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '\\':
			if p.done() {
				t.Fatalf("dangling backslash in %q", p.s)
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	t.Fatalf("unterminated quoted-string in %q", p.s)
	return ""
}

func (p *spfHdrParser) comment(t *testing.T) string {
	t.Helper()
	p.i++ // opening parenthesis
	depth := 1
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '\\':
			if p.done() {
				t.Fatalf("dangling backslash in %q", p.s)
			}
			b.WriteByte(p.s[p.i])
			p.i++
			continue
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return b.String()
			}
		}
		b.WriteByte(c)
	}
	t.Fatalf("unterminated comment in %q", p.s)
	return ""
}

// BenchmarkSPFCheck is the check on a warm DNS cache: one evaluation per
// transaction (include + ip4, the answers cached by lookup's resolver) with
// both headers built.
func BenchmarkSPFCheck(b *testing.B) {
	s := spfTestDNS(b)
	c := spfTestCheck(b, s, SPFOptions{})
	ctx := context.Background()
	warm := spfTx("192.0.2.10", "client.example", "bob@inc.spf.test")
	if v, _ := c.Check(ctx, warm); len(v.Headers) != 1 {
		b.Fatal("no headers")
	}
	queries := s.TotalQueries()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tx := spfTx("192.0.2.10", "client.example", "bob@inc.spf.test")
		if v, _ := c.Check(ctx, tx); v.Action != Continue {
			b.Fatal(v.Reason)
		}
	}
	b.StopTimer()
	if s.TotalQueries() != queries {
		b.Fatalf("the cache was not warm: %d more queries", s.TotalQueries()-queries)
	}
}
