package e2e

import (
	"net"
	"testing"
	"time"

	"sekisho/internal/harness"
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
