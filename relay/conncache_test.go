package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sekisho/internal/harness"
)

// The next-hop connection cache (conncache.go), against real next hops:
// harness.NextHop (go-smtp's server, counting its sessions) and RawNextHop
// (recording every command line of every connection).

// cachingRouter is newRouter with the connection cache on.
func cachingRouter(cache ConnectionCache, hops ...NextHop) *Router {
	r := newRouter(hops...)
	r.ConnectionCache = cache
	r.CacheCounters = &CacheCounters{}
	return r
}

// sendOne sends one message through r (call-ahead, RCPT, data, Close as
// the gateway does after the client's reply) and fails the test unless the
// next hop said 250.
func sendOne(t *testing.T, r *Router, subject string) {
	t.Helper()
	tx := beginRcpt(t, r, Envelope{From: sender})
	msg := "Subject: " + subject + "\r\n\r\nHello.\r\n"
	if err := tx.Data(context.Background(), strings.NewReader(msg)); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	tx.Close()
}

// subjects are the Subject fields of the messages a next hop accepted, in
// order.
func subjects(msgs []harness.Message) []string {
	var out []string
	for _, m := range msgs {
		s := string(m.Data)
		if i := strings.Index(s, "Subject: "); i >= 0 {
			s = s[i+len("Subject: "):]
			s = s[:strings.Index(s, "\r\n")]
		}
		out = append(out, s)
	}
	return out
}

// Twenty messages in sequence through one route take one connection, to an
// SMTP and to an LMTP next hop, and every message arrives exactly once.
func TestConnectionReuseSequential(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		t.Run(map[bool]string{false: "smtp", true: "lmtp"}[lmtp], func(t *testing.T) {
			h := harness.StartNextHop(t, lmtp)
			scheme := map[bool]string{false: "smtp://", true: "lmtp://"}[lmtp]
			r := cachingRouter(ConnectionCache{IdleTime: time.Minute}, mustHop(t, scheme+h.Addr))
			defer r.Close()
			var want []string
			for i := range 20 {
				s := fmt.Sprintf("message %d", i)
				want = append(want, s)
				sendOne(t, r, s)
			}
			if n := h.Sessions(); n != 1 {
				t.Errorf("next hop saw %d connections for 20 messages, want 1", n)
			}
			if got := subjects(h.Messages()); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("next hop got %q, want each message once, in order: %q", got, want)
			}
			if n := r.CacheCounters.Reused.Load(); n != 19 {
				t.Errorf("reused %d times, want 19", n)
			}
		})
	}
}

// Sessions in parallel each get a connection of their own; all messages
// arrive once and the connections are reused (-race: the cache's locking).
func TestConnectionReuseConcurrent(t *testing.T) {
	h := harness.StartNextHop(t, false)
	r := cachingRouter(ConnectionCache{IdleTime: time.Minute}, smtpHop(t, h.Addr))
	defer r.Close()
	const workers, each = 8, 10
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tx, err := r.Begin(context.Background(), 0, "campus.test", Envelope{From: sender})
				if err == nil {
					err = tx.Rcpt(context.Background(), recipient, RcptDSN{})
				}
				if err == nil {
					err = tx.Data(context.Background(), strings.NewReader(fmt.Sprintf("Subject: %d-%d\r\n\r\nx\r\n", w, i)))
				}
				if err != nil {
					failed.Add(1)
					t.Error(err)
					continue
				}
				tx.Close()
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, s := range subjects(h.Messages()) {
		seen[s]++
	}
	if len(seen) != workers*each || failed.Load() != 0 {
		t.Fatalf("%d distinct messages arrived (%d failed), want %d", len(seen), failed.Load(), workers*each)
	}
	for s, n := range seen {
		if n != 1 {
			t.Errorf("message %s arrived %d times", s, n)
		}
	}
	if n := h.Sessions(); n > workers {
		t.Errorf("next hop saw %d connections for %d messages from %d sessions at a time, want at most %d", n, workers*each, workers, workers)
	}
}

// A cached connection the next hop closed while it was idle (an idle
// timeout of its own, a restart) is noticed at MAIL: the message goes on a
// fresh connection in the same call-ahead, and the client hears nothing of
// it.
func TestConnectionReuseNextHopClosedIdle(t *testing.T) {
	h := harness.StartNextHop(t, false)
	r := cachingRouter(ConnectionCache{IdleTime: time.Minute}, smtpHop(t, h.Addr))
	defer r.Close()
	sendOne(t, r, "first")
	h.DropConnections()
	sendOne(t, r, "second")
	sendOne(t, r, "third")
	if got := subjects(h.Messages()); strings.Join(got, "|") != "first|second|third" {
		t.Errorf("next hop got %q, want first, second, third once each", got)
	}
	if n := h.Sessions(); n != 2 {
		t.Errorf("next hop saw %d connections, want 2 (the dropped one, then a fresh one reused)", n)
	}
	if n := r.CacheCounters.Dead.Load(); n != 1 {
		t.Errorf("%d cached connections found dead, want 1", n)
	}
}

