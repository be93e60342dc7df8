package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/greylist"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
	"sekisho/report"
)

// backend is one store under test, with a way to take it down and back.
type backend struct {
	name  string
	store greylist.Counts
	down  func()
	up    func()
	redis *testredis.Server
}

// flaky wraps a store and fails every call while down is set: the
// embedded store's outage (a Redis outage is a real stopped server).
type flaky struct {
	greylist.Counts
	down atomic.Bool
}

var errDown = errors.New("store down (test)")

func (f *flaky) AddCounts(ctx context.Context, b greylist.CountBatch) error {
	if f.down.Load() {
		return errDown
	}
	return f.Counts.AddCounts(ctx, b)
}

func (f *flaky) ReadCounts(ctx context.Context, week string, top int) (greylist.WeekCounts, error) {
	if f.down.Load() {
		return greylist.WeekCounts{}, errDown
	}
	return f.Counts.ReadCounts(ctx, week, top)
}

func backends(t *testing.T) []func(t *testing.T) backend {
	return []func(t *testing.T) backend{
		func(t *testing.T) backend {
			s, err := greylist.OpenBolt(filepath.Join(t.TempDir(), "state.db"), greylist.BoltOptions{SweepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			f := &flaky{Counts: s}
			return backend{name: "bbolt", store: f, down: func() { f.down.Store(true) }, up: func() { f.down.Store(false) }}
		},
		func(t *testing.T) backend {
			srv := testredis.Start(t)
			s := greylist.NewRedisStore(&redis.UniversalOptions{Addrs: []string{srv.Addr()}})
			t.Cleanup(func() { s.Close() })
			return backend{name: "redis", store: s, down: srv.Stop, up: srv.Restart, redis: srv}
		},
	}
}

func forEachStore(t *testing.T, f func(t *testing.T, b backend)) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func newCounter(store greylist.Counts, clock *testenv.Clock) *report.Counter {
	// Keep: the script is dated; Redis expires on its real clock.
	return report.NewCounter(store, report.CounterOptions{Now: clock.Now, FlushInterval: -1, SweepInterval: -1, Keep: 100 * 365 * 24 * time.Hour})
}

func flush(t *testing.T, c *report.Counter) {
	t.Helper()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return t
}

var (
	clientA = netip.MustParseAddr("192.0.2.10")
	clientB = netip.MustParseAddr("192.0.2.77") // same /24 as A
	clientC = netip.MustParseAddr("2001:db8:1:2::5")
	clientD = netip.MustParseAddr("198.51.100.3")
)

func ev(when, cause, listener string, client netip.Addr, sender, rcpt string) report.Event {
	return report.Event{Time: at(when), Cause: cause, Listener: listener, Client: client, Sender: sender, Recipient: rcpt}
}

func nx(when string, client netip.Addr, sender, domain string) report.Event {
	e := ev(when, report.NXDomain, "smtp", client, sender, "alice@campus.example")
	e.Domain = domain
	return e
}

// script records several weeks of traffic, flushing after every day, and
// returns the expected (week, cause) counts: {attempts, distinct}.
//
// 2026-11-02 is the Monday of 2026-W45.
func script(t *testing.T, c *report.Counter) map[string][2]int64 {
	days := [][]report.Event{
		{ // Monday W45: a greylisted triplet, retried; two accepted
			ev("2026-11-02 08:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example"),
			ev("2026-11-02 08:05:00", report.Greylist, "smtp", clientB, "bob@example.net", "alice@campus.example"), // same /24: same triplet
			ev("2026-11-02 09:00:00", report.Accepted, "smtp", clientD, "x@example.org", "alice@campus.example"),
			ev("2026-11-02 09:00:01", report.Accepted, "lmtp", clientD, "x@example.org", "carol@campus.example"),
			nx("2026-11-02 10:00:00", clientD, "a@typo.example", "typo.example"),
			nx("2026-11-02 10:00:01", clientD, "b@typo.example", "typo.example"),
		},
		{ // Wednesday: the same triplet again (retries five days over), a new one
			ev("2026-11-04 08:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example"),
			ev("2026-11-04 08:00:00", report.Greylist, "smtp", clientC, "", "alice@campus.example"),
			nx("2026-11-04 10:00:00", clientD, "a@typo.example", "typo.example"),
			nx("2026-11-04 10:00:00", clientD, "c@gone.example", "gone.example"),
			nx("2026-11-04 10:00:00", clientD, "c@listed.example", "listed.example"),
		},
		{ // Sunday 23:59:59 UTC: still W45
			ev("2026-11-08 23:59:59", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example"),
			{Time: at("2026-11-08 23:59:59"), Cause: report.BadDomain, Listener: "smtp", Client: clientD, Sender: "z@foo.invalid", Domain: "foo.invalid"},
		},
		{ // Monday 00:00:00 UTC: W46; the same triplet counts again in a new week
			ev("2026-11-09 00:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example"),
			ev("2026-11-09 00:00:00", report.DNSTempfail, "submission", clientC, "u@campus.example", "v@example.com"),
		},
		// W47: nothing at all.
		{ // W48
			ev("2026-11-26 12:00:00", report.Accepted, "smtp", clientD, "x@example.org", "alice@campus.example"),
			ev("2026-11-26 12:00:00", report.Accepted, "smtp", clientD, "x@example.org", "alice@campus.example"),
		},
	}
	for _, d := range days {
		for _, e := range d {
			c.Record(e)
		}
		flush(t, c)
	}
	return map[string][2]int64{
		"2026-W45/" + report.Greylist:    {5, 2},
		"2026-W45/" + report.Accepted:    {2, 2},
		"2026-W45/" + report.NXDomain:    {5, 4},
		"2026-W45/" + report.BadDomain:   {1, 1},
		"2026-W46/" + report.Greylist:    {1, 1},
		"2026-W46/" + report.DNSTempfail: {1, 1},
		"2026-W48/" + report.Accepted:    {2, 1},
	}
}

var scriptWeeks = report.WeeksBetween(at("2026-11-02 00:00:00"), at("2026-11-29 23:59:59"))

func build(t *testing.T, store greylist.Counts) *report.Report {
	t.Helper()
	r, err := report.Build(context.Background(), store, report.Options{
		Weeks:  scriptWeeks,
		Listed: func(d string) bool { return d == "listed.example" || strings.HasSuffix(d, ".invalid") },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func decodeJSON(t *testing.T, r *report.Report) report.JSON {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var j report.JSON
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	return j
}

func TestWeeksOfTrafficCountedPerCauseAndWeek(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		c := newCounter(b.store, testenv.NewClock())
		want := script(t, c)
		j := decodeJSON(t, build(t, b.store))
		if j.Version != 1 || j.From != "2026-11-02" || j.To != "2026-11-29" || j.TimeZone != "UTC" {
			t.Errorf("header: %+v", j)
		}
		wantDistinct := map[string]string{"bbolt": "exact", "redis": "hyperloglog"}[b.name]
		if j.Distinct != wantDistinct {
			t.Errorf("distinct = %q, want %q", j.Distinct, wantDistinct)
		}
		if got, wantRows := len(j.Rows), 4*len(report.Causes); got != wantRows {
			t.Fatalf("%d rows, want %d (every week and cause, zeros included)", got, wantRows)
		}
		for _, row := range j.Rows {
			w := want[row.Week+"/"+row.Cause] // zero for the rest
			if row.Attempts != w[0] || row.Distinct != w[1] {
				t.Errorf("%s %s: attempts %d distinct %d, want %d %d", row.Week, row.Cause, row.Attempts, row.Distinct, w[0], w[1])
			}
		}
		// Rows in order: weeks oldest first, causes in report order; W47 present.
		if j.Rows[0].Week != "2026-W45" || j.Rows[0].Cause != report.Accepted || j.Rows[2*len(report.Causes)].Week != "2026-W47" {
			t.Errorf("row order: first %+v, W47 at %+v", j.Rows[0], j.Rows[2*len(report.Causes)])
		}
		for _, row := range j.Rows {
			if row.Week == "2026-W45" && row.Cause == report.Accepted && (row.Listeners["smtp"] != 1 || row.Listeners["lmtp"] != 1) {
				t.Errorf("accepted W45 listeners = %v, want smtp 1, lmtp 1", row.Listeners)
			}
		}
		wantTop := []report.JSONTop{
			{Week: "2026-W45", Cause: report.NXDomain, Rank: 1, Domain: "typo.example", Attempts: 3, Senders: 2},
			{Week: "2026-W45", Cause: report.NXDomain, Rank: 2, Domain: "gone.example", Attempts: 1, Senders: 1},
			{Week: "2026-W45", Cause: report.NXDomain, Rank: 3, Domain: "listed.example", Attempts: 1, Senders: 1, Listed: true},
			{Week: "2026-W45", Cause: report.BadDomain, Rank: 1, Domain: "foo.invalid", Attempts: 1, Senders: 1, Listed: true},
		}
		if fmt.Sprint(j.TopDomains) != fmt.Sprint(wantTop) {
			t.Errorf("top domains:\n got %+v\nwant %+v", j.TopDomains, wantTop)
		}
	})
}

func TestTextReportNamesTopDomainsAndReadyAddLines(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		c := newCounter(b.store, testenv.NewClock())
		script(t, c)
		r := build(t, b.store)
		r.BadDomainsFile = "/etc/sekisho/baddomains.txt"
		var buf bytes.Buffer
		if err := r.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		text := buf.String()
		for _, want := range []string{
			"== 2026-W45 (2026-11-02 to 2026-11-08) ==",
			"== 2026-W47 (2026-11-16 to 2026-11-22) ==",
			"\n  sekisho baddomains -file /etc/sekisho/baddomains.txt add typo.example\n",
			"\n  sekisho baddomains -file /etc/sekisho/baddomains.txt add gone.example\n",
			"listed.example", "(on the bad list)", "foo.invalid",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "add listed.example") || strings.Contains(text, "add foo.invalid") {
			t.Errorf("an add line for a domain already bad:\n%s", text)
		}
		// W46 against W45: greylist 1 attempt after 5 is -80%; W48's
		// accepted after a week of none is "new".
		w46 := text[strings.Index(text, "== 2026-W46"):strings.Index(text, "== 2026-W45")]
		if !regexpLine(w46, "greylist", "1", "-80%", "1", "-50%") {
			t.Errorf("W46 greylist line wrong:\n%s", w46)
		}
		w48 := text[strings.Index(text, "== 2026-W48"):strings.Index(text, "== 2026-W47")]
		if !regexpLine(w48, "accepted", "2", "new", "1", "new") {
			t.Errorf("W48 accepted line wrong:\n%s", w48)
		}
	})
}

// regexpLine reports whether text has a line of exactly these fields.
func regexpLine(text string, fields ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.Join(strings.Fields(l), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestCSVOneRowPerWeekAndCause(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		c := newCounter(b.store, testenv.NewClock())
		script(t, c)
		var buf bytes.Buffer
		if err := build(t, b.store).WriteCSV(&buf); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 1+4*len(report.Causes) || lines[0] != "week,start,end,cause,attempts,distinct,so_far" {
			t.Fatalf("csv: %d lines, header %q", len(lines), lines[0])
		}
		for _, want := range []string{"2026-W45,2026-11-02,2026-11-08,greylist,5,2,no", "2026-W47,2026-11-16,2026-11-22,greylist,0,0,no"} {
			if !strings.Contains(buf.String(), want+"\n") {
				t.Errorf("csv lacks %q:\n%s", want, buf.String())
			}
		}
	})
}

func TestStoreDownCountsKeptAndFlushedWhenBack(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		c := newCounter(b.store, testenv.NewClock())
		b.down()
		c.Record(ev("2026-11-03 08:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example"))
		c.Record(nx("2026-11-03 08:00:00", clientD, "a@typo.example", "typo.example"))
		if err := c.Flush(context.Background()); err == nil {
			t.Fatal("flush to a store that is down succeeded")
		}
		if n := c.Pending(); n != 4 { // two triplets, a domain, its sender
			t.Errorf("pending after a failed flush = %d, want 4", n)
		}
		// More while down; the same triplet is not counted twice.
		c.Record(ev("2026-11-03 09:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example"))
		if err := c.Flush(context.Background()); err == nil {
			t.Fatal("second flush to a store that is down succeeded")
		}
		if _, err := report.Build(context.Background(), b.store, report.Options{Weeks: scriptWeeks[:1]}); err == nil {
			t.Error("Build on a store that is down succeeded")
		}
		b.up()
		flush(t, c)
		if n := c.Pending(); n != 0 {
			t.Errorf("pending after the store came back = %d", n)
		}
		j := decodeJSON(t, build(t, b.store))
		got := map[string][2]int64{}
		for _, r := range j.Rows {
			if r.Week == "2026-W45" {
				got[r.Cause] = [2]int64{r.Attempts, r.Distinct}
			}
		}
		if got[report.Greylist] != [2]int64{2, 1} || got[report.NXDomain] != [2]int64{1, 1} {
			t.Errorf("after the outage: greylist %v nxdomain %v, want [2 1] [1 1]", got[report.Greylist], got[report.NXDomain])
		}
		if c.Dropped() != 0 {
			t.Errorf("dropped %d", c.Dropped())
		}
	})
}

