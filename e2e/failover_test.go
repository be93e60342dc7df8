package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testredis"
)

// Failover with nothing lost (DESIGN.md §1, issue 9): two sekisho processes
// share one redis-server (the greylist) and one next hop; a retrying client
// sends foMessages messages across both, and one gateway is killed with
// SIGKILL mid-run. Before-queue relay means every message reaches the next
// hop, and the only duplicates are messages whose 250 died with the process.

const (
	foMessages  = 1000 // messages sent
	foSenders   = 10   // concurrent senders
	foKillAfter = 300  // accepted messages before gateway A is killed
	foAttempts  = 50   // attempts per message before the client gives up
)

// foOutcome is how one delivery attempt ended, as the sending MTA sees it.
type foOutcome int

const (
	foDelivered foOutcome = iota // 250 at the end of DATA
	foTempfail                   // a 4xx, or a broken connection before the end of DATA was sent
	foLostReply                  // the whole message and its final dot were sent, and no reply came
	foRejected                   // a 5xx
)

// foRecord is what the client knows about one message.
type foRecord struct {
	attempts    int
	lostReplies int // attempts that sent the final dot and got no reply
	delivered   bool
	rejected    bool     // a 5xx came
	history     []string // one line per attempt, shown when something is wrong
}

var foMarkerRE = regexp.MustCompile(`(?m)^Message-ID: <fo-(\d+)@example\.org>\r$`)

// TestFailover: 1,000 messages, 10 senders alternating between two gateways
// that share a redis-server and a next hop; gateway A gets SIGKILL after 300
// accepted messages, while the next hop holds a message A relays. Every message reaches the next hop; each duplicate is a
// message one of whose attempts lost its final reply, and there are no more
// duplicates than lost replies; no message got a 5xx.
func TestFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rs := testredis.Start(t)
	hop := harness.StartNextHop(t, false)
	// A greylisting delay of 1 ms (the smallest the config takes): each
	// sender's first attempt is deferred and its retry, at the other
	// gateway, passes because both gateways share the triplet in Redis.
	cfg := func(hostname string) string {
		return site{
			hostname: hostname,
			routes:   []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
			checks:   "greylist: {exempt: [], delay: 1ms, retry_window: 1h, auto_whitelist: 0}\n" + greylistOnly,
			extra:    glRedisStore(rs.Addr()),
		}.yaml(t)
	}
	gwA := harness.Start(t, cfg("mx-a.campus.test"))
	gwB := harness.Start(t, cfg("mx-b.campus.test"))
	gws := [2]string{gwA.SMTP, gwB.SMTP}
	started := time.Now()

	var (
		accepted   atomic.Int64
		killOnce   sync.Once
		killNow    = make(chan struct{})
		killedAt   = make(chan int64, 1) // accepted count when A was dead
		greylisted atomic.Int64
	)
	killDone := make(chan struct{})
	go func() {
		defer close(killDone)
		<-killNow
		gwA.Kill()
		killedAt <- accepted.Load()
	}()
	// The count of accepted messages arms the kill; the first message
	// gateway A relays after that fires it, while the next hop holds the
	// message and has not answered yet: A dies with that message's 250,
	// the worst instant for a sender, which must then retry at B.
	hop.OnData = func(m harness.Message) error {
		if accepted.Load() >= foKillAfter && bytes.Contains(m.Data, []byte("\tby mx-a.campus.test (sekisho)")) {
			killOnce.Do(func() { close(killNow) })
			<-killDone
		}
		return nil
	}

	records := make([]foRecord, foMessages)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < foSenders; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			from := fmt.Sprintf("sender%d@example.org", w)
			for i := range jobs {
				rec := &records[i]
				for rec.attempts < foAttempts && !rec.delivered && !rec.rejected {
					// A new message starts at gateway i%2; every retry
					// goes to the other one, as an MTA tries its next MX.
					gw := (i + rec.attempts) % 2
					rec.attempts++
					out, detail := foAttempt(gws[gw], from, i)
					rec.history = append(rec.history, fmt.Sprintf("attempt %d at gateway %c: %s", rec.attempts, 'A'+gw, detail))
					switch out {
					case foDelivered:
						rec.delivered = true
						accepted.Add(1)
					case foLostReply:
						rec.lostReplies++
					case foTempfail:
						if strings.Contains(detail, "4.7.1") {
							greylisted.Add(1)
						}
					case foRejected:
						// A 5xx is final for an MTA: it bounces.
						rec.rejected = true
					}
				}
			}
		}(w)
	}
	for i := 0; i < foMessages; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	sent := time.Since(started)
	killOnce.Do(func() { close(killNow) }) // never before the end if fewer than foKillAfter were accepted
	<-killDone
	acceptedAtKill := <-killedAt

	// The next hop has each message before the gateway says 250, so it
	// holds them all by now.
	received := make([]int, foMessages)
	for _, m := range hop.Messages() {
		ms := foMarkerRE.FindStringSubmatch(string(m.Data))
		if ms == nil {
			t.Errorf("the next hop holds a message that is not one of the test's:\n%s", m.Data)
			continue
		}
		n, _ := strconv.Atoi(ms[1])
		received[n]++
	}

	var attempts, retries, lostReplies, duplicates, dupMessages, rejected, undelivered, missing int
	for i := range records {
		rec := &records[i]
		attempts += rec.attempts
		retries += rec.attempts - 1
		lostReplies += rec.lostReplies
		history := strings.Join(rec.history, "\n  ")
		if rec.rejected {
			rejected++
			t.Errorf("message %d got a 5xx:\n  %s", i, history)
		}
		if !rec.delivered {
			undelivered++
			t.Errorf("message %d never got 250 in %d attempts:\n  %s", i, rec.attempts, history)
		}
		switch n := received[i]; {
		case n == 0:
			missing++
			t.Errorf("LOST: message %d never reached the next hop:\n  %s", i, history)
		case n > 1:
			dupMessages++
			duplicates += n - 1
			t.Logf("message %d reached the next hop %d times:\n  %s", i, n, history)
			if n-1 > rec.lostReplies {
				t.Errorf("message %d reached the next hop %d times, but only %d of its attempts lost their final reply:\n  %s",
					i, n, rec.lostReplies, history)
			}
		}
	}
	t.Logf("failover: %d messages from %d senders in %v (%.0f msg/s; %v with the setup), gateway A killed at %d accepted",
		foMessages, foSenders, sent.Round(time.Millisecond), float64(foMessages)/sent.Seconds(),
		time.Since(start).Round(time.Millisecond), acceptedAtKill)
	t.Logf("failover: %d attempts, %d retries (%d greylisted), %d lost final replies, %d duplicates (%d messages), %d missing, %d 5xx, next hop: %d messages, %d aborted DATA",
		attempts, retries, greylisted.Load(), lostReplies, duplicates, dupMessages, missing, rejected, len(hop.Messages()), hop.Aborted())

	if acceptedAtKill >= foMessages {
		t.Errorf("gateway A was killed only after all %d messages were accepted: the failover was not exercised", foMessages)
	}
	if lostReplies == 0 || dupMessages == 0 {
		t.Errorf("the kill lost no final reply (%d) or made no duplicate (%d): it was meant to land on a message the next hop held", lostReplies, dupMessages)
	}
	if duplicates > lostReplies {
		t.Errorf("%d duplicates but only %d lost final replies", duplicates, lostReplies)
	}
	// Gateway B took the load alone after the kill, and lived.
	select {
	case <-gwB.Exited():
		t.Errorf("gateway B exited during the run")
	default:
	}
}

