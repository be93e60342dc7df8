package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testredis"
	"sekisho/report"
)

// Redis Sentinel failover end to end (issue 9): a real master, a real
// replica and three real Sentinels (quorum 2) on loopback; two sekisho
// processes find the master through the Sentinels (store.redis.master_name,
// go-redis' failover client), gateway A under on_store_error accept (as in
// deploy/mx-pair.yaml) and gateway T under on_store_error tempfail. A client
// keeps sending mail to both while the master gets SIGKILL; the Sentinels
// promote the replica and both gateways go on with the greylist and the
// report counts on it.

const (
	stMasterName = "sekisho"
	stDelay      = 2 * time.Second        // checks.greylist.delay
	stFlush      = 100 * time.Millisecond // report.flush_interval
	stPace       = 50 * time.Millisecond  // one session per stream this often
	// stRecovered is how many sessions in a row after the kill must show a
	// working store before a stream counts as recovered.
	stRecovered = 5
	// stSwitchBound bounds how long after the Sentinels name the new master
	// the gateways may still not use it. go-redis asks its Sentinel for the
	// master at every dial, but after PoolSize failed dials (10 per CPU)
	// its pool stops dialing and probes once a second: up to a second
	// late, plus a session or two; 5 s is generous.
	stSwitchBound = 5 * time.Second
)

// stGateway is one gateway of the test and the action it was configured
// with.
type stGateway struct {
	name   string // "a" (accept) or "t" (tempfail): part of its senders
	accept bool   // on_store_error: accept; else tempfail
	gw     *harness.Gateway
}

// stReply is one RCPT reply.
type stReply struct {
	code int
	text string // with the enhanced status code in front
}

func (r stReply) String() string { return fmt.Sprintf("%d %s", r.code, r.text) }

func (r stReply) greylisted() bool { return r.code == 451 && strings.HasPrefix(r.text, "4.7.1 ") }

func (r stReply) storeUnavailable() bool { return r.code == 451 && strings.HasPrefix(r.text, "4.3.0 ") }

// stSession is one session as the client saw it.
type stSession struct {
	start, end time.Time
	rcpts      []stReply
	delivered  bool // DATA got 250
}

// stTally is what the gateways must have counted, from the client's side:
// one entry per decision, with the time the client had its reply.
type stTally struct {
	mu     sync.Mutex
	causes []string
	at     []time.Time
}

func (t *stTally) add(at time.Time, cause string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < n; i++ {
		t.causes = append(t.causes, cause)
		t.at = append(t.at, at)
	}
}

// count is the number of decisions of cause, all of them or (within)
// those whose reply came in [from, to].
func (t *stTally) count(cause string, within bool, from, to time.Time) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for i, c := range t.causes {
		if c == cause && (!within || (!t.at[i].Before(from) && !t.at[i].After(to))) {
			n++
		}
	}
	return n
}

