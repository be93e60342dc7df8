package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

// TestHTTPMetricsAndHealth: /healthz answers, and /metrics counts the
// decisions made — one accepted message, one refused relay attempt — and
// publishes the DNSBL and greylist counters.
func TestHTTPMetricsAndHealth(t *testing.T) {
	httpAddr := testenv.FreePort(t)
	gw, _ := campus(t, func(s *site) {
		s.http = httpAddr
		s.checks = "dnsbl: {zones: [dnsbl.test]}\n" + "greylist: {off: true}"
		s.extra = fmt.Sprintf("dns: {resolvers: [%q], timeout: 200ms, attempts: 1}\n", testenv.FreePort(t))
	})
	// A client that sends half a request is disconnected (the listener's
	// header timeout, 5 s); checked at the end, the rest runs meanwhile.
	half, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	halfSent := time.Now()
	io.WriteString(half, "GET /metrics HTTP/1.1\r\nHost: ")
	if !strings.Contains(get(t, "http://"+httpAddr+"/healthz"), "ok") {
		t.Error("/healthz")
	}
	if err := smtp.SendMail(gw.SMTP, nil, "bob@example.org", []string{"alice@campus.test"}, []byte(sampleMessage)); err != nil {
		t.Fatal(err)
	}
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<victim@example.com>", "554 5.7.1")
	c.Expect("QUIT", "221")

	m := get(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{
		`sekisho_decisions_total{check="",listener="smtp",outcome="accepted",stage="data"} 1`,
		`sekisho_decisions_total{check="relay",listener="smtp",outcome="rejected",stage="rcpt"} 1`,
		`sekisho_decisions_total{check="",listener="smtp",outcome="accepted",stage="rcpt"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}
	// The resolver's port is closed: the list could not tell (at least for
	// the client whose RCPT reached the check), and mail still flowed.
	var n int
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, `sekisho_dnsbl_answers_total{answer="could_not_tell",zone="dnsbl.test"} `) {
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &n)
		}
	}
	if n < 1 {
		t.Errorf("DNSBL could-not-tell count %d, want at least 1:\n%s", n, m)
	}

	half.SetReadDeadline(halfSent.Add(30 * time.Second))
	if _, err := io.ReadAll(half); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a half-sent request still holds its connection after %v", time.Since(halfSent))
	}
}
