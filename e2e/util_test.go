package e2e

import (
	"net"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// hdr is a conforming header section (RFC 5322 §3.6: From and Date) with a
// subject, ending with the empty line.
func hdr(subject string) string {
	return "From: Bob <bob@example.org>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nSubject: " + subject + "\r\n\r\n"
}

// waitDataStarted waits until the next hop has begun receiving a DATA.
func waitDataStarted(t *testing.T, hop *harness.NextHop) {
	t.Helper()
	select {
	case <-hop.DataStarted:
	case <-time.After(15 * time.Second):
		t.Fatal("the next hop never saw DATA begin")
	}
}

// needDefaultsPort skips the test (fails it under CI) when 127.0.0.1:2525,
// where `sekisho serve` listens on its embedded defaults, is taken (a
// `make run` on this machine).
func needDefaultsPort(t *testing.T) {
	t.Helper()
	if c, err := (&netDialer{}).probe("127.0.0.1:2525"); err == nil {
		c.Close()
		if testenv.InCI() {
			t.Fatal("127.0.0.1:2525 is taken: the embedded defaults cannot be tested")
		}
		t.Skip("127.0.0.1:2525 is taken on this machine (make run?); the embedded defaults cannot be tested")
	}
}

type netDialer struct{}

func (netDialer) probe(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

// dataSession opens a session from the outside client (127.0.0.2) and goes as
// far as DATA's 354 for one recipient, failing the test on any other reply.
func dataSession(t *testing.T, gw *harness.Gateway, rcpt string) *harness.Client {
	t.Helper()
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<"+rcpt+">", "250")
	c.Expect("DATA", "354")
	return c
}

// sigtermInFlight starts a campus gateway, opens an idle session (EHLO said,
// from 127.0.0.3) and one in DATA whose message is half sent (its first
// line is "first half"), then sends the gateway SIGTERM.
func sigtermInFlight(t *testing.T) (gw *harness.Gateway, hop *harness.NextHop, idle, inFlight *harness.Client) {
	t.Helper()
	gw, hop = campus(t, nil)
	idle = harness.DialFrom(t, "127.0.0.3", gw.SMTP)
	idle.Expect("EHLO idle.example", "250")

	inFlight = dataSession(t, gw, "alice@campus.test") // EHLO, MAIL, RCPT, DATA: 354
	inFlight.SendRaw(hdr("in flight") + "first half\r\n")

	gw.Signal(syscall.SIGTERM)
	return gw, hop, idle, inFlight
}
