package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sekisho/greylist"
	"sekisho/internal/testdns"
	"sekisho/lookup"
)

func TestParseSTSPolicy(t *testing.T) {
	good := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net\r\nmax_age: 86400\r\n"
	p, err := ParseSTSPolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != STSModeEnforce || p.MaxAge != 86400*time.Second || strings.Join(p.MX, ",") != "mail.example.com,*.example.net" {
		t.Fatalf("parsed %+v", p)
	}
	if p, err := ParseSTSPolicy([]byte("version: STSv1\nmode: none\nmax_age: 0\nextension: ignored\n")); err != nil || p.Mode != STSModeNone {
		t.Fatalf("mode none without mx: %+v, %v", p, err)
	}
	for name, body := range map[string]string{
		"no version":      "mode: enforce\nmx: a.test\nmax_age: 1\n",
		"version STSv2":   "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
		"bad mode":        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
		"no mode":         "version: STSv1\nmx: a.test\nmax_age: 1\n",
		"two modes":       "version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 1\n",
		"no max_age":      "version: STSv1\nmode: enforce\nmx: a.test\n",
		"max_age too big": "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
		"max_age signed":  "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: +5\n",
		"max_age words":   "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: a day\n",
		"enforce no mx":   "version: STSv1\nmode: enforce\nmax_age: 1\n",
		"bad mx":          "version: STSv1\nmode: enforce\nmx: mail.*.test\nmax_age: 1\n",
		"mx with port":    "version: STSv1\nmode: enforce\nmx: mail.test:25\nmax_age: 1\n",
		"not key: value":  "version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n",
		"space in key":    "version: STSv1\n mode: enforce\nmx: a.test\nmax_age: 1\n",
		"HTML":            "<html><body>not found</body></html>\n",
	} {
		if p, err := ParseSTSPolicy([]byte(body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
}

// Wildcards match exactly one leftmost label (RFC 8461 §4.1).
func TestSTSMatches(t *testing.T) {
	p := &STSPolicy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.Example.COM.": true, "mx.example.com": false,
		"mx1.example.net": true, "example.net": false, "a.b.example.net": false, "xexample.net": false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseSTSRecord(t *testing.T) {
	for txt, want := range map[string]string{
		"v=STSv1; id=20160831085700Z;":           "20160831085700Z",
		"v=STSv1;id=abc":                         "abc",
		"v=STSv1; id=abc; ext=1":                 "abc",
		"v=STSv1;":                               "",
		"v=STSv1; id=a-b":                        "",
		"v=STSv1; id=" + strings.Repeat("a", 33): "",
		"v=STSv2; id=abc":                        "",
		"id=abc; v=STSv1":                        "",
	} {
		got, ok := parseSTSRecord(txt)
		if got != want || ok != (want != "") {
			t.Errorf("parseSTSRecord(%q) = %q, %v; want %q", txt, got, ok, want)
		}
	}
}

// stsWorld is a recipient domain dest.test with an MTA-STS policy: two mail
// hosts (mx1.dest.test at 127.0.0.1, mx2.dest.test at 127.0.0.2, on one
// port) with certificates for their names from a test CA, the TXT record
// in a test DNS server, the policy on an HTTPS server for
// mta-sts.dest.test (127.0.0.1), and a router whose MTA-STS cache is a real
// bbolt store.
type stsWorld struct {
	dns      *testdns.Server
	mx1, mx2 *tlsHop
	router   *Router
	logs     *logBuffer
	cache    *greylist.BoltStore
	https    *httptest.Server

	mu      sync.Mutex
	policy  string
	status  int
	ctype   string
	fetches int
}

func newSTSWorld(t *testing.T, mx1Cert tls.Certificate) *stsWorld {
	t.Helper()
	ca := newTestCA(t)
	w := &stsWorld{status: http.StatusOK, ctype: "text/plain; charset=utf-8"}
	w.mx1 = startTLSHop(t, serving(mx1Cert))
	_, port, _ := net.SplitHostPort(w.mx1.Addr)
	if ln, err := net.Listen("tcp", "127.0.0.2:"+port); err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	} else {
		ln.Close()
	}
	w.mx2 = startTLSHopAt(t, "127.0.0.2:"+port, serving(ca.issue(t, "mx2.dest.test")))

	w.https = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.dest.test:"+strconv.Itoa(w.port()) {
			http.NotFound(rw, r)
			return
		}
		w.fetches++
		rw.Header().Set("Content-Type", w.ctype)
		if w.status/100 == 3 {
			rw.Header().Set("Location", "/elsewhere/mta-sts.txt")
		}
		rw.WriteHeader(w.status)
		fmt.Fprint(rw, w.policy)
	}))
	w.https.TLS = serving(ca.issue(t, "mta-sts.dest.test"))
	w.https.StartTLS()
	t.Cleanup(w.https.Close)

	w.dns = testdns.Start(t)
	w.dns.AddZone("dest.test.", 60)
	w.dns.Add("dest.test. 300 IN MX 10 mx1.dest.test.",
		"dest.test. 300 IN MX 20 mx2.dest.test.",
		"mx1.dest.test. 300 IN A 127.0.0.1",
		"mx2.dest.test. 300 IN A 127.0.0.2",
		"mta-sts.dest.test. 300 IN A 127.0.0.1",
		`_mta-sts.dest.test. 300 IN TXT "v=STSv1; id=one;"`)

	p, _ := strconv.Atoi(port)
	w.router = mxRouter(t, w.dns, p)
	w.router.Routes[0].TLSRoots = ca.pool
	w.logs = &logBuffer{}
	w.router.Logger = slog.New(slog.NewTextHandler(w.logs, nil))
	w.router.Counters = &TLSCounters{}
	cache, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	w.cache = cache
	w.router.MTASTS = w.newMTASTS()
	return w
}

