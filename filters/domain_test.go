package filters

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/testdns"
	"sekisho/policy"
)

// domainServer serves the domains of the tests under made-up zones (the
// .test names are special-use, so the bad-domain rules would answer before
// DNS): mx.net has MX, aonly.net only an A record, nullmx.net a null MX,
// xn--bcher-kva.net (bücher.net) has MX too,
// nomail.net exists without mail host, nx.net and gmial.com do not exist,
// servfail.net SERVFAILs, silent.net never answers; canary.net is the DNS
// canary.
func domainServer(t testing.TB) *testdns.Server {
	s := testdns.Start(t)
	for _, z := range []string{"net.", "com.", "tset."} {
		s.AddZone(z, 60)
	}
	s.Add(
		"canary.net. 300 IN MX 10 mx.canary.net.",
		"mx.net. 300 IN MX 10 mx1.mx.net.",
		"mx1.mx.net. 300 IN A 192.0.2.25",
		"aonly.net. 300 IN A 192.0.2.26",
		"nullmx.net. 300 IN MX 0 .",
		`nomail.net. 300 IN TXT "v=spf1 -all"`,
		"gmail.com. 300 IN MX 5 gmail-smtp-in.l.google.com.",
		"listed.net. 300 IN MX 10 mx1.mx.net.",
		"xn--bcher-kva.net. 300 IN MX 10 mx1.mx.net.",
	)
	s.SetBehavior("servfail.net.", testdns.AnyType, testdns.Servfail)
	s.SetBehavior("silent.net.", testdns.AnyType, testdns.Silent)
	return s
}