// A cached connection answered with 421 (or hung up on) at MAIL is dropped
// and the message goes on a fresh connection.
func TestConnectionReuseDeadAtMail(t *testing.T) {
	for _, reply := range []string{"421 4.3.2 shutting down", harness.HangUp} {
		t.Run(strings.Trim(reply, "\x00"), func(t *testing.T) {
			var mails atomic.Int64
			h := startHop(t, func(h *harness.RawNextHop) {
				h.Reply = func(line string) string {
					if verbOf(line) == "MAIL" && mails.Add(1) == 2 {
						return reply // the second MAIL: on the cached connection
					}
					return ""
				}
			})
			r := cachingRouter(ConnectionCache{IdleTime: time.Minute}, smtpHop(t, h.Addr))
			defer r.Close()
			sendOne(t, r, "first")
			sendOne(t, r, "second")
			if n := len(h.Messages()); n != 2 {
				t.Fatalf("next hop accepted %d messages, want 2", n)
			}
			if n := h.Sessions(); n != 2 {
				t.Errorf("next hop saw %d connections, want 2", n)
			}
			if n := r.CacheCounters.Dead.Load(); n != 1 {
				t.Errorf("%d cached connections found dead, want 1", n)
			}
		})
	}
}

// An idle connection gets QUIT once IdleTime is over, not before.
func TestConnectionCacheIdleTime(t *testing.T) {
	h := startHop(t)
	const idle = time.Second
	r := cachingRouter(ConnectionCache{IdleTime: idle}, smtpHop(t, h.Addr))
	defer r.Close()
	sendOne(t, r, "only")
	given := time.Now()
	if hasLine(h.Lines(), "QUIT") {
		t.Fatal("QUIT at once after the message: the connection was not kept")
	}
	if n := r.cache.idleTotal(); n != 1 {
		t.Fatalf("%d idle connections in the cache after the message, want 1", n)
	}
	if !h.WaitLine("QUIT", 10*time.Second) {
		t.Fatalf("no QUIT after the idle time; transcripts %q", h.Transcripts())
	}
	if d := time.Since(given); d < idle-100*time.Millisecond {
		t.Errorf("QUIT %v after the message, before the idle time %v", d, idle)
	}
	if !h.WaitEnded(1, 10*time.Second) {
		t.Fatal("the connection was not closed after QUIT")
	}
	if n := r.cache.idleTotal(); n != 0 {
		t.Errorf("%d idle connections left in the cache", n)
	}
	// The next message dials anew.
	sendOne(t, r, "later")
	if n := h.Sessions(); n != 2 {
		t.Errorf("next hop saw %d connections, want 2", n)
	}
}

func hasLine(lines []string, verb string) bool {
	for _, l := range lines {
		if verbOf(l) == verb {
			return true
		}
	}
	return false
}

// A connection carries at most MaxTransactions transactions, then gets QUIT.
func TestConnectionCacheReuseLimit(t *testing.T) {
	h := startHop(t)
	r := cachingRouter(ConnectionCache{IdleTime: time.Minute, MaxTransactions: 3}, smtpHop(t, h.Addr))
	defer r.Close()
	for i := range 7 {
		sendOne(t, r, fmt.Sprint(i))
	}
	if n := h.Sessions(); n != 3 {
		t.Errorf("next hop saw %d connections for 7 messages at 3 per connection, want 3", n)
	}
	if !h.WaitEnded(2, 10*time.Second) {
		t.Fatalf("the two full connections were not closed; transcripts %q", h.Transcripts())
	}
	for _, tr := range h.Transcripts()[:2] {
		if got := strings.Count(tr, "MAIL FROM"); got != 3 {
			t.Errorf("a full connection carried %d transactions, want 3", got)
		}
		if !strings.HasSuffix(tr, "QUIT\r\n") {
			t.Errorf("a full connection did not end with QUIT: %q", tr)
		}
	}
	if n := len(h.Messages()); n != 7 {
		t.Errorf("next hop accepted %d messages, want 7", n)
	}
}