// blockingStore blocks AddCounts until release is closed.
type blockingStore struct {
	greylist.Counts
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) AddCounts(ctx context.Context, b greylist.CountBatch) error {
	s.entered <- struct{}{}
	<-s.release
	return errDown
}

func TestBufferFullDropsAndCountsNeverBlocks(t *testing.T) {
	s := &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
	c := report.NewCounter(s, report.CounterOptions{MaxPending: 3, FlushInterval: -1, SweepInterval: -1})
	rcpt := func(i int) report.Event {
		return ev("2026-11-03 08:00:00", report.Greylist, "smtp", clientA, "bob@example.net", fmt.Sprintf("u%d@campus.example", i))
	}
	c.Record(rcpt(0))
	// A flush stuck in the store: Record must go on without waiting.
	done := make(chan error)
	go func() { done <- c.Flush(context.Background()) }()
	<-s.entered
	for i := 1; i <= 5; i++ {
		c.Record(rcpt(i)) // returns although the store does not answer
	}
	c.Record(rcpt(1)) // a triplet already buffered is no drop
	if got := c.Dropped(); got != 2 {
		t.Errorf("dropped = %d, want 2 (5 new triplets, room for 3)", got)
	}
	close(s.release)
	if err := <-done; err == nil {
		t.Fatal("flush succeeded")
	}
	// The failed batch's triplet had no room left either.
	if got, pend := c.Dropped(), c.Pending(); got != 3 || pend != 3 {
		t.Errorf("after the failed flush: dropped %d pending %d, want 3 and 3", got, pend)
	}
}

