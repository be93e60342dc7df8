package filters

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/testdns"
	"sekisho/lookup"
)

// dnsTestLog collects log lines of the DNS checks.
type dnsTestLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *dnsTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *dnsTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *dnsTestLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// dnsTestResolver is a resolver on the test server: 200 ms per try, two
// tries, no canary unless given.
func dnsTestResolver(t testing.TB, s *testdns.Server, canary string) *lookup.Resolver {
	t.Helper()
	r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{s.Addr()}, Timeout: 200 * time.Millisecond, Attempts: 2, Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dnsblServer serves the test lists: zen.test lists 127.0.0.2 (code
// 127.0.0.2 with a TXT) and 127.0.0.3 (code 127.0.0.10); quota.test refuses
// (127.255.255.254); other.test lists 127.0.0.4; weird.test answers
// 127.0.0.1 for 127.0.0.2; slow.test is silent; broken.test SERVFAILs.
func dnsblServer(t testing.TB) *testdns.Server {
	s := testdns.Start(t)
	for _, z := range []string{"zen.test.", "quota.test.", "other.test.", "weird.test.", "slow.test.", "broken.test.", "v6.test."} {
		s.AddZone(z, 60)
	}
	s.Add(
		"2.0.0.127.zen.test. 300 IN A 127.0.0.2",
		`2.0.0.127.zen.test. 300 IN TXT "https://zen.test/query/ip/127.0.0.2"`,
		"3.0.0.127.zen.test. 300 IN A 127.0.0.10",
		"2.0.0.127.quota.test. 300 IN A 127.255.255.254",
		"4.0.0.127.quota.test. 300 IN A 127.255.255.254",
		"4.0.0.127.quota.test. 300 IN A 127.0.0.2",
		"4.0.0.127.other.test. 300 IN A 127.0.0.4",
		"2.0.0.127.other.test. 300 IN A 127.0.0.4",
		"2.0.0.127.weird.test. 300 IN A 127.0.0.1",
		"2.0.0.127.slow.test. 300 IN A 127.0.0.2",
		// 2001:db8::1
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.v6.test. 300 IN A 127.0.0.2",
	)
	s.SetBehavior("2.0.0.127.slow.test.", testdns.AnyType, testdns.Silent)
	s.SetBehavior("2.0.0.127.broken.test.", testdns.AnyType, testdns.Servfail)
	return s
}

func mustZones(t testing.TB, specs ...string) []DNSBLZone {
	t.Helper()
	var zs []DNSBLZone
	for _, s := range specs {
		z, err := ParseDNSBLZone(s)
		if err != nil {
			t.Fatal(err)
		}
		zs = append(zs, z)
	}
	return zs
}

func newTestDNSBL(t testing.TB, s *testdns.Server, log *dnsTestLog, threshold int, specs ...string) *DNSBL {
	t.Helper()
	opt := DNSBLOptions{Resolver: dnsTestResolver(t, s, ""), Zones: mustZones(t, specs...), Threshold: threshold, Timeout: time.Second,
		Logger: slog.New(slog.DiscardHandler)}
	if log != nil {
		opt.Logger = log.logger()
	}
	d, err := NewDNSBL(opt)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func dnsblTx(ip string) *Transaction {
	return &Transaction{SessionID: "s1", Client: netip.MustParseAddr(ip), Listener: "smtp",
		From: "bob@example.org", Rcpt: "alice@campus.test", Local: true, Conn: map[string]any{}}
}

// connectAndCheck runs the check as the gateway does: StartConnect at
// accept, Check at RCPT.
func connectAndCheck(t testing.TB, d *DNSBL, tx *Transaction) Verdict {
	t.Helper()
	d.StartConnect(context.Background(), tx)
	v, err := d.Check(context.Background(), tx)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return v
}

func TestDNSBLOutcomes(t *testing.T) {
	s := dnsblServer(t)
	cases := []struct {
		name      string
		client    string
		zones     []string
		threshold int
		reject    bool
		replyHas  []string
		reasonHas []string
	}{
		{"listed, default codes, TXT in the reply", "127.0.0.2", []string{"zen.test"}, 0, true,
			[]string{"554 5.7.1 ", "[127.0.0.2]", "blocked using zen.test (https://zen.test/query/ip/127.0.0.2)"}, []string{"zen.test: listed: 127.0.0.2"}},
		{"listed with a range", "127.0.0.2", []string{"zen.test=127.0.0.2..127.0.0.11"}, 0, true, []string{"zen.test"}, nil},
		{"code outside the range", "127.0.0.3", []string{"zen.test=127.0.0.2..127.0.0.9"}, 0, false, nil, []string{"answered 127.0.0.10, not an accepted code"}},
		{"code in a list", "127.0.0.3", []string{"zen.test=127.0.0.2,127.0.0.10"}, 0, true, []string{"zen.test"}, nil},
		{"code in a CIDR", "127.0.0.3", []string{"zen.test=127.0.0.8/29"}, 0, true, nil, nil},
		{"listed without TXT", "127.0.0.3", []string{"zen.test"}, 0, true, []string{"blocked using zen.test"}, []string{"no TXT: NODATA"}},
		{"not listed (NXDOMAIN)", "127.0.0.9", []string{"zen.test"}, 0, false, nil, []string{"zen.test: not listed (NXDOMAIN"}},
		{"127.0.0.1 is never a default listing", "127.0.0.2", []string{"weird.test"}, 0, false, nil, []string{"answered 127.0.0.1, not an accepted code"}},
		{"127.255.255.254: refused, not a listing", "127.0.0.2", []string{"quota.test"}, 0, false, nil, []string{"refused our query: answered 127.255.255.254 (query through a public or open resolver): not a listing"}},
		{"refusal wins over a code in the same answer", "127.0.0.4", []string{"quota.test"}, 0, false, nil, []string{"refused our query"}},
		{"SERVFAIL: not listed", "127.0.0.2", []string{"broken.test"}, 0, false, nil, []string{"could not tell (SERVFAIL"}},
		{"timeout: not listed", "127.0.0.2", []string{"slow.test"}, 0, false, nil, []string{"could not tell (timeout"}},
		{"listed on one of two, threshold 1", "127.0.0.2", []string{"zen.test", "broken.test"}, 0, true, []string{"zen.test"}, []string{"broken.test: could not tell"}},
		{"weights under the threshold", "127.0.0.2", []string{"zen.test*1", "quota.test*2", "other.test*1"}, 3, false, nil, []string{"score 2, threshold 3"}},
		{"weights at the threshold", "127.0.0.2", []string{"zen.test*2", "other.test*1", "broken.test*5"}, 3, true,
			[]string{"blocked using zen.test (https://zen.test/query/ip/127.0.0.2), other.test"}, []string{"score 3, threshold 3"}},
		{"heavy list alone", "127.0.0.4", []string{"zen.test", "other.test*3"}, 3, true, []string{"other.test"}, nil},
		{"IPv6 client listed (nibbles)", "2001:db8::1", []string{"v6.test"}, 0, true, []string{"[2001:db8::1]", "v6.test"}, nil},
		{"IPv6 client not listed", "2001:db8::2", []string{"v6.test"}, 0, false, nil, []string{"NXDOMAIN"}},
		{"IPv4-mapped IPv6 is IPv4", "::ffff:127.0.0.2", []string{"zen.test"}, 0, true, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newTestDNSBL(t, s, nil, c.threshold, c.zones...)
			start := time.Now()
			v := connectAndCheck(t, d, dnsblTx(c.client))
			if took := time.Since(start); took > time.Second+500*time.Millisecond {
				t.Errorf("check took %v, more than the 1s timeout + 500ms", took)
			}
			if got := v.Action == Reject; got != c.reject {
				t.Fatalf("action %v (%v), want reject=%v; reason %s", v.Action, v.Reply, c.reject, v.Reason)
			}
			if c.reject {
				if v.Reply.Code != 554 || v.Reply.Enhanced != [3]int{5, 7, 1} {
					t.Errorf("reply %v, want 554 5.7.1", v.Reply)
				}
				checkReplyLine(t, v.Reply.String())
			}
			for _, want := range c.replyHas {
				if !strings.Contains(v.Reply.String(), want) {
					t.Errorf("reply %q lacks %q", v.Reply, want)
				}
			}
			for _, want := range c.reasonHas {
				if !strings.Contains(v.Reason, want) {
					t.Errorf("reason %q lacks %q", v.Reason, want)
				}
			}
			if !strings.HasPrefix(v.Reason, "dnsbl: ") {
				t.Errorf("reason %q does not name the check", v.Reason)
			}
		})
	}
}

// TestDNSBLCountsAndWarns: refusals and failures are counted per zone and
// logged as warnings (rate-limited); listings and non-listings counted.
func TestDNSBLCountsAndWarns(t *testing.T) {
	s := dnsblServer(t)
	var log dnsTestLog
	d := newTestDNSBL(t, s, &log, 0, "zen.test", "quota.test", "broken.test")
	for _, ip := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.9"} {
		connectAndCheck(t, d, dnsblTx(ip))
	}
	st := d.Stats()
	want := []DNSBLZoneStats{
		{Zone: "zen.test", Listed: 2, NotListed: 1},
		{Zone: "quota.test", Refused: 2, NotListed: 1},
		{Zone: "broken.test", CouldNotTell: 2, NotListed: 1},
	}
	for i, w := range want {
		got := st[i]
		lr := got.LastRefused
		got.LastRefused = time.Time{}
		if got != w {
			t.Errorf("stats[%d] = %+v, want %+v", i, got, w)
		}
		if (w.Refused > 0) != !lr.IsZero() {
			t.Errorf("zone %s: LastRefused %v with %d refusals", w.Zone, lr, w.Refused)
		}
	}
	out := log.String()
	if n := strings.Count(out, "DNSBL refuses our queries"); n != 1 {
		t.Errorf("%d refusal warnings for two refusals within a minute, want 1 (rate-limited):\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "zone=quota.test") || !strings.Contains(out, "refused_total=1") {
		t.Errorf("refusal warning lacks level, zone or count:\n%s", out)
	}
	if n := strings.Count(out, "DNSBL lookup could not tell"); n != 1 {
		t.Errorf("%d could-not-tell warnings, want 1:\n%s", n, out)
	}
}

// TestDNSBLStartsAtConnect: StartConnect returns at once and the lookups run
// in the background; the check at RCPT waits for the held answer.
func TestDNSBLStartsAtConnect(t *testing.T) {
	s := dnsblServer(t)
	d := newTestDNSBL(t, s, nil, 0, "zen.test", "other.test")
	hold := s.Hold("2.0.0.127.zen.test.", dns.TypeA)
	holdOther := s.Hold("2.0.0.127.other.test.", dns.TypeA)
	tx := dnsblTx("127.0.0.2")
	d.StartConnect(context.Background(), tx)
	if _, ok := tx.Conn["dnsbl"]; !ok {
		t.Fatal("StartConnect stored nothing in tx.Conn")
	}
	// Both queries arrive while both are held: the zones are asked in
	// parallel, not one after the other.
	for _, h := range []*testdns.Hold{hold, holdOther} {
		select {
		case <-h.Arrived():
		case <-time.After(5 * time.Second):
			t.Fatal("a zone's lookup never reached the server while the other was held")
		}
	}
	holdOther.Release()
	done := make(chan Verdict)
	go func() {
		v, _ := d.Check(context.Background(), tx)
		done <- v
	}()
	select {
	case v := <-done:
		t.Fatalf("check decided (%v) before the held answer came", v.Action)
	default:
	}
	hold.Release()
	if v := <-done; v.Action != Reject {
		t.Fatalf("after release: %v, want reject", v.Action)
	}
}

// TestDNSBLDecisionCachedPerConnection: the second RCPT of a connection (or
// of a later transaction on it) asks DNS nothing more and gets the same
// answer; postmaster is reachable even from a listed client.
func TestDNSBLDecisionCachedPerConnection(t *testing.T) {
	s := dnsblServer(t)
	d := newTestDNSBL(t, s, nil, 0, "zen.test")
	tx := dnsblTx("127.0.0.2")
	first := connectAndCheck(t, d, tx)
	asked := s.TotalQueries()
	tx.Rcpt = "carol@campus.test"
	second, _ := d.Check(context.Background(), tx)
	if s.TotalQueries() != asked {
		t.Errorf("second RCPT asked DNS again")
	}
	if first.Action != Reject || second.Reply.String() != first.Reply.String() {
		t.Errorf("verdicts differ: %v / %v", first.Reply, second.Reply)
	}
	tx.Rcpt = "PostMaster@campus.test"
	if v, _ := d.Check(context.Background(), tx); v.Action != Continue || !strings.Contains(v.Reason, "postmaster") {
		t.Errorf("postmaster: %v %s, want continue", v.Action, v.Reason)
	}
}

// TestDNSBLSkips: trusted and authenticated clients are never looked up.
func TestDNSBLSkips(t *testing.T) {
	s := dnsblServer(t)
	d := newTestDNSBL(t, s, nil, 0, "zen.test")
	trusted := dnsblTx("127.0.0.2")
	trusted.Trusted = true
	d.StartConnect(context.Background(), trusted)
	if _, ok := trusted.Conn["dnsbl"]; ok {
		t.Error("lookups started for a trusted client")
	}
	auth := dnsblTx("127.0.0.2")
	auth.Authenticated = "alice@campus.test"
	for _, tx := range []*Transaction{trusted, auth} {
		v, err := d.Check(context.Background(), tx)
		if err != nil || v.Action != Continue {
			t.Errorf("%+v: %v %v", tx, v.Action, err)
		}
	}
	if n := s.TotalQueries(); n != 0 {
		t.Errorf("%d DNS queries for skipped clients", n)
	}
	// No connect stage (another listener): the check looks up itself.
	tx := dnsblTx("127.0.0.2")
	if v, _ := d.Check(context.Background(), tx); v.Action != Reject {
		t.Errorf("without StartConnect: %v, want reject", v.Action)
	}
}

// TestDNSBLTimeoutBounded: a silent list costs at most the check's timeout,
// whenever the RCPT comes.
func TestDNSBLTimeoutBounded(t *testing.T) {
	s := dnsblServer(t)
	s.SetSilent(true)
	d, err := NewDNSBL(DNSBLOptions{Resolver: dnsTestResolver(t, s, ""), Zones: mustZones(t, "zen.test"), Timeout: 300 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v := connectAndCheck(t, d, dnsblTx("127.0.0.2"))
	if took := time.Since(start); took > 300*time.Millisecond+300*time.Millisecond {
		t.Errorf("took %v, want ≤ timeout 300ms + 300ms", took)
	}
	if v.Action != Continue || !strings.Contains(v.Reason, "could not tell") {
		t.Errorf("%v %s, want continue, could not tell", v.Action, v.Reason)
	}
}

// TestDNSBLTXTSanitized: a list's TXT is printable ASCII and bounded in the
// reply.
func TestDNSBLTXTSanitized(t *testing.T) {
	s := dnsblServer(t)
	s.AddZone("ugly.test.", 60)
	long := strings.Repeat("x", 250)
	s.Add("2.0.0.127.ugly.test. 300 IN A 127.0.0.2",
		`2.0.0.127.ugly.test. 300 IN TXT "bad\007char\233s\013`+long+`"`)
	d := newTestDNSBL(t, s, nil, 0, "ugly.test")
	v := connectAndCheck(t, d, dnsblTx("127.0.0.2"))
	if v.Action != Reject {
		t.Fatalf("%v, want reject", v.Action)
	}
	// The resolver hands TXT data over as the bytes published; what
	// reaches the reply is printable ASCII, the rest replaced by "?".
	text := v.Reply.Text
	if !strings.Contains(text, "bad?char?s?xx") {
		t.Errorf("reply %q lacks the TXT", text)
	}
	if len(text) > maxDNSBLReplyText || !strings.Contains(text, "...") {
		t.Errorf("reply text %d octets (%q), want ≤ %d and cut", len(text), text, maxDNSBLReplyText)
	}
	checkReplyLine(t, v.Reply.String())
}

func TestDNSBLPrintable(t *testing.T) {
	if got := dnsblPrintable("a\x07b\xe3\x81\x82c\r\n", 100); got != "a?b???c??" {
		t.Errorf("got %q", got)
	}
	if got := dnsblPrintable(strings.Repeat("x", 20), 10); got != "xxxxxxx..." {
		t.Errorf("got %q", got)
	}
}

func TestParseDNSBLZone(t *testing.T) {
	good := []struct{ spec, want string }{
		{"zen.spamhaus.org", "zen.spamhaus.org"},
		{" Zen.Spamhaus.Org. ", "zen.spamhaus.org"},
		{"zen.spamhaus.org=127.0.0.2..127.0.0.11", "zen.spamhaus.org=127.0.0.2..127.0.0.11"},
		{"bl.example=127.0.0.2, 127.0.0.4", "bl.example=127.0.0.2,127.0.0.4"},
		{"bl.example=127.0.0.0/30*2", "bl.example=127.0.0.0..127.0.0.3*2"},
		{"bl.example*3", "bl.example*3"},
		{"bl.example*1", "bl.example"},
	}
	for _, g := range good {
		z, err := ParseDNSBLZone(g.spec)
		if err != nil {
			t.Errorf("%q: %v", g.spec, err)
			continue
		}
		if z.String() != g.want {
			t.Errorf("%q parsed as %q, want %q", g.spec, z, g.want)
		}
	}
	bad := []struct{ spec, errHas string }{
		{"", "empty name"},
		{"localhost", "not a fully-qualified"},
		{"bl.example=", "no return codes"},
		{"bl.example=127.0.0.2..", "not an IPv4"},
		{"bl.example=127.0.0.9..127.0.0.2", "ends before it begins"},
		{"bl.example=::1", "not an IPv4"},
		{"bl.example=127.0.0.2,,127.0.0.3", "empty return code"},
		{"bl.example=127.0.0.2..127.255.255.255", "127.255.255.0/24"},
		{"bl.example=127.255.255.254", "127.255.255.0/24"},
		{"bl.example=127.0.0.0/8", "127.255.255.0/24"},
		{"bl.example*0", "weight"},
		{"bl.example*x", "weight"},
		{"bl example", "not allowed"},
	}
	for _, b := range bad {
		_, err := ParseDNSBLZone(b.spec)
		if err == nil || !strings.Contains(err.Error(), b.errHas) {
			t.Errorf("%q: error %v, want one with %q", b.spec, err, b.errHas)
		}
	}
	z, _ := ParseDNSBLZone("zen.test")
	for ip, want := range map[string]bool{"127.0.0.2": true, "127.0.0.255": true, "127.0.0.1": false, "127.0.1.2": false, "10.0.0.2": false, "127.255.255.254": false} {
		if got := z.Accepts(netip.MustParseAddr(ip)); got != want {
			t.Errorf("default codes accept %s: %v, want %v", ip, got, want)
		}
	}
}

func TestNewDNSBLRefusesUnreachableThreshold(t *testing.T) {
	s := dnsblServer(t)
	r := dnsTestResolver(t, s, "")
	if _, err := NewDNSBL(DNSBLOptions{Resolver: r, Zones: mustZones(t, "a.test*2", "b.test"), Threshold: 4}); err == nil || !strings.Contains(err.Error(), "could ever be rejected") {
		t.Errorf("threshold 4 over weights 3: %v", err)
	}
	if _, err := NewDNSBL(DNSBLOptions{Resolver: r, Zones: mustZones(t, "a.test", "a.test")}); err == nil {
		t.Error("a zone twice accepted")
	}
	if _, err := NewDNSBL(DNSBLOptions{Resolver: r}); err == nil {
		t.Error("no zones accepted")
	}
}

// BenchmarkDNSBLCached: one connection's lookups (three zones, answers in
// the resolver's cache) started at connect and judged at RCPT.
func BenchmarkDNSBLCached(b *testing.B) {
	s := dnsblServer(b)
	d := newTestDNSBL(b, s, nil, 0, "zen.test", "other.test", "weird.test")
	connectAndCheck(b, d, dnsblTx("127.0.0.2")) // warm the cache
	ctx := context.Background()
	client := netip.MustParseAddr("127.0.0.2")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tx := &Transaction{Client: client, Rcpt: "alice@campus.test", Conn: map[string]any{}}
		d.StartConnect(ctx, tx)
		if v, _ := d.Check(ctx, tx); v.Action != Reject {
			b.Fatal(v.Action)
		}
	}
}