// A connection past MaxAge is not reused.
func TestConnectionCacheMaxAge(t *testing.T) {
	h := startHop(t)
	const age = 500 * time.Millisecond
	r := cachingRouter(ConnectionCache{IdleTime: time.Minute, MaxAge: age}, smtpHop(t, h.Addr))
	defer r.Close()
	start := time.Now()
	sendOne(t, r, "first")
	time.Sleep(age - time.Since(start) + 50*time.Millisecond) // the age is the condition under test
	sendOne(t, r, "second")
	if n := h.Sessions(); n != 2 {
		t.Errorf("next hop saw %d connections, want 2: the old one was past its age", n)
	}
	if !h.WaitEnded(1, 10*time.Second) || !strings.HasSuffix(h.Transcripts()[0], "QUIT\r\n") {
		t.Errorf("the old connection did not get QUIT: %q", h.Transcripts())
	}
}

// A transaction that did not end with 250 to the data never gives its
// connection back: a 4xx or 5xx at the dot, a failure mid-data, a
// recipient refused and the transaction abandoned.
func TestConnectionCacheOnlyAfterCleanData(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, r *Router)
	}{
		{"452 at the dot", func(t *testing.T, r *Router) {
			tx := beginRcpt(t, r, Envelope{From: sender})
			wantReply(t, tx.Data(context.Background(), strings.NewReader("Subject: refused\r\n\r\nx\r\n")), 452, [3]int{4, 3, 1})
			tx.Close()
		}},
		{"reader failed mid-data", func(t *testing.T, r *Router) {
			tx := beginRcpt(t, r, Envelope{From: sender})
			err := tx.Data(context.Background(), io.MultiReader(strings.NewReader("Subject: cut\r\n\r\n"), failingReader{}))
			if err == nil {
				t.Fatal("data with a failing reader succeeded")
			}
			tx.Abort()
			tx.Close()
		}},
		{"closed after RCPT", func(t *testing.T, r *Router) {
			tx := beginRcpt(t, r, Envelope{From: sender})
			tx.Close()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := startHop(t, func(h *harness.RawNextHop) {
				h.DataReply = func(wire []byte) string {
					if strings.Contains(string(wire), "Subject: refused") {
						return "452 4.3.1 disk full"
					}
					return ""
				}
			})
			r := cachingRouter(ConnectionCache{IdleTime: time.Minute}, smtpHop(t, h.Addr))
			defer r.Close()
			c.run(t, r)
			sendOne(t, r, "next")
			if n := h.Sessions(); n != 2 {
				t.Errorf("next hop saw %d connections, want 2: the first must not be reused", n)
			}
			if n := r.CacheCounters.Reused.Load(); n != 0 {
				t.Errorf("reused %d times, want 0", n)
			}
			if n := len(h.Messages()); n != 1 {
				t.Errorf("next hop accepted %d messages, want 1 (the next)", n)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("client gone") }

// Router.Close gives QUIT to the idle connections at once, and a
// transaction ending afterwards gets QUIT instead of being kept.
func TestConnectionCacheClose(t *testing.T) {
	h := startHop(t)
	r := cachingRouter(ConnectionCache{IdleTime: time.Hour}, smtpHop(t, h.Addr))
	first := beginRcpt(t, r, Envelope{From: sender})
	tx := beginRcpt(t, r, Envelope{From: sender}) // a second connection
	if err := first.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	first.Close() // idle now, while tx goes on
	r.Close()
	if !h.WaitEnded(1, 10*time.Second) || !strings.HasSuffix(h.Transcripts()[0], "QUIT\r\n") {
		t.Fatalf("the idle connection did not get QUIT at Close: %q", h.Transcripts())
	}
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if !h.WaitEnded(2, 10*time.Second) || !strings.HasSuffix(h.Transcripts()[1], "QUIT\r\n") {
		t.Fatalf("a transaction ending after Close was not given QUIT: %q", h.Transcripts())
	}
}

// A mirror route reuses each of its next hops' connections.
func TestConnectionReuseMirror(t *testing.T) {
	a, b := harness.StartNextHop(t, false), harness.StartNextHop(t, false)
	r := mirrorRouter(smtpHop(t, a.Addr), smtpHop(t, b.Addr))
	r.ConnectionCache = ConnectionCache{IdleTime: time.Minute}
	defer r.Close()
	for i := range 5 {
		sendOne(t, r, fmt.Sprint(i))
	}
	for _, h := range []*harness.NextHop{a, b} {
		if n, m := h.Sessions(), len(h.Messages()); n != 1 || m != 5 {
			t.Errorf("next hop %s: %d connections, %d messages; want 1 and 5", h.Addr, n, m)
		}
	}
}

// idleTotal is the number of idle connections in the cache, whatever
// their next hop (a key built from a route's next hop may differ from the
// dialled one's: its TLS mode is resolved when it is dialled).
func (c *connCache) idleTotal() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, conns := range c.idle {
		n += len(conns)
	}
	return n
}