// foAttempt makes one delivery attempt of message n from 127.0.0.2 (outside
// trusted_networks) to gateway addr, as a sending MTA does: a new session,
// one message. It returns the outcome and the reply or error that decided
// it.
func foAttempt(addr, from string, n int) (foOutcome, string) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(outside)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return foTempfail, "connect: " + err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)

	steps := []struct{ cmd, want string }{
		{"", "220"},
		{"EHLO client.example.org", "250"},
		{"MAIL FROM:<" + from + ">", "250"},
		{"RCPT TO:<alice@campus.test>", "250"},
		{"DATA", "354"},
	}
	for _, s := range steps {
		if s.cmd != "" {
			if _, err := conn.Write([]byte(s.cmd + "\r\n")); err != nil {
				return foTempfail, s.cmd + ": write: " + err.Error()
			}
		}
		reply, err := foReadReply(r)
		if err != nil {
			return foTempfail, fmt.Sprintf("%q: no reply: %v", s.cmd, err)
		}
		if !strings.HasPrefix(reply, s.want) {
			return foClassify(reply), fmt.Sprintf("%q: %s", s.cmd, reply)
		}
	}
	msg := fmt.Sprintf("From: Bob <%s>\r\nTo: alice@campus.test\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"+
		"Subject: failover %d\r\nMessage-ID: <fo-%d@example.org>\r\n\r\nMessage number %d of the failover test.\r\n.\r\n", from, n, n, n)
	if _, err := conn.Write([]byte(msg)); err != nil {
		// Not all of it reached the kernel, so the final dot did not leave.
		return foTempfail, "message: write: " + err.Error()
	}
	reply, err := foReadReply(r)
	if err != nil {
		return foLostReply, "end of DATA: no reply: " + err.Error()
	}
	if !strings.HasPrefix(reply, "250") {
		return foClassify(reply), "end of DATA: " + reply
	}
	conn.Write([]byte("QUIT\r\n"))
	return foDelivered, "end of DATA: " + reply
}

// foClassify says what a reply that is not the one hoped for means.
func foClassify(reply string) foOutcome {
	if strings.HasPrefix(reply, "5") {
		return foRejected
	}
	return foTempfail
}

// foReadReply reads one SMTP reply (all its lines) and returns its last line.
func foReadReply(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return "", errors.New("malformed reply: " + line)
		}
		if len(line) == 3 || line[3] == ' ' {
			return line, nil
		}
	}
}