// newMTASTS is a policy source on the world's DNS, HTTPS server and cache
// (another gateway sharing the store is another one of these).
func (w *stsWorld) newMTASTS() *MTASTS {
	return &MTASTS{
		Resolver: w.router.MailHosts.(*lookup.Resolver),
		Cache:    w.cache,
		Port:     w.port(),
		RootCAs:  w.router.Routes[0].TLSRoots,
		Timeout:  5 * time.Second,
		Logger:   w.router.Logger,
	}
}

func (w *stsWorld) port() int {
	_, p, _ := net.SplitHostPort(w.https.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// serve sets the policy the HTTPS server answers, with status 200.
func (w *stsWorld) serve(policy string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.policy, w.status = policy, http.StatusOK
}

// fail makes the HTTPS server answer 500.
func (w *stsWorld) fail() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status = http.StatusInternalServerError
}

func (w *stsWorld) fetched() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fetches
}

// setID replaces the TXT record's id.
func (w *stsWorld) setID(id string) {
	w.dns.Remove("_mta-sts.dest.test.", testdns.AnyType)
	w.dns.Add(`_mta-sts.dest.test. 300 IN TXT "v=STSv1; id=` + id + `;"`)
}

func (w *stsWorld) begin(t *testing.T) (Transaction, error) {
	t.Helper()
	tx, err := w.router.Begin(context.Background(), 0, "dest.test", Envelope{From: sender})
	if err == nil {
		t.Cleanup(tx.Abort)
	}
	return tx, err
}

func stsPolicy(mode string, mx ...string) string {
	s := "version: STSv1\nmode: " + mode + "\n"
	for _, m := range mx {
		s += "mx: " + m + "\n"
	}
	return s + "max_age: 86400\n"
}

