package filters

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"blitiri.com.ar/go/spf"

	"sekisho/greylist"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
)

// logBuffer collects the check's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// newBoltGreylist is the check on a bbolt store with a controllable clock.
func newBoltGreylist(t *testing.T, opts GreylistOptions) (*Greylist, *testenv.Clock, *greylist.BoltStore) {
	t.Helper()
	clock := testenv.NewClock()
	store, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	opts.Store = store
	if opts.Logger == nil {
		opts.Logger = (&logBuffer{}).logger()
	}
	g, err := NewGreylist(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g, clock, store
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rcptTx(ip, from, rcpt string) *Transaction {
	return &Transaction{SessionID: "s1", Client: netip.MustParseAddr(ip), From: from, Rcpt: rcpt, Local: true, Listener: "smtp"}
}

func mustGreylist(t *testing.T, c Check, tx *Transaction) Verdict {
	t.Helper()
	v, err := c.Check(context.Background(), tx)
	if err != nil {
		t.Fatalf("Check(%s → %s): %v", tx.From, tx.Rcpt, err)
	}
	return v
}

func wantContinue(t *testing.T, v Verdict, reason string) {
	t.Helper()
	if v.Action != Continue || v.Reply != nil {
		t.Fatalf("verdict %v %v (%s), want continue", v.Action, v.Reply, v.Reason)
	}
	if !strings.Contains(v.Reason, reason) {
		t.Fatalf("reason %q does not mention %q", v.Reason, reason)
	}
}

func wantGreylisted(t *testing.T, v Verdict, secs int) {
	t.Helper()
	if v.Action != Defer || v.Reply == nil {
		t.Fatalf("verdict %v (%s), want a deferral", v.Action, v.Reason)
	}
	want := "451 4.7.1 greylisted, please try again in " + strconv.Itoa(secs) + " seconds"
	if v.Reply.String() != want {
		t.Fatalf("reply %q, want %q", v.Reply, want)
	}
}

func TestGreylistDefersThenPasses(t *testing.T) {
	g, clock, _ := newBoltGreylist(t, GreylistOptions{})
	tx := rcptTx("192.0.2.10", "prvs=1234abcdef=Bob@example.org", "alice@campus.example")

	v := mustGreylist(t, g, tx)
	wantGreylisted(t, v, 300)
	if !strings.Contains(v.Reason, "new triplet") {
		t.Errorf("first reason %q", v.Reason)
	}
	clock.Advance(2*time.Minute + 500*time.Millisecond)
	v = mustGreylist(t, g, tx)
	wantGreylisted(t, v, 180) // 179.5 s rounded up
	if !strings.Contains(v.Reason, "known triplet") {
		t.Errorf("retry reason %q", v.Reason)
	}
	clock.Advance(3 * time.Minute)
	// the retry comes from another host of the /24 with a new BATV tag
	wantContinue(t, mustGreylist(t, g, rcptTx("192.0.2.77", "prvs=2345abcdef=bob@example.org", "Alice@campus.example")), "passed greylisting")

	// through the chain, the 451 4.7.1 reaches the client unchanged
	other := rcptTx("198.51.100.1", "x@example.org", "alice@campus.example")
	verdict, results := NewChain(g).Run(context.Background(), StageRcpt, other)
	if verdict.Action != Defer || verdict.Reply.Code != 451 || verdict.Reply.Enhanced != [3]int{4, 7, 1} || len(results) != 1 {
		t.Fatalf("chain verdict %v %v", verdict.Action, verdict.Reply)
	}
}

func TestGreylistAutoWhitelist(t *testing.T) {
	p := greylist.DefaultPolicy()
	p.AutoWhitelist = 1
	g, clock, _ := newBoltGreylist(t, GreylistOptions{Policy: p})
	wantGreylisted(t, mustGreylist(t, g, rcptTx("192.0.2.10", "a@example.org", "b@campus.example")), 300)
	clock.Advance(5 * time.Minute)
	wantContinue(t, mustGreylist(t, g, rcptTx("192.0.2.10", "a@example.org", "b@campus.example")), "passed")
	wantContinue(t, mustGreylist(t, g, rcptTx("192.0.2.11", "new@example.org", "c@campus.example")), "auto-whitelisted")
}

// TestGreylistSkips: what is never greylisted passes without a store entry.
func TestGreylistSkips(t *testing.T) {
	dir := t.TempDir()
	wl := filepath.Join(dir, "greylist-whitelist.txt")
	writeFile(t, wl, `# test whitelist
203.0.113.5            # one host
198.51.100.0/24        # a network
2001:db8:5::/48
.google.com            # names below google.com
mx.example.net
abuse@campus.example
@lists.campus.example
`)
	var names sync.Map // client IP → verified name or error
	reverse := func(_ context.Context, tx *Transaction) (string, error) {
		v, _ := names.Load(tx.Client)
		switch v := v.(type) {
		case string:
			return v, nil
		case error:
			return "", v
		}
		return "", nil
	}
	g, _, store := newBoltGreylist(t, GreylistOptions{Whitelist: wl, ReverseName: reverse})
	names.Store(netip.MustParseAddr("192.0.2.41"), "mail-sor-f41.google.com")
	names.Store(netip.MustParseAddr("192.0.2.42"), "mx.example.net")
	names.Store(netip.MustParseAddr("192.0.2.43"), "notgoogle.com")
	names.Store(netip.MustParseAddr("192.0.2.44"), "mx2.example.net")
	names.Store(netip.MustParseAddr("192.0.2.45"), errors.New("SERVFAIL"))

	trusted := rcptTx("192.0.2.10", "a@example.org", "b@campus.example")
	trusted.Trusted = true
	authed := rcptTx("192.0.2.10", "a@example.org", "b@campus.example")
	authed.Authenticated = "alice"

	skips := []struct {
		name   string
		tx     *Transaction
		reason string
	}{
		{"trusted", trusted, "trusted client"},
		{"authenticated", authed, "authenticated"},
		{"postmaster", rcptTx("192.0.2.10", "a@example.org", "Postmaster@Campus.Example"), "postmaster"},
		{"postmaster other domain", rcptTx("192.0.2.10", "a@example.org", "POSTMASTER@other.example"), "postmaster"},
		{"bare postmaster", rcptTx("192.0.2.10", "a@example.org", "postmaster"), "postmaster"},
		{"recipient", rcptTx("192.0.2.10", "a@example.org", "Abuse@campus.example"), "greylist-whitelist.txt:7: abuse@campus.example"},
		{"recipient domain", rcptTx("192.0.2.10", "a@example.org", "dev@lists.campus.example"), ":8: @lists.campus.example"},
		{"client IP", rcptTx("203.0.113.5", "a@example.org", "b@campus.example"), ":2: 203.0.113.5"},
		{"client IPv4-mapped", rcptTx("::ffff:203.0.113.5", "a@example.org", "b@campus.example"), ":2: 203.0.113.5"},
		{"client network", rcptTx("198.51.100.200", "a@example.org", "b@campus.example"), ":3: 198.51.100.0/24"},
		{"client IPv6 network", rcptTx("2001:db8:5:1::1", "a@example.org", "b@campus.example"), ":4: 2001:db8:5::/48"},
		{"client name subtree", rcptTx("192.0.2.41", "a@example.org", "b@campus.example"), "mail-sor-f41.google.com whitelisted by"},
		{"client name exact", rcptTx("192.0.2.42", "a@example.org", "b@campus.example"), ":6: mx.example.net"},
	}
	for _, c := range skips {
		t.Run(c.name, func(t *testing.T) {
			wantContinue(t, mustGreylist(t, g, c.tx), c.reason)
			// and no entry was made
			tr := greylist.NewTriplet(c.tx.Client, c.tx.From, c.tx.Rcpt, greylist.DefaultNetworkPrefix)
			if d, err := store.Peek(context.Background(), tr, greylist.DefaultPolicy()); err != nil || !d.New {
				t.Fatalf("store entry after a skip: %+v, %v", d, err)
			}
		})
	}

	greylisted := []struct {
		name   string
		tx     *Transaction
		reason string
	}{
		{"postmaster lookalike", rcptTx("192.0.2.10", "a@example.org", "postmaster2@campus.example"), "new triplet"},
		{"name below no entry", rcptTx("192.0.2.43", "a@example.org", "b@campus.example"), "new triplet"},
		{"exact name only", rcptTx("192.0.2.44", "a@example.org", "b@campus.example"), "new triplet"},
		{"name could not be verified", rcptTx("192.0.2.45", "a@example.org", "b@campus.example"), "could not be verified (SERVFAIL)"},
		{"no name", rcptTx("192.0.2.46", "a@example.org", "b@campus.example"), "new triplet"},
		{"other recipient in whitelisted domain's parent", rcptTx("192.0.2.10", "a@example.org", "x@campus.example"), "new triplet"},
	}
	for i, c := range greylisted {
		t.Run(c.name, func(t *testing.T) {
			c.tx.From = "sender" + strconv.Itoa(i) + "@example.org" // a triplet of its own
			v := mustGreylist(t, g, c.tx)
			wantGreylisted(t, v, 300)
			if !strings.Contains(v.Reason, c.reason) {
				t.Fatalf("reason %q, want %q", v.Reason, c.reason)
			}
		})
	}

	// Without a ReverseName function, name entries never match.
	g2, _, _ := newBoltGreylist(t, GreylistOptions{Whitelist: wl})
	wantGreylisted(t, mustGreylist(t, g2, rcptTx("192.0.2.41", "a@example.org", "b@campus.example")), 300)
}

func TestGreylistDryRunCreatesNoEntry(t *testing.T) {
	g, clock, _ := newBoltGreylist(t, GreylistOptions{})
	dry := g.DryRun()
	if dry.Name() != "greylist" || dry.Stage() != StageRcpt {
		t.Fatalf("dry run is %s at %v", dry.Name(), dry.Stage())
	}
	tx := rcptTx("192.0.2.10", "a@example.org", "b@campus.example")
	wantGreylisted(t, mustGreylist(t, dry, tx), 300)
	clock.Advance(10 * time.Minute)
	// had the dry run made an entry, this would pass
	v := mustGreylist(t, g, tx)
	wantGreylisted(t, v, 300)
	if !strings.Contains(v.Reason, "new triplet") {
		t.Fatalf("after a dry run: %q, want a new triplet", v.Reason)
	}
}

// TestGreylistStoreDown stops a real Redis under the check: with
// on_store_error accept the mail passes, with tempfail it gets 451 4.3.0;
// either way the incident is logged once, every error is counted,
// StoreHealthy says so, and greylisting resumes with the same store once
// Redis is back.
func TestGreylistStoreDown(t *testing.T) {
	for _, action := range []StoreErrorAction{StoreErrorAccept, StoreErrorTempfail} {
		t.Run(action.String(), func(t *testing.T) {
			srv := testredis.Start(t)
			store := greylist.NewRedisStore(&redis.UniversalOptions{Addrs: []string{srv.Addr()}})
			defer store.Close()
			logs := &logBuffer{}
			g, err := NewGreylist(GreylistOptions{Store: store, OnStoreError: action, Logger: logs.logger(), StoreTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			tx := rcptTx("192.0.2.10", "a@example.org", "b@campus.example")
			wantGreylisted(t, mustGreylist(t, g, tx), 300)
			if !g.StoreHealthy() || g.StoreErrors() != 0 {
				t.Fatalf("healthy %v, errors %d before the outage", g.StoreHealthy(), g.StoreErrors())
			}

			srv.Stop()
			for i := 1; i <= 3; i++ {
				start := time.Now()
				v := mustGreylist(t, g, tx)
				if el := time.Since(start); el > time.Second+500*time.Millisecond {
					t.Fatalf("store error took %v, store timeout 1s", el)
				}
				switch action {
				case StoreErrorAccept:
					wantContinue(t, v, "greylist store unavailable")
					if !strings.Contains(v.Reason, "on_store_error accept") {
						t.Fatalf("reason %q", v.Reason)
					}
				case StoreErrorTempfail:
					if v.Action != Defer || v.Reply.String() != "451 4.3.0 greylisting temporarily unavailable, please try again later" {
						t.Fatalf("tempfail verdict %v %v", v.Action, v.Reply)
					}
				}
				if g.StoreHealthy() || g.StoreErrors() != uint64(i) {
					t.Fatalf("after %d errors: healthy %v, errors %d", i, g.StoreHealthy(), g.StoreErrors())
				}
			}
			if n := logs.count("greylist store unavailable"); n != 1 {
				t.Fatalf("incident logged %d times, want once:\n%s", n, logs.b.String())
			}

			srv.Restart()
			// the same store, asked again: Redis is empty, so a first contact
			wantGreylisted(t, mustGreylist(t, g, tx), 300)
			if !g.StoreHealthy() || g.StoreErrors() != 3 {
				t.Fatalf("after recovery: healthy %v, errors %d", g.StoreHealthy(), g.StoreErrors())
			}
			mustGreylist(t, g, tx)
			if n := logs.count("greylist store available again"); n != 1 || !strings.Contains(logs.b.String(), "errors=3") {
				t.Fatalf("recovery logged %d times (want once, with errors=3):\n%s", n, logs.b.String())
			}

			// a second incident is logged again
			srv.Kill()
			mustGreylist(t, g, tx)
			mustGreylist(t, g, tx)
			if n := logs.count("greylist store unavailable"); n != 2 {
				t.Fatalf("two incidents logged %d times", n)
			}
		})
	}
}

// TestGreylistCanceledSessionIsNotAnIncident: a client that hangs up while
// the store is asked does not mark the store down.
func TestGreylistCanceledSessionIsNotAnIncident(t *testing.T) {
	g, _, _ := newBoltGreylist(t, GreylistOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Check(ctx, rcptTx("192.0.2.10", "a@example.org", "b@campus.example")); err == nil {
		t.Fatal("no error for a canceled session")
	}
	if !g.StoreHealthy() || g.StoreErrors() != 0 {
		t.Fatalf("a canceled session counted as a store error: healthy %v, errors %d", g.StoreHealthy(), g.StoreErrors())
	}
}

func TestGreylistWhitelistReload(t *testing.T) {
	wl := filepath.Join(t.TempDir(), "wl.txt")
	writeFile(t, wl, "203.0.113.5\n")
	logs := &logBuffer{}
	g, _, _ := newBoltGreylist(t, GreylistOptions{Whitelist: wl, Logger: logs.logger()})
	tx := rcptTx("203.0.113.5", "a@example.org", "b@campus.example")
	wantContinue(t, mustGreylist(t, g, tx), "wl.txt:1: 203.0.113.5")

	// an invalid line: refused with file:line, the old list stays
	writeFile(t, wl, "# new list\n198.51.100.0/24\n198.51.100.0/33\nnot a host\n")
	err := g.Reload()
	if err == nil {
		t.Fatal("invalid whitelist accepted")
	}
	for _, want := range []string{wl + ":3:", wl + ":4:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	var le *GreylistWhitelistLineError
	if !errors.As(err, &le) || le.Line != 3 {
		t.Errorf("error %v: want a *GreylistWhitelistLineError for line 3", err)
	}
	wantContinue(t, mustGreylist(t, g, tx), "wl.txt:1: 203.0.113.5")
	if logs.count("greylist whitelist not loaded") != 1 {
		t.Errorf("refusal not logged")
	}

	// a missing file is refused the same way
	os.Remove(wl)
	if err := g.Reload(); err == nil {
		t.Fatal("missing whitelist accepted")
	}
	wantContinue(t, mustGreylist(t, g, tx), "203.0.113.5")

	// a fixed file is taken
	writeFile(t, wl, "198.51.100.0/24\n")
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	wantGreylisted(t, mustGreylist(t, g, tx), 300)
	wantContinue(t, mustGreylist(t, g, rcptTx("198.51.100.9", "a@example.org", "b@campus.example")), "198.51.100.0/24")

	// an invalid file at start-up is an error
	writeFile(t, wl, "bad entry\n")
	if _, err := NewGreylist(GreylistOptions{Store: nopStore{}, Whitelist: wl, Logger: logs.logger()}); err == nil || !strings.Contains(err.Error(), wl+":1:") {
		t.Fatalf("NewGreylist with an invalid whitelist: %v", err)
	}
}

type nopStore struct{ greylist.Store }

func TestParseGreylistWhitelist(t *testing.T) {
	valid := "\ufeff" + `# BOM first, comments, blanks

192.0.2.1
192.0.2.1/24      # host bits masked
::ffff:192.0.2.200
2001:db8::/32
Mail.Example.NET.
.outbound.example.org
user@Campus.Example
@campus.example
@.sub.campus.example
`
	w, err := ParseGreylistWhitelist("wl", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if w.Len() != 9 || !w.HasNames() {
		t.Fatalf("Len %d, HasNames %v", w.Len(), w.HasNames())
	}
	matches := []struct {
		kind, value string
		want        bool
	}{
		{"ip", "192.0.2.1", true},
		{"ip", "192.0.2.99", true}, // via the masked /24
		{"ip", "192.0.3.1", false},
		{"ip", "2001:db8:ffff::1", true},
		{"ip", "2001:db9::1", false},
		{"name", "mail.example.net", true},
		{"name", "x.mail.example.net", false},
		{"name", "outbound.example.org", true},
		{"name", "a.b.outbound.example.org", true},
		{"name", "xoutbound.example.org", false},
		{"rcpt", "USER@campus.example", true},
		{"rcpt", "other@campus.example", true},
		{"rcpt", "x@sub.campus.example", true},
		{"rcpt", "x@a.sub.campus.example", true},
		{"rcpt", "x@other.campus.example", false},
		{"rcpt", "user@example.org", false},
	}
	for _, m := range matches {
		var ok bool
		switch m.kind {
		case "ip":
			_, ok = w.MatchClient(netip.MustParseAddr(m.value))
		case "name":
			_, ok = w.MatchName(m.value)
		case "rcpt":
			_, ok = w.MatchRecipient(m.value)
		}
		if ok != m.want {
			t.Errorf("%s %s matched %v, want %v", m.kind, m.value, ok, m.want)
		}
	}

	invalid := []string{
		"192.0.2.0/33",
		"300.1.1.1",
		"not a host",
		"*.google.com",
		"host_name.example",
		"@",
		"user@",
		"user@.campus.example",
		"@bad..domain",
		"192.0.2.0/",
	}
	for _, line := range invalid {
		if _, err := ParseGreylistWhitelist("wl", []byte("192.0.2.1\n"+line+"\n")); err == nil || !strings.Contains(err.Error(), "wl:2:") {
			t.Errorf("line %q: error %v, want one naming wl:2", line, err)
		}
	}
}

// TestShippedGreylistWhitelist: the whitelist in deploy/ parses, and its
// entries each carry a comment saying where they come from.
func TestShippedGreylistWhitelist(t *testing.T) {
	path := filepath.Join("..", "deploy", "greylist-whitelist.txt")
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParseGreylistWhitelist(path, content)
	if err != nil {
		t.Fatal(err)
	}
	if !w.HasNames() || w.Len() < 8 {
		t.Fatalf("shipped whitelist has %d entries", w.Len())
	}
	for _, name := range []string{"mail-sor-f41.google.com", "mail-db8eur05on2041.outbound.protection.outlook.com", "a1-23.smtp-out.amazonses.com"} {
		if _, ok := w.MatchName(name); !ok {
			t.Errorf("shipped whitelist does not cover %s", name)
		}
	}
	// every entry line has a source comment on it or in the comment block
	// just above it
	lines := strings.Split(string(content), "\n")
	commented := false
	for i, line := range lines {
		text := strings.TrimSpace(line)
		switch {
		case text == "":
			commented = false
		case strings.HasPrefix(text, "#"):
			commented = true
		case !commented && !strings.Contains(text, "#"):
			t.Errorf("%s:%d: %q has no comment saying where it comes from", path, i+1, text)
		}
	}
}

func TestIsPostmaster(t *testing.T) {
	for rcpt, want := range map[string]bool{
		"postmaster@campus.example":   true,
		"PostMaster@Other.Example":    true,
		"postmaster":                  true,
		`"postmaster"@campus.example`: true,
		"postmaster+x@campus.example": false,
		"postmasters@campus.example":  false,
		"alice@postmaster.example":    false,
		"":                            false,
	} {
		if got := IsPostmaster(rcpt); got != want {
			t.Errorf("IsPostmaster(%q) = %v", rcpt, got)
		}
	}
}

func TestParseStoreErrorAction(t *testing.T) {
	for in, want := range map[string]StoreErrorAction{"": StoreErrorAccept, "accept": StoreErrorAccept, "tempfail": StoreErrorTempfail} {
		if got, err := ParseStoreErrorAction(in); err != nil || got != want {
			t.Errorf("ParseStoreErrorAction(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseStoreErrorAction("reject"); err == nil {
		t.Error("reject accepted: a store error must never bounce mail")
	}
}

func BenchmarkGreylistCheck(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, g *Greylist) {
		txs := make([]*Transaction, 512)
		for i := range txs {
			txs[i] = rcptTx("192.0."+strconv.Itoa(i%200)+".1", "s"+strconv.Itoa(i)+"@example.org", "r@campus.example")
		}
		i := 0
		for b.Loop() {
			if _, err := g.Check(ctx, txs[i%len(txs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("bolt", func(b *testing.B) {
		store, err := greylist.OpenBolt(filepath.Join(b.TempDir(), "state.db"), greylist.BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		g, _ := NewGreylist(GreylistOptions{Store: store})
		run(b, g)
	})
	b.Run("redis", func(b *testing.B) {
		srv := testredis.Start(b)
		store := greylist.NewRedisStore(&redis.UniversalOptions{Addrs: []string{srv.Addr()}})
		defer store.Close()
		g, _ := NewGreylist(GreylistOptions{Store: store})
		run(b, g)
	})
}

// TestGreylistExempt: clients of the exempt networks are not greylisted and
// make no entry; others are.
func TestGreylistExempt(t *testing.T) {
	g, _, store := newBoltGreylist(t, GreylistOptions{Exempt: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	for _, ip := range []string{"127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"} {
		tx := rcptTx(ip, "a@example.org", "b@campus.example")
		wantContinue(t, mustGreylist(t, g, tx), "exempt network")
		tr := greylist.NewTriplet(tx.Client, tx.From, tx.Rcpt, greylist.DefaultNetworkPrefix)
		if d, err := store.Peek(context.Background(), tr, greylist.DefaultPolicy()); err != nil || !d.New {
			t.Fatalf("%s: store entry after an exempt skip: %+v, %v", ip, d, err)
		}
	}
	wantGreylisted(t, mustGreylist(t, g, rcptTx("192.0.2.1", "a@example.org", "b@campus.example")), 300)
	wantGreylisted(t, mustGreylist(t, g, rcptTx("::2", "a@example.org", "b@campus.example")), 300)
}

// withSPF gives tx the SPF check's outcome, as the check (which runs
// before greylisting) leaves it.
func withSPF(tx *Transaction, result spf.Result, domain string) *Transaction {
	if tx.Values == nil {
		tx.Values = map[string]any{}
	}
	tx.Values[spfValueKey] = &spfState{outcome: SPFOutcome{Result: result, Identity: SPFMailFrom, Domain: domain}}
	return tx
}

// TestGreylistBySenderDomain: a client SPF authorised for the sender's
// domain is greylisted on (domain, recipient): once the delay passed, a
// retry — and any later mail of the domain to that recipient — from
// another address of its pool (another network) passes; without SPF pass
// (softfail, none) the client is held per network as before; with
// BySenderDomain off, SPF pass changes nothing.
func TestGreylistBySenderDomain(t *testing.T) {
	g, clock, _ := newBoltGreylist(t, GreylistOptions{BySenderDomain: true})
	first := withSPF(rcptTx("192.0.2.10", "bounces-1@big.example", "alice@campus.example"), spf.Pass, "big.example")
	wantGreylisted(t, mustGreylist(t, g, first), 300)
	clock.Advance(5 * time.Minute)
	retry := withSPF(rcptTx("198.51.100.7", "bounces-2@big.example", "alice@campus.example"), spf.Pass, "big.example")
	v := mustGreylist(t, g, retry)
	wantContinue(t, v, "spf:big.example → <alice@campus.example> passed")
	later := withSPF(rcptTx("203.0.113.99", "news@big.example", "alice@campus.example"), spf.Pass, "big.example")
	wantContinue(t, mustGreylist(t, g, later), "passed")

	// Without SPF pass: per network, sender and recipient.
	soft := withSPF(rcptTx("192.0.2.10", "x@soft.example", "alice@campus.example"), spf.SoftFail, "soft.example")
	wantGreylisted(t, mustGreylist(t, g, soft), 300)
	clock.Advance(5 * time.Minute)
	other := withSPF(rcptTx("198.51.100.7", "x@soft.example", "alice@campus.example"), spf.SoftFail, "soft.example")
	wantGreylisted(t, mustGreylist(t, g, other), 300)
	wantContinue(t, mustGreylist(t, g, rcptTx("192.0.2.10", "x@soft.example", "alice@campus.example")), "192.0.2.0/24 <x@soft.example>")

	// A pass by +all validates nothing: per network.
	all := withSPF(rcptTx("192.0.2.10", "x@open.example", "alice@campus.example"), spf.Pass, "open.example")
	all.Values[spfValueKey].(*spfState).outcome.Mechanism = "all"
	wantGreylisted(t, mustGreylist(t, g, all), 300)
	if v := mustGreylist(t, g, all); !strings.Contains(v.Reason, "192.0.2.0/24 <x@open.example>") {
		t.Errorf("a +all pass is keyed on %q, want the network triplet", v.Reason)
	}

	off, clock2, _ := newBoltGreylist(t, GreylistOptions{BySenderDomain: false})
	wantGreylisted(t, mustGreylist(t, off, withSPF(rcptTx("192.0.2.10", "a@big.example", "bob@campus.example"), spf.Pass, "big.example")), 300)
	clock2.Advance(5 * time.Minute)
	wantGreylisted(t, mustGreylist(t, off, withSPF(rcptTx("198.51.100.7", "a@big.example", "bob@campus.example"), spf.Pass, "big.example")), 300)
}

// TestGreylistWholeTransaction: the recipients of one transaction share the
// decision of the first that reached the store: a new triplet holds the
// recipients after it, even one whose own triplet passed before, and the
// retry of the whole transaction passes whole; a first that passes lets the
// new ones after it pass. Postmaster stays exempt.
func TestGreylistWholeTransaction(t *testing.T) {
	g, clock, _ := newBoltGreylist(t, GreylistOptions{})
	// carol's triplet passed earlier.
	wantGreylisted(t, mustGreylist(t, g, rcptTx("192.0.2.10", "s@example.org", "carol@campus.example")), 300)
	clock.Advance(5 * time.Minute)
	wantContinue(t, mustGreylist(t, g, rcptTx("192.0.2.10", "s@example.org", "carol@campus.example")), "passed")

	send := func(rcpts ...string) []Verdict {
		tx := rcptTx("192.0.2.10", "s@example.org", "")
		var vs []Verdict
		for _, r := range rcpts {
			tx.Rcpt = r
			vs = append(vs, mustGreylist(t, g, tx))
		}
		return vs
	}
	vs := send("alice@campus.example", "bob@campus.example", "carol@campus.example", "postmaster@campus.example")
	wantGreylisted(t, vs[0], 300)
	wantGreylisted(t, vs[1], 300)
	wantGreylisted(t, vs[2], 300)
	if !strings.Contains(vs[2].Reason, "held with the transaction") {
		t.Errorf("carol's reason: %q", vs[2].Reason)
	}
	wantContinue(t, vs[3], "postmaster")
	clock.Advance(5 * time.Minute)
	for i, v := range send("alice@campus.example", "bob@campus.example", "carol@campus.example") {
		if v.Action != Continue {
			t.Errorf("retry, recipient %d: %v %s", i, v.Action, v.Reason)
		}
	}
	// carol first (passed before), then two new ones: all pass.
	for i, v := range send("carol@campus.example", "dave@campus.example", "erin@campus.example") {
		if v.Action != Continue {
			t.Errorf("after a passing first recipient, recipient %d: %v %s", i, v.Action, v.Reason)
		}
	}
}
