package e2e

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"sekisho/internal/harness"
)

// TestSIGTERMStopsAccepting: after SIGTERM, while a slow DATA is still in
// flight (and keeps the process alive), a new client gets no banner: the
// listener is closed, so its connect is refused, or — in the moment between
// the start of draining and the close of the listener — it is told
// 421 4.3.2 and disconnected. It never gets 220.
func TestSIGTERMStopsAccepting(t *testing.T) {
	gw, hop, idle, c := sigtermInFlight(t)
	// The idle session's 421 says the gateway is draining.
	if r := idle.Read(); r.Code != 421 {
		t.Fatalf("idle session at shutdown: %v, want 421", r)
	}

	refused := false
	for deadline := time.Now().Add(10 * time.Second); !refused && time.Now().Before(deadline); {
		select {
		case <-gw.Exited():
			t.Fatal("sekisho exited with a DATA in flight: the test proves nothing")
		default:
		}
		conn, err := net.DialTimeout("tcp", gw.SMTP, 5*time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect after SIGTERM: %v, want refused", err)
			}
			refused = true
			break
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		var ne net.Error
		switch {
		case strings.HasPrefix(line, "220"):
			t.Fatalf("a new connection after SIGTERM got the banner: %q", line)
		case strings.HasPrefix(line, "421 4.3.2 "):
			// draining, the listener not yet closed: told to go away
		case line == "" && err != nil && !(errors.As(err, &ne) && ne.Timeout()):
			// in the backlog as the listener closed: reset, no banner
		default:
			t.Fatalf("a new connection after SIGTERM: %q, %v; want refused or 421 4.3.2", line, err)
		}
		time.Sleep(50 * time.Millisecond) // the listener closes on its own time; no signal to wait on
	}
	if !refused {
		t.Error("the smtp listener still accepts connections 10 s after SIGTERM")
	}

	// The transaction in flight was not disturbed.
	c.SendRaw("second half\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("message in flight at SIGTERM: %v, want 250", r)
	}
	if err := gw.Wait(15 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop has %d messages, want 1", n)
	}
}

// mailRefusedThenNext sets up a route of two next hops where the first
// answers MAIL FROM with refusal, sends one message and checks that it went
// to the second with 250 to the client.
func mailRefusedThenNext(t *testing.T, refusal *gosmtp.SMTPError) {
	first := harness.StartNextHop(t, false)
	var mails atomic.Int64
	first.OnMail = func(from string) error {
		mails.Add(1)
		return refusal
	}
	second := harness.StartNextHop(t, false)
	gw := harness.Start(t, site{routes: []string{
		routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+first.Addr, "smtp://"+second.Addr),
	}}.yaml(t))

	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	if r := c.Cmd("RCPT TO:<alice@campus.test>"); r.Code != 250 {
		t.Fatalf("RCPT with the first next hop refusing MAIL (%d %v): %v, want 250", refusal.Code, refusal.EnhancedCode, r)
	}
	if r := c.Cmd("DATA"); r.Code != 354 {
		t.Fatalf("DATA: %v, want 354", r)
	}
	c.SendRaw(hdr("second hop") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 || !strings.HasPrefix(r.Text, "2.0.0") {
		t.Fatalf("end of DATA: %v, want 250 2.0.0", r)
	}
	if mails.Load() == 0 {
		t.Fatal("the first next hop was never asked: the test proves nothing")
	}
	if n := len(first.Messages()); n != 0 {
		t.Errorf("the first next hop holds %d messages, want 0", n)
	}
	msgs := second.Messages()
	if len(msgs) != 1 || msgs[0].From != "bob@example.org" || len(msgs[0].To) != 1 || msgs[0].To[0] != "alice@campus.test" ||
		!strings.Contains(string(msgs[0].Data), "Subject: second hop\r\n") {
		t.Fatalf("the second next hop holds %+v, want the message", msgs)
	}
}

// TestNextHopTempFailAtMailTriesNext: the route's first next hop answers
// 451 to MAIL; the message goes to the second, and the client gets 250.
func TestNextHopTempFailAtMailTriesNext(t *testing.T) {
	mailRefusedThenNext(t, &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"})
}

// TestNextHopPermFailAtMailTriesNext: the route's first next hop answers
// 550 to MAIL; a refusal by one next hop says nothing of the others, so the
// message goes to the second, and the client gets 250.
func TestNextHopPermFailAtMailTriesNext(t *testing.T) {
	mailRefusedThenNext(t, &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "not from you"})
}