// TestRecordBeyondTheQueueLosesNothing: Record only queues; many more
// events than the queue holds between two folds (a burst) are folded by
// Record itself once the queue is full, and every one is counted.
func TestRecordBeyondTheQueueLosesNothing(t *testing.T) {
	c := report.NewCounter(nopStore{}, report.CounterOptions{FlushInterval: -1, SweepInterval: -1})
	const n = 20_000 // several queues' worth, recorded in far less than a fold interval
	for i := range n {
		c.Record(ev("2026-11-03 08:00:00", report.RelayDenied, "smtp", clientA, "bob@example.net", fmt.Sprintf("u%d@elsewhere.example", i)))
	}
	if got := c.Pending(); got != n {
		t.Errorf("pending %d triplets, want %d", got, n)
	}
	if got := c.Dropped(); got != 0 {
		t.Errorf("dropped %d", got)
	}
}

func TestRetentionSweepsOldWeeks(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		clock := testenv.NewClock() // 2026-11-22, in W47
		c := report.NewCounter(b.store, report.CounterOptions{Now: clock.Now, FlushInterval: -1, SweepInterval: -1, Keep: 14 * 24 * time.Hour})
		c.Record(ev("2026-11-03 08:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example")) // W45
		c.Record(ev("2026-11-10 08:00:00", report.Greylist, "smtp", clientA, "bob@example.net", "alice@campus.example")) // W46
		flush(t, c)
		if b.redis != nil {
			// Redis forgets by itself: a week's keys expire Keep after
			// its end (PEXPIREAT on Redis' real clock, so real times here).
			now := time.Now()
			c.Record(report.Event{Time: now, Cause: report.Accepted, Listener: "smtp", Client: clientA})
			flush(t, c)
			end := report.Monday(now).Add(7 * 24 * time.Hour)
			want := time.Until(end.Add(14 * 24 * time.Hour))
			ttl, err := b.redis.Do("PTTL", "sekisho:report:{"+report.WeekName(now)+"}:a")
			ms, _ := strconv.ParseInt(strings.TrimPrefix(ttl, ":"), 10, 64)
			if got := time.Duration(ms) * time.Millisecond; err != nil || got > want+time.Minute || got < want-time.Minute {
				t.Fatalf("PTTL = %q, %v: want about %v", ttl, err, want)
			}
			return
		}
		// now − 14 days = 2026-11-08, in W45: W45 is kept whole.
		if n, err := c.Sweep(context.Background()); err != nil || n != 0 {
			t.Fatalf("sweep = %d, %v; want nothing deleted yet", n, err)
		}
		clock.Advance(24 * time.Hour) // now − 14 days is in W46
		n, err := c.Sweep(context.Background())
		if err != nil || n == 0 {
			t.Fatalf("sweep = %d, %v; want W45 deleted", n, err)
		}
		j := decodeJSON(t, build(t, b.store))
		got := map[string]int64{}
		for _, r := range j.Rows {
			if r.Cause == report.Greylist {
				got[r.Week] = r.Attempts
			}
		}
		if got["2026-W45"] != 0 || got["2026-W46"] != 1 {
			t.Errorf("greylist attempts after the sweep: %v, want W45 gone, W46 1", got)
		}
	})
}