// stSend makes one session with net/smtp from the outside address to addr
// with a transaction per recipient (MAIL FROM from, the RCPT, DATA if it
// was accepted: it must get 250, then the next MAIL; RSET if it was not),
// so that each recipient has its own greylisting decision (the recipients
// of one transaction share one: docs/checks-greylist.md). It tallies the
// decisions as the gateway counts them: a greylisting deferral under
// greylist, the store's 451 4.3.0 under other_tempfail, each delivered
// recipient under accepted. It fails (an error, not the test: it runs in
// goroutines) on any 5xx and on any reply that no greylisting outcome
// explains.
func stSend(addr, from string, rcpts []string, tally *stTally) (stSession, error) {
	s := stSession{start: time.Now()}
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(outside)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return s, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, "mx.campus.test")
	if err != nil {
		return s, fmt.Errorf("banner: %w", err)
	}
	if err := c.Hello("client.example.org"); err != nil {
		return s, fmt.Errorf("EHLO: %w", err)
	}
	for _, to := range rcpts {
		if err := c.Mail(from); err != nil {
			return s, fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
		}
		err := c.Rcpt(to)
		var te *textproto.Error
		switch {
		case err == nil:
			s.rcpts = append(s.rcpts, stReply{250, "ok"})
			w, err := c.Data()
			if err != nil {
				return s, fmt.Errorf("DATA: %w", err)
			}
			fmt.Fprintf(w, "From: <%s>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nSubject: sentinel test\r\n\r\nbody\r\n", from)
			if err := w.Close(); err != nil {
				return s, fmt.Errorf("end of DATA: %w, want 250", err)
			}
			s.delivered = true
			tally.add(time.Now(), report.Accepted, 1)
			continue
		case !errors.As(err, &te):
			return s, fmt.Errorf("RCPT TO:<%s>: %w", to, err)
		}
		r := stReply{te.Code, te.Msg}
		s.rcpts = append(s.rcpts, r)
		switch {
		case r.greylisted():
			tally.add(time.Now(), report.Greylist, 1)
		case r.storeUnavailable():
			tally.add(time.Now(), report.OtherTempfail, 1)
		default: // a 5xx above all: mail must never be refused
			return s, fmt.Errorf("RCPT TO:<%s>: %v, want 250, 451 4.7.1 or 451 4.3.0", to, r)
		}
		if err := c.Reset(); err != nil {
			return s, fmt.Errorf("RSET: %w", err)
		}
	}
	c.Quit()
	s.end = time.Now()
	return s, nil
}

// stStoreUp says whether a stream session's replies are those of a working
// store (the passed triplet accepted, the new one greylisted), or of the
// store down under the gateway's on_store_error, and fails on any other
// mix: A must accept both un-greylisted, T must defer both with 451 4.3.0.
func stStoreUp(g *stGateway, s stSession) (bool, error) {
	known, fresh := s.rcpts[0], s.rcpts[1]
	switch {
	case known.code == 250 && fresh.greylisted():
		return true, nil
	case g.accept && known.code == 250 && fresh.code == 250:
		return false, nil
	case !g.accept && known.storeUnavailable() && fresh.storeUnavailable():
		return false, nil
	case !g.accept && (known.storeUnavailable() || fresh.storeUnavailable()) && (known.code == 250 || fresh.greylisted()):
		return false, nil // the store came back (or went) between the two RCPTs
	}
	return false, fmt.Errorf("replies %v, %v: neither a working store nor on_store_error accept=%v", known, fresh, g.accept)
}

// stStream is one client sending mail to one gateway every stPace: from
// stream-<name>@example.org to the triplet that passed before the kill and
// to a new recipient every time.
type stStream struct {
	g         *stGateway
	sessions  []stSession
	errs      []error
	recovered chan struct{} // closed after stRecovered store-up sessions begun after killed
}