// enforce: a mail host not matching the policy is skipped (mx1, the
// preferred one), a matching one gets the mail over TLS with its
// certificate verified for its name; a policy no mail host matches is 451
// 4.7.5.
func TestMTASTSEnforce(t *testing.T) {
	w := newSTSWorld(t, selfSigned(t, "mx1.dest.test"))
	w.serve(stsPolicy("enforce", "mx2.dest.test"))
	tx, err := w.begin(t)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "mx mx2.dest.test [127.0.0.2]" {
		t.Fatalf("transaction with %s, want mx2 (mx1 is not in the policy)", tx.Hop())
	}
	if st := tx.TLS(); st == nil || len(st.VerifiedChains) == 0 {
		t.Fatalf("TLS() = %+v, want a verified session", st)
	}
	if n := len(w.mx1.Hellos()); n != 0 {
		t.Errorf("mx1, not in the policy, was contacted %d times", n)
	}
	if !strings.Contains(w.logs.String(), "mail host not in the policy, skipped") || !strings.Contains(w.logs.String(), "mx=mx1.dest.test") {
		t.Errorf("log does not name the skipped host:\n%s", w.logs)
	}

	// A wildcard takes both; mx1's self-signed certificate then fails
	// verification and mx2 takes the mail.
	w.setID("two")
	w.serve(stsPolicy("enforce", "*.dest.test"))
	tx, err = w.begin(t)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "mx mx2.dest.test [127.0.0.2]" {
		t.Fatalf("transaction with %s, want mx2 (mx1's certificate does not verify)", tx.Hop())
	}
	if n := w.router.Counters.Refused.Load(); n != 1 {
		t.Errorf("Refused = %d, want 1 (mx1)", n)
	}

	// No host matches: 451 4.7.5, nothing contacted.
	w.setID("three")
	w.serve(stsPolicy("enforce", "mx.elsewhere.test"))
	before := len(w.mx1.Hellos()) + len(w.mx2.Hellos())
	_, err = w.begin(t)
	wantReply(t, err, 451, [3]int{4, 7, 5})
	if after := len(w.mx1.Hellos()) + len(w.mx2.Hellos()); after != before {
		t.Errorf("mail hosts contacted although none matches the policy")
	}
}