func TestCloseFlushes(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend) {
		c := report.NewCounter(b.store, report.CounterOptions{Keep: 100 * 365 * 24 * time.Hour}) // background flushing on, 5 s: Close must not wait for it
		c.Record(ev("2026-11-03 08:00:00", report.Accepted, "smtp", clientA, "bob@example.net", "alice@campus.example"))
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		w, err := b.store.ReadCounts(context.Background(), "2026-W45", 10)
		if err != nil || w.Causes[report.Accepted].Attempts != 1 {
			t.Fatalf("after Close: %+v, %v", w, err)
		}
	})
}

func TestWeeks(t *testing.T) {
	for _, c := range []struct{ t, week, monday string }{
		{"2026-11-08 23:59:59", "2026-W45", "2026-11-02"},
		{"2026-11-09 00:00:00", "2026-W46", "2026-11-09"},
		{"2027-01-03 23:59:59", "2026-W53", "2026-12-28"},
		{"2027-01-04 00:00:00", "2027-W01", "2027-01-04"},
		{"1969-12-31 12:00:00", "1970-W01", "1969-12-29"},
	} {
		tm := at(c.t)
		if got := report.WeekName(tm); got != c.week {
			t.Errorf("WeekName(%s) = %s, want %s", c.t, got, c.week)
		}
		if got := report.DateString(report.Monday(tm)); got != c.monday {
			t.Errorf("Monday(%s) = %s, want %s", c.t, got, c.monday)
		}
	}
	// A local time zone does not move the week: 00:30 on Monday in Tokyo is
	// Sunday 15:30 UTC.
	tokyo := time.FixedZone("JST", 9*3600)
	if got := report.WeekName(time.Date(2026, 11, 9, 0, 30, 0, 0, tokyo)); got != "2026-W45" {
		t.Errorf("Tokyo Monday 00:30 = %s, want 2026-W45 (UTC)", got)
	}
	ws := report.LastWeeks(at("2026-11-22 10:00:00"), 9) // a Sunday: W47 is not complete
	if len(ws) != 9 || report.WeekName(ws[8]) != "2026-W46" || report.WeekName(ws[0]) != "2026-W38" {
		t.Errorf("LastWeeks = %v", ws)
	}
	// The default weeks: the same, then the week in progress.
	ws = report.RecentWeeks(at("2026-11-22 10:00:00"), 9)
	if len(ws) != 10 || report.WeekName(ws[9]) != "2026-W47" || report.WeekName(ws[8]) != "2026-W46" || report.WeekName(ws[0]) != "2026-W38" {
		t.Errorf("RecentWeeks = %v", ws)
	}
}

func BenchmarkRecord(b *testing.B) {
	c := report.NewCounter(nopStore{}, report.CounterOptions{FlushInterval: -1, SweepInterval: -1, MaxPending: 1 << 30})
	events := make([]report.Event, 1024)
	now := time.Now()
	for i := range events {
		events[i] = report.Event{Time: now, Cause: report.Greylist, Listener: "smtp",
			Client: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Sender: "bob@example.net", Recipient: fmt.Sprintf("u%d@campus.example", i%64)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Record(events[i%len(events)])
	}
}

type nopStore struct{ greylist.Counts }