func (st *stStream) run(killed, stop <-chan struct{}, ready chan<- struct{}, tally *stTally) {
	tick := time.NewTicker(stPace)
	defer tick.Stop()
	from := "stream-" + st.g.name + "@example.org"
	inARow := 0
	for i := 0; ; i++ {
		afterKill := false
		select {
		case <-killed:
			afterKill = true
		default:
		}
		s, err := stSend(st.g.gw.SMTP, from, []string{"known@campus.test", fmt.Sprintf("new-%s-%d@campus.test", st.g.name, i)}, tally)
		if err == nil {
			var up bool
			up, err = stStoreUp(st.g, s)
			st.sessions = append(st.sessions, s)
			switch {
			case err != nil:
			case up && afterKill:
				if inARow++; inARow == stRecovered {
					close(st.recovered)
				}
			case !up:
				inARow = 0
			}
		}
		if err != nil && len(st.errs) < 20 {
			st.errs = append(st.errs, fmt.Errorf("gateway %s, session %d: %w", st.g.name, i, err))
		}
		if i == 3 {
			close(ready)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// TestSentinelFailover: SIGKILL of the Redis master under mail. No client
// ever gets a 5xx; until go-redis reaches the promoted replica gateway A
// accepts new triplets un-greylisted and gateway T defers everything with
// 451 4.3.0, exactly as their on_store_error says; once the Sentinels name
// the replica (SENTINEL GET-MASTER-ADDR-BY-NAME), both greylist on it within
// stSwitchBound, with the state written before the kill: a triplet first
// seen before the kill passes, a new one is greylisted and then passes. The
// report counts of before, during and after the outage are all in the new
// master, within one report flush of the kill. How long mail was deferred
// is logged.
//
// Not parallel: its figures go into docs/checks-greylist.md, and the other
// tests' load would blur them.
func TestSentinelFailover(t *testing.T) {
	testStart := time.Now()
	master := testredis.Start(t)
	replica := testredis.StartReplica(t, master)
	sentinels := testredis.StartSentinels(t, master, stMasterName, 3, testredis.SentinelOptions{
		Quorum: 2, DownAfter: time.Second, FailoverTimeout: 3 * time.Second, Replicas: 1})
	var sentinelAddrs []string
	for _, s := range sentinels {
		sentinelAddrs = append(sentinelAddrs, s.Addr())
	}

	hop := harness.StartNextHop(t, false)
	start := func(name string, accept bool) *stGateway {
		action := "tempfail"
		if accept {
			action = "accept"
		}
		cfg := site{
			hostname: "mx-" + name + ".campus.test",
			routes:   []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
			checks: fmt.Sprintf("greylist: {exempt: [], delay: %v, retry_window: 1m, auto_whitelist: 0, on_store_error: %s}\n",
				stDelay, action) + greylistOnly,
			extra: fmt.Sprintf("store: {redis: {addrs: [%s], master_name: %s}}\nreport: {flush_interval: %v}\n",
				quoteList(sentinelAddrs), stMasterName, stFlush),
		}.yaml(t)
		return &stGateway{name: name, accept: accept, gw: harness.Start(t, cfg)}
	}
	gws := []*stGateway{start("a", true), start("t", false)}
	tally := &stTally{}

	send := func(g *stGateway, from, to string) stSession {
		t.Helper()
		s, err := stSend(g.gw.SMTP, from, []string{to}, tally)
		if err != nil {
			t.Fatalf("gateway %s: %v", g.name, err)
		}
		return s
	}
	wantGreylisted := func(g *stGateway, s stSession, what string) {
		t.Helper()
		if !s.rcpts[0].greylisted() {
			t.Fatalf("gateway %s, %s: %v, want 451 4.7.1 greylisted", g.name, what, s.rcpts[0])
		}
	}
	wantDelivered := func(g *stGateway, s stSession, what string) {
		t.Helper()
		if !s.delivered {
			t.Fatalf("gateway %s, %s: %v, want 250 and the message delivered", g.name, what, s.rcpts[0])
		}
	}

	// Before the kill, through the master: each gateway's stream triplet
	// is greylisted and passes after the delay; a second triplet is only
	// greylisted (first seen), to be retried after the failover.
	for _, g := range gws {
		wantGreylisted(g, send(g, "stream-"+g.name+"@example.org", "known@campus.test"), "stream triplet, first attempt")
		wantGreylisted(g, send(g, "old-"+g.name+"@example.org", "old@campus.test"), "triplet seen before the kill")
	}
	firstSeen := time.Now()
	glWaitUntil(glAfterDelay(firstSeen, stDelay))
	for _, g := range gws {
		wantDelivered(g, send(g, "stream-"+g.name+"@example.org", "known@campus.test"), "stream triplet after the delay")
	}
	if addr, err := sentinels[0].MasterAddrByName(stMasterName); err != nil || addr != master.Addr() {
		t.Fatalf("before the kill the sentinel names %q (%v), want the master %s", addr, err, master.Addr())
	}
	testredis.WaitReplicated(t, master, replica, 10*time.Second)

	// The client keeps sending to both gateways; the master is killed.
	killed, stop := make(chan struct{}), make(chan struct{})
	streams := make([]*stStream, len(gws))
	var wg sync.WaitGroup
	for i, g := range gws {
		streams[i] = &stStream{g: g, recovered: make(chan struct{})}
		ready := make(chan struct{})
		wg.Add(1)
		go func(st *stStream) {
			defer wg.Done()
			st.run(killed, stop, ready, tally)
		}(streams[i])
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatalf("stream to gateway %s never got going", g.name)
		}
	}
	stopStreams := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopStreams()

	killAt := time.Now()
	master.Kill() // SIGKILL of the redis-server process
	close(killed)

	// Wait for the Sentinels to promote the replica.
	var firstNamed, allNamed time.Duration
	for _, s := range sentinels {
		for {
			addr, err := s.MasterAddrByName(stMasterName)
			if err == nil && addr == replica.Addr() {
				break
			}
			if time.Since(killAt) > 40*time.Second {
				t.Fatalf("sentinel %s still names %q (%v) 40 s after the kill", s.Addr(), addr, err)
			}
			time.Sleep(20 * time.Millisecond) // the Sentinel has no other signal than asking
		}
		if firstNamed == 0 {
			firstNamed = time.Since(killAt)
		}
	}
	allNamed = time.Since(killAt)
	if role, err := replica.Info("role"); err != nil || role != "master" {
		t.Fatalf("the replica's role after the failover: %q, %v", role, err)
	}

	// Both streams see a working store again, on the new master.
	for _, st := range streams {
		select {
		case <-st.recovered:
		case <-time.After(30 * time.Second):
			stopStreams()
			t.Fatalf("gateway %s did not greylist again within 30 s of the Sentinels' switch (%d sessions, errors %v)",
				st.g.name, len(st.sessions), st.errs)
		}
	}
	stopStreams()

	// (1) No 5xx, and the outage's replies are on_store_error's.
	figures := map[string]time.Duration{}
	for _, st := range streams {
		for _, err := range st.errs {
			t.Error(err)
		}
		var down, delivered int
		var firstBack, firstDelivered time.Duration
		var lastDelivered time.Time
		var longestGap, slowest time.Duration
		for _, s := range st.sessions {
			up, _ := stStoreUp(st.g, s)
			if s.end.Before(killAt) && !up {
				t.Errorf("gateway %s: a session that ended before the kill saw the store down: %v", st.g.name, s.rcpts)
			}
			if !s.start.After(killAt) {
				if s.delivered {
					lastDelivered = s.end
				}
				continue
			}
			slowest = max(slowest, s.end.Sub(s.start))
			if !up {
				down++
			} else if firstBack == 0 {
				firstBack = s.end.Sub(killAt)
			}
			if s.delivered {
				delivered++
				if firstDelivered == 0 {
					firstDelivered = s.end.Sub(killAt)
				}
				if gap := s.end.Sub(lastDelivered); gap > longestGap {
					longestGap = gap
				}
				lastDelivered = s.end
			}
		}
		if down == 0 {
			t.Errorf("gateway %s: no session after the kill saw the store down: the outage was not exercised", st.g.name)
		}
		if firstBack > allNamed+stSwitchBound {
			t.Errorf("gateway %s greylisted again %v after the kill, more than %v after the Sentinels named the new master (%v)",
				st.g.name, firstBack, stSwitchBound, allNamed)
		}
		figures[st.g.name+" back"] = firstBack
		figures[st.g.name+" first delivered"] = firstDelivered
		figures[st.g.name+" gap"] = longestGap
		t.Logf("gateway %s (on_store_error %s): %d sessions after the kill, %d with the store down, %d delivered; "+
			"greylisting again %v after the kill; first message accepted %v after the kill; longest wait between accepted messages %v; "+
			"slowest session %v",
			st.g.name, map[bool]string{true: "accept", false: "tempfail"}[st.g.accept], countAfter(st.sessions, killAt), down, delivered,
			firstBack.Round(time.Millisecond), firstDelivered.Round(time.Millisecond), longestGap.Round(time.Millisecond),
			slowest.Round(time.Millisecond))
	}
	for _, g := range gws {
		g.gw.WaitLog(`msg="greylist store unavailable"`, 5*time.Second)
		g.gw.WaitLog(`msg="greylist store available again"`, 5*time.Second)
	}

	// (2) The greylist state survived: the triplet first seen before the
	// kill passes now, on the store (its pass is recorded on the new
	// master: not an on_store_error accept); a new triplet is greylisted,
	// then passes.
	for _, g := range gws {
		from := "old-" + g.name + "@example.org"
		wantDelivered(g, send(g, from, "old@campus.test"), "triplet seen before the kill, retried after the failover")
		key := "sekisho:greylist:{127.0.0.0/24}:t:" + from + "\x00old@campus.test"
		if n, err := replica.Do("HGET", key, "n"); err != nil || n != "$1\n1" {
			t.Errorf("gateway %s: the new master's entry of the triplet seen before the kill has passes %q (%v), want 1", g.name, n, err)
		}
	}
	for _, g := range gws {
		wantGreylisted(g, send(g, "fresh-"+g.name+"@example.org", "fresh@campus.test"), "new triplet after the failover")
	}
	newSeen := time.Now()
	glWaitUntil(glAfterDelay(newSeen, stDelay))
	for _, g := range gws {
		wantDelivered(g, send(g, "fresh-"+g.name+"@example.org", "fresh@campus.test"), "new triplet after the failover, after the delay")
	}

	// (3) The counts: SIGTERM writes what is left; the report, read
	// through the Sentinels, has every decision of the run. Tolerance:
	// the master acknowledges a flush before its replica has it
	// (replication is asynchronous), so the flush the master took last
	// before it died may be missing, or, if its reply was lost after the
	// replica had it, written twice; either way only decisions made within
	// about one flush interval of the kill.
	for _, g := range gws {
		g.gw.Signal(syscall.SIGTERM)
		if err := g.gw.Wait(30 * time.Second); err != nil {
			t.Fatalf("gateway %s did not stop: %v", g.name, err)
		}
	}
	today := time.Now().UTC().Format("2006-01-02")
	from := testStart.UTC().Format("2006-01-02")
	got, out := reportAttempts(t, gws[0].gw, from, today)
	// A decision is counted before its reply leaves, so one in the last
	// flush may reach the client a moment after the kill.
	winFrom, winTo := killAt.Add(-2*stFlush-500*time.Millisecond), killAt.Add(250*time.Millisecond)
	for _, cause := range report.Causes {
		want := tally.count(cause, false, time.Time{}, time.Time{})
		tolerance := tally.count(cause, true, winFrom, winTo)
		diff := got[cause] - want
		if diff < -tolerance || diff > tolerance {
			t.Errorf("report: %s counted %d times, the client saw %d (tolerance ±%d: the decisions within one flush of the kill)\n%s",
				cause, got[cause], want, tolerance, out)
		}
		if want > 0 || got[cause] != 0 {
			t.Logf("report: %s %d, client %d, difference %d (tolerance ±%d)", cause, got[cause], want, diff, tolerance)
		}
	}
	if tally.count(report.OtherTempfail, false, time.Time{}, time.Time{}) == 0 {
		t.Error("no 451 4.3.0 was counted: gateway T never deferred for the store")
	}

	// (4) The figures, for docs/checks-greylist.md.
	t.Logf("FIGURES: sentinels name the replica %v (first) / %v (all three) after the kill; "+
		"T (tempfail) defers mail for %v (kill to first accepted message); A (accept) greylists again after %v, longest wait between accepted messages %v",
		firstNamed.Round(time.Millisecond), allNamed.Round(time.Millisecond), figures["t first delivered"].Round(time.Millisecond),
		figures["a back"].Round(time.Millisecond), figures["a gap"].Round(time.Millisecond))
}

// countAfter counts the sessions begun after at.
func countAfter(ss []stSession, at time.Time) int {
	n := 0
	for _, s := range ss {
		if s.start.After(at) {
			n++
		}
	}
	return n
}