// testing: nothing is refused (the route's may applies) and what enforce
// would refuse is logged.
func TestMTASTSTesting(t *testing.T) {
	w := newSTSWorld(t, selfSigned(t, "mx1.dest.test"))
	w.serve(stsPolicy("testing", "mx2.dest.test"))
	tx, err := w.begin(t)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "mx mx1.dest.test [127.0.0.1]" || tx.TLS() == nil {
		t.Fatalf("transaction with %s (TLS %v), want mx1 over TLS", tx.Hop(), tx.TLS() != nil)
	}
	if err := tx.Rcpt(context.Background(), recipient, RcptDSN{}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	wantOneMessage(t, w.mx1, true)
	logs := w.logs.String()
	for _, want := range []string{"MTA-STS testing: mail host not in the policy", "MTA-STS testing: the certificate would not pass"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// The cache: a policy is fetched once and then served from the store while
// the TXT id is unchanged, by this gateway and by another on the same
// store; a changed id refetches; a fetch that fails keeps the cached policy
// (RFC 8461 §5.1).
func TestMTASTSCache(t *testing.T) {
	w := newSTSWorld(t, selfSigned(t, "mx1.dest.test"))
	w.serve(stsPolicy("enforce", "mx2.dest.test"))
	ctx := context.Background()
	m := w.router.MTASTS

	p := m.Policy(ctx, "dest.test")
	if p == nil || p.ID != "one" || p.Mode != STSModeEnforce || w.fetched() != 1 {
		t.Fatalf("first Policy = %+v after %d fetches, want the enforce policy fetched once", p, w.fetched())
	}
	if p := m.Policy(ctx, "Dest.Test."); p == nil || p.ID != "one" || w.fetched() != 1 {
		t.Fatalf("same id: %+v after %d fetches, want the cached policy and no fetch", p, w.fetched())
	}
	if p := w.newMTASTS().Policy(ctx, "dest.test"); p == nil || p.Mode != STSModeEnforce || w.fetched() != 1 {
		t.Fatalf("another gateway on the store: %+v after %d fetches, want the cached policy", p, w.fetched())
	}

	// A changed id with the server failing: the fetch is tried, and the
	// cached policy stays in force.
	w.setID("two")
	w.fail()
	if p := m.Policy(ctx, "dest.test"); p == nil || p.ID != "one" || p.Mode != STSModeEnforce || w.fetched() != 2 {
		t.Fatalf("failed refetch: %+v after %d fetches, want the cached policy after one more fetch", p, w.fetched())
	}
	if !strings.Contains(w.logs.String(), "policy fetch failed; the cached policy stays in force") {
		t.Errorf("log does not say the cache was kept:\n%s", w.logs)
	}
	// ... and it still applies to mail: mx1 skipped.
	tx, err := w.begin(t)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "mx mx2.dest.test [127.0.0.2]" {
		t.Fatalf("transaction with %s, want mx2 (the cached enforce policy)", tx.Hop())
	}

	// The server is back: the changed id refetches, and the new policy
	// replaces the cached one.
	w.serve(stsPolicy("testing", "*.dest.test"))
	if p := m.Policy(ctx, "dest.test"); p == nil || p.ID != "two" || p.Mode != STSModeTesting {
		t.Fatalf("refetch: %+v, want the testing policy with id two", p)
	}
	fetches := w.fetched()
	if p := w.newMTASTS().Policy(ctx, "dest.test"); p == nil || p.ID != "two" || w.fetched() != fetches {
		t.Fatalf("after the refetch: %+v, want id two from the cache", p)
	}

	// The TXT record gone: the cached policy still applies (RFC 8461 §3.3).
	w.dns.Remove("_mta-sts.dest.test.", testdns.AnyType)
	if p := m.Policy(ctx, "dest.test"); p == nil || p.ID != "two" || w.fetched() != fetches {
		t.Fatalf("without TXT: %+v, want the cached policy and no fetch", p)
	}
}

// Without a TXT record there is no policy and no fetch; a fetch that fails
// without a cached policy is no policy either: the route's may applies.
func TestMTASTSNoPolicy(t *testing.T) {
	w := newSTSWorld(t, selfSigned(t, "mx1.dest.test"))
	w.serve(stsPolicy("enforce", "mx2.dest.test"))
	w.dns.Remove("_mta-sts.dest.test.", testdns.AnyType)
	if p := w.router.MTASTS.Policy(context.Background(), "dest.test"); p != nil || w.fetched() != 0 {
		t.Fatalf("no TXT: %+v after %d fetches", p, w.fetched())
	}
	w.setID("one")
	w.fail()
	tx, err := w.begin(t)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "mx mx1.dest.test [127.0.0.1]" || tx.TLS() == nil {
		t.Fatalf("transaction with %s, want mx1 with opportunistic TLS", tx.Hop())
	}
	if w.fetched() != 1 {
		t.Errorf("%d fetches, want 1", w.fetched())
	}
}

// The fetch is strict: no redirects, text/plain only, bounded in size, a
// certificate valid for mta-sts.<domain>.
func TestMTASTSFetchStrict(t *testing.T) {
	w := newSTSWorld(t, selfSigned(t, "mx1.dest.test"))
	ctx := context.Background()
	m := w.router.MTASTS

	w.serve(stsPolicy("enforce", "mx2.dest.test"))
	w.mu.Lock()
	w.ctype = "text/html"
	w.mu.Unlock()
	if _, err := m.fetch(ctx, "dest.test"); err == nil || !strings.Contains(err.Error(), "want text/plain") {
		t.Errorf("text/html: %v", err)
	}
	w.mu.Lock()
	w.ctype = "text/plain"
	w.mu.Unlock()

	m.MaxBytes = 20
	if _, err := m.fetch(ctx, "dest.test"); err == nil || !strings.Contains(err.Error(), "larger than 20 bytes") {
		t.Errorf("oversized: %v", err)
	}
	m.MaxBytes = 0

	m.RootCAs = nil // the test CA is not a system CA
	if _, err := m.fetch(ctx, "dest.test"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	m.RootCAs = w.router.Routes[0].TLSRoots

	if p, err := m.fetch(ctx, "dest.test"); err != nil || p.Mode != STSModeEnforce {
		t.Fatalf("good fetch: %+v, %v", p, err)
	}
}

// A redirect is never followed (RFC 8461 §3.3).
func TestMTASTSNoRedirect(t *testing.T) {
	w := newSTSWorld(t, selfSigned(t, "mx1.dest.test"))
	w.mu.Lock()
	w.status, w.policy = http.StatusFound, ""
	w.mu.Unlock()
	if _, err := w.router.MTASTS.fetch(context.Background(), "dest.test"); err == nil || !strings.Contains(err.Error(), "redirect not followed") {
		t.Errorf("redirect: %v, want it refused", err)
	}
	if n := w.fetched(); n != 1 {
		t.Errorf("%d requests, want 1 (the redirect not followed)", n)
	}
}