func badDomainsFile(t testing.TB, content string) *policy.BadDomains {
	t.Helper()
	path := filepath.Join(t.TempDir(), "baddomains.txt")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	b := policy.NewBadDomains(policy.BadDomainsOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := b.Load(path); err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestDomainChecks(t testing.TB, s *testdns.Server, nx NXDomainAction) (sender, recipient *DomainCheck) {
	t.Helper()
	sender, recipient, err := NewDomainChecks(DomainOptions{
		Resolver:     dnsTestResolver(t, s, "canary.net"),
		BadDomains:   badDomainsFile(t, "# test list\nlisted.net\n.badtree.net\n.bösartig.net\n"),
		NXDomain:     nx,
		LocalDomains: []string{"campus.test", ".campus.test"},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return sender, recipient
}

// checkRcpt runs the recipient check on rcpt (sender bob@mx.net).
func checkRcpt(t testing.TB, recipient *DomainCheck, rcpt string) Verdict {
	t.Helper()
	v, err := recipient.Check(context.Background(), domainTx("bob@mx.net", rcpt))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func domainTx(from, rcpt string) *Transaction {
	return &Transaction{SessionID: "s1", Listener: "smtp", From: from, Rcpt: rcpt, Conn: map[string]any{}, Values: map[string]any{}}
}

// TestDomainOutcomes: every outcome with its reply, for the sender (MAIL)
// and the recipient (RCPT) check.
func TestDomainOutcomes(t *testing.T) {
	s := domainServer(t)
	cases := []struct {
		name      string
		domain    string
		nx        NXDomainAction
		sender    string // reply prefix, "" for continue
		recipient string
		replyHas  string
		reasonHas string
	}{
		{"MX found", "mx.net", NXDomainTempfail, "", "", "", "exists (MX: 1 MX"},
		{"A only (implicit MX)", "aonly.net", NXDomainTempfail, "", "", "", "A: 1 A"},
		{"trailing dot, capitals", "MX.Net.", NXDomainTempfail, "", "", "", "exists"},
		{"null MX", "nullmx.net", NXDomainTempfail, "550 5.7.27", "556 5.1.10", "null MX", "null MX (RFC 7505)"},
		{"NXDOMAIN, tempfail", "nx.net", NXDomainTempfail, "450 4.1.8", "450 4.1.2", "nx.net does not exist (yet?)", "NXDOMAIN for nx.net (MX: NXDOMAIN from 127.0.0.1:"},
		{"NXDOMAIN, reject", "nx.net", NXDomainReject, "550 5.1.8", "550 5.1.2", "nx.net does not exist", "NXDOMAIN for nx.net"},
		{"no mail host, tempfail", "nomail.net", NXDomainTempfail, "450 4.1.8", "450 4.1.2", "", "no mail host for nomail.net"},
		{"no mail host, reject", "nomail.net", NXDomainReject, "550 5.1.8", "550 5.1.2", "", "no mail host for nomail.net"},
		{"typo of a popular domain", "gmial.com", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "gmial.com does not exist; did you mean gmail.com?", "NXDOMAIN for gmial.com"},
		{"typo of a local domain", "campus.tset", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "did you mean campus.test?", "typo of campus.test"},
		{"SERVFAIL", "servfail.net", NXDomainReject, "451 4.4.3", "451 4.4.3", "cannot be verified now", "could not tell (MX: SERVFAIL"},
		{"timeout", "silent.net", NXDomainReject, "451 4.4.3", "451 4.4.3", "", "could not tell (MX: timeout"},
		{"bad-domain list", "listed.net", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "listed.net is not a valid mail domain", "baddomains.txt:2: listed.net"},
		{"bad-domain subtree", "a.b.badtree.net", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "", ".badtree.net"},
		{"special-use .invalid", "example.invalid", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "(.invalid)", "RFC 6761"},
		{"special-use bare name", "mailhost", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "", "bare host name"},
		{"syntax: empty label", "a..net", NXDomainTempfail, "501 5.1.7", "501 5.1.3", "not a valid domain name: empty label", "syntax"},
		{"syntax: bare IP", "192.0.2.1", NXDomainTempfail, "501 5.1.7", "501 5.1.3", "address literal", "syntax"},
		{"syntax: bad character", "ex!ample.net", NXDomainTempfail, "501 5.1.7", "501 5.1.3", `'!'`, "syntax"},
		{"address literal: not checked", "[192.0.2.1]", NXDomainReject, "", "", "", "address literal"},
		{"IDN: looked up as A-labels", "Bücher.net", NXDomainReject, "", "", "", "xn--bcher-kva.net exists"},
		{"IDN: NXDOMAIN", "例え.net", NXDomainReject, "550 5.1.8", "550 5.1.2", "xn--r8jz45g.net does not exist", "NXDOMAIN for xn--r8jz45g.net"},
		{"IDN: bad-domain list", "www.BÖSARTIG.net", NXDomainTempfail, "550 5.1.8", "550 5.1.2", "xn--bsartig-90a.net", "baddomains.txt:4: .xn--bsartig-90a.net"},
		{"IDN: not a valid name", "bü_cher.net", NXDomainTempfail, "501 5.1.7", "501 5.1.3", "IDNA", "syntax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sender, recipient := newTestDomainChecks(t, s, c.nx)
			for _, role := range []struct {
				check *DomainCheck
				tx    *Transaction
				want  string
			}{
				{sender, domainTx("bob@"+c.domain, ""), c.sender},
				{recipient, domainTx("bob@mx.net", "alice@"+c.domain), c.recipient},
			} {
				start := time.Now()
				v, err := role.check.Check(context.Background(), role.tx)
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("took %v", took)
				}
				if err != nil {
					t.Fatal(err)
				}
				name := role.check.Stage().String()
				if role.want == "" {
					if v.Action != Continue {
						t.Errorf("%s: %v %v (%s), want continue", name, v.Action, v.Reply, v.Reason)
					}
				} else {
					if v.Reply == nil || !strings.HasPrefix(v.Reply.String(), role.want+" ") {
						t.Fatalf("%s: %v %v (%s), want %s", name, v.Action, v.Reply, v.Reason, role.want)
					}
					if (v.Action == Reject) != v.Reply.Permanent() || (v.Action == Defer) != v.Reply.Temporary() {
						t.Errorf("%s: action %v with reply %v", name, v.Action, v.Reply)
					}
					if !strings.Contains(v.Reply.Text, c.replyHas) {
						t.Errorf("%s: reply %q lacks %q", name, v.Reply, c.replyHas)
					}
					checkReplyLine(t, v.Reply.String())
				}
				if !strings.Contains(v.Reason, c.reasonHas) || !strings.HasPrefix(v.Reason, "domain: ") {
					t.Errorf("%s: reason %q lacks %q", name, v.Reason, c.reasonHas)
				}
			}
		})
	}
}

// TestDomainCanaryFailing: while the DNS canary fails, an NXDOMAIN (typo or
// not, tempfail or reject) is "could not tell": 451 4.4.3, never a 5xx. A
// null MX, a positive answer, still counts.
func TestDomainCanaryFailing(t *testing.T) {
	s := domainServer(t)
	s.SetBehavior("canary.net.", testdns.AnyType, testdns.Servfail)
	for _, nx := range []NXDomainAction{NXDomainTempfail, NXDomainReject} {
		sender, recipient := newTestDomainChecks(t, s, nx)
		for _, d := range []string{"nx.net", "gmial.com", "nomail.net"} {
			for _, c := range []struct {
				check *DomainCheck
				tx    *Transaction
			}{{sender, domainTx("bob@"+d, "")}, {recipient, domainTx("", "alice@"+d)}} {
				v, _ := c.check.Check(context.Background(), c.tx)
				if v.Action != Defer || v.Reply.String()[:9] != "451 4.4.3" {
					t.Errorf("%s %s (%v): %v %v, want 451 4.4.3", nx, d, c.check.Stage(), v.Action, v.Reply)
				}
				if !strings.Contains(v.Reason, "DNS canary failed (canary canary.net.") || !strings.Contains(v.Reason, "SERVFAIL") {
					t.Errorf("reason %q does not say the canary failed and why", v.Reason)
				}
			}
		}
		v := checkRcpt(t, recipient, "alice@nullmx.net")
		if v.Reply == nil || v.Reply.Code != 556 {
			t.Errorf("null MX with the canary failing: %v", v.Reply)
		}
	}
	// The canary answers again: the NXDOMAIN is certain once more (after
	// the resolver's 2 s of remembered ill health).
	s.SetBehavior("canary.net.", testdns.AnyType, testdns.Normal)
	_, recipient := newTestDomainChecks(t, s, NXDomainReject)
	if v := checkRcpt(t, recipient, "alice@nx.net"); v.Reply == nil || v.Reply.Code != 550 {
		t.Errorf("canary back: %v", v.Reply)
	}
}

// TestDomainSkips: the null sender, the senders of trusted and
// authenticated clients, senders in the local domains and local recipients
// are not checked — and ask DNS nothing.
func TestDomainSkips(t *testing.T) {
	s := domainServer(t)
	sender, recipient := newTestDomainChecks(t, s, NXDomainReject)
	trusted := domainTx("root@localhost", "")
	trusted.Trusted = true
	auth := domainTx("alice@nx.net", "")
	auth.Authenticated = "alice@campus.test"
	local := domainTx("", "bob@nx.campus.test")
	local.Local = true
	for _, c := range []struct {
		name  string
		check *DomainCheck
		tx    *Transaction
	}{
		{"null sender", sender, domainTx("", "")},
		{"trusted client's bare-name sender", sender, trusted},
		{"authenticated client's sender", sender, auth},
		{"sender in local_domains", sender, domainTx("alice@campus.test", "")},
		{"sender in a local subdomain", sender, domainTx("alice@dept.campus.test", "")},
		{"local recipient", recipient, local},
	} {
		v, err := c.check.Check(context.Background(), c.tx)
		if err != nil || v.Action != Continue || !strings.Contains(v.Reason, "not checked") {
			t.Errorf("%s: %v %v %q", c.name, v.Action, err, v.Reason)
		}
	}
	if n := s.TotalQueries(); n != 0 {
		t.Errorf("%d DNS queries for skipped addresses", n)
	}
	// A trusted client's recipients are checked: the typo check is for
	// outbound mail above all.
	out := domainTx("alice@campus.test", "friend@gmial.com")
	out.Trusted = true
	if v, _ := recipient.Check(context.Background(), out); v.Action != Reject || !strings.Contains(v.Reply.Text, "did you mean gmail.com?") {
		t.Errorf("trusted client's recipient at gmial.com: %v %v", v.Action, v.Reply)
	}
}

// TestDomainBadListFirst: a domain on the list is refused from memory,
// without a DNS query, even when DNS would find it.
func TestDomainBadListFirst(t *testing.T) {
	s := domainServer(t)
	_, recipient := newTestDomainChecks(t, s, NXDomainTempfail)
	v := checkRcpt(t, recipient, "x@listed.net")
	if v.Action != Reject || v.Reply.String()[:9] != "550 5.1.2" {
		t.Fatalf("%v %v", v.Action, v.Reply)
	}
	if n := s.Queries("listed.net.", dns.TypeMX, testdns.AnyTransport); n != 0 {
		t.Errorf("listed domain looked up %d times", n)
	}
}

// TestDomainPopularList: an empty popular list turns the suggestion off; a
// configured one replaces the default.
func TestDomainPopularList(t *testing.T) {
	s := domainServer(t)
	for _, c := range []struct {
		popular []string
		want    string
	}{
		{[]string{}, "450 4.1.2"},
		{[]string{"gmail.com"}, "550 5.1.2"},
		{[]string{"nx.nett"}, "450 4.1.2"},
	} {
		_, recipient, err := NewDomainChecks(DomainOptions{Resolver: dnsTestResolver(t, s, "canary.net"), Popular: c.popular})
		if err != nil {
			t.Fatal(err)
		}
		if v := checkRcpt(t, recipient, "x@gmial.com"); v.Reply == nil || v.Reply.String()[:9] != c.want {
			t.Errorf("popular %q: %v, want %s", c.popular, v.Reply, c.want)
		}
	}
	if _, _, err := NewDomainChecks(DomainOptions{Resolver: dnsTestResolver(t, s, ""), Popular: []string{"not a domain"}}); err == nil {
		t.Error("an invalid popular domain accepted")
	}
	got := DefaultTypoDomains([]string{".campus.example", "campus.example", "Dept.Campus.Example."})
	if got[0] != "campus.example" || got[1] != "dept.campus.example" || got[2] != policy.PopularDomains[0] || len(got) != 2+len(policy.PopularDomains) {
		t.Errorf("DefaultTypoDomains: %q", got[:4])
	}
}

func TestParseNXDomainAction(t *testing.T) {
	for in, want := range map[string]NXDomainAction{"": NXDomainTempfail, "tempfail": NXDomainTempfail, "reject": NXDomainReject} {
		if got, err := ParseNXDomainAction(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseNXDomainAction("bounce"); err == nil {
		t.Error("bounce accepted")
	}
}

// TestDomainOrder: both checks are named "domain", one at MAIL and one at
// RCPT, and the chain places them after dnsbl and before account.
func TestDomainOrder(t *testing.T) {
	s := domainServer(t)
	sender, recipient := newTestDomainChecks(t, s, NXDomainTempfail)
	bl := newTestDNSBL(t, dnsblServer(t), nil, 0, "zen.test")
	ch := NewChain(recipient, sender, bl)
	if got := ch.Checks(StageMail); len(got) != 1 || got[0] != Check(sender) {
		t.Errorf("stage mail: %v", got)
	}
	rc := ch.Checks(StageRcpt)
	if len(rc) != 2 || rc[0].Name() != "dnsbl" || rc[1] != Check(recipient) {
		t.Errorf("stage rcpt: %v", rc)
	}
}

// BenchmarkDomainCheck: one recipient domain, answers in the resolver's
// cache (the common case: the same domains again and again).
func BenchmarkDomainCheck(b *testing.B) {
	s := domainServer(b)
	_, recipient := newTestDomainChecks(b, s, NXDomainTempfail)
	ctx := context.Background()
	tx := domainTx("alice@campus.test", "bob@mx.net")
	if v, _ := recipient.Check(ctx, tx); v.Action != Continue {
		b.Fatal(v.Reason)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		recipient.Check(ctx, tx)
	}
}

// BenchmarkDomainCheckNXDomain: an NXDOMAIN from the cache, with the canary
// (cached healthy) and the typo search over the popular domains.
func BenchmarkDomainCheckNXDomain(b *testing.B) {
	s := domainServer(b)
	_, recipient := newTestDomainChecks(b, s, NXDomainTempfail)
	ctx := context.Background()
	tx := domainTx("alice@campus.test", "bob@nx.net")
	if v, _ := recipient.Check(ctx, tx); v.Action != Defer {
		b.Fatal(v.Reason)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		recipient.Check(ctx, tx)
	}
}
