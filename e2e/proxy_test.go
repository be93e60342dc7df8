package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"sekisho/internal/harness"
)

// behindBalancer is a campus site whose load balancer is 127.0.0.1 (also
// in trusted_networks: the header's address, not the balancer's, decides),
// with an outside route so that relay control has something to refuse.
func behindBalancer(t *testing.T, from string) (*harness.Gateway, *harness.NextHop, *harness.NextHop) {
	t.Helper()
	ext := harness.StartNextHop(t, false)
	gw, hop := campus(t, func(s *site) {
		s.routes = append(s.routes, routeTo([]string{"*"}, "smtp://"+ext.Addr))
		s.extra = "proxy_protocol: {from: [" + from + "]}\n"
	})
	return gw, hop, ext
}

// proxyV2 is a v2 header (binary) for a TCP4 client, built by go-proxyproto.
func proxyV2(t *testing.T, src string, srcPort int) string {
	t.Helper()
	h := &proxyproto.Header{
		Version:           2,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv4,
		SourceAddr:        &net.TCPAddr{IP: net.ParseIP(src).To4(), Port: srcPort},
		DestinationAddr:   &net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4(), Port: 25},
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProxyProtocol: from the balancer (127.0.0.1), a v1 and a v2 header's
// client address is the session's: in the decision log, in the Received
// header at the next hop, and for relay control (outside, although the
// balancer itself is trusted).
func TestProxyProtocol(t *testing.T) {
	gw, hop, ext := behindBalancer(t, "127.0.0.1/32")
	headers := map[string]string{
		"v1": "PROXY TCP4 198.51.100.7 10.0.0.1 40000 25\r\n",
		"v2": proxyV2(t, "198.51.100.7", 40001),
	}
	for _, v := range []string{"v1", "v2"} {
		c := harness.DialNoBanner(t, "127.0.0.1", gw.SMTP)
		c.SendRaw(headers[v])
		if r := c.Read(); r.Code != 220 {
			t.Fatalf("%s: banner %v", v, r)
		}
		c.Expect("EHLO client.example.org", "250")
		c.Expect("MAIL FROM:<bob@example.org>", "250")
		// Relay control: 198.51.100.7 is outside, so no relaying.
		c.Expect("RCPT TO:<victim@example.com>", "554 5.7.1")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(strings.ReplaceAll(sampleMessage, "hello", "hello "+v) + ".\r\n")
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("%s: data: %v", v, r)
		}
		c.Expect("QUIT", "221")
	}
	msgs := hop.Messages()
	if len(msgs) != 2 {
		t.Fatalf("next hop has %d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		if !strings.HasPrefix(string(m.Data), "Received: from client.example.org ([198.51.100.7])") {
			t.Errorf("Received header does not name the header's client:\n%s", m.Data)
		}
	}
	if n := len(ext.Messages()); n != 0 {
		t.Errorf("%d messages relayed outside", n)
	}
	gw.WaitLog("198.51.100.7", 5*time.Second)
	for _, l := range strings.Split(gw.Log(), "\n") {
		if strings.Contains(l, "RCPT") || strings.Contains(l, "rcpt") {
			if strings.Contains(l, "client=127.0.0.1") {
				t.Errorf("decision logged with the balancer's address: %s", l)
			}
		}
	}
	if !strings.Contains(gw.Log(), "client=198.51.100.7") {
		t.Errorf("no log line with client=198.51.100.7:\n%s", gw.Log())
	}
}

// TestProxyProtocolRequired: from the balancer, a connection without a
// header is closed without a banner; one that sends nothing at all does
// not keep another client from being served (Accept is never blocked).
func TestProxyProtocolRequired(t *testing.T) {
	gw, _, _ := behindBalancer(t, "127.0.0.1/32")

	silent := harness.DialNoBanner(t, "127.0.0.1", gw.SMTP) // sends nothing
	start := time.Now()
	c := harness.DialNoBanner(t, "127.0.0.1", gw.SMTP)
	c.SendRaw("PROXY TCP4 198.51.100.8 10.0.0.1 40002 25\r\n")
	if r := c.ReadTimeout(3 * time.Second); r.Code != 220 {
		t.Fatalf("a client behind a silent one: banner %v", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("banner after %v: the silent connection held the others", d)
	}
	// A client not behind the balancer is served meanwhile too.
	harness.DialFrom(t, outside, gw.SMTP).Expect("QUIT", "221")

	noHeader := harness.DialNoBanner(t, "127.0.0.1", gw.SMTP)
	noHeader.SendRaw("EHLO client.example.org\r\n")
	if r := noHeader.ReadTimeout(10 * time.Second); r.Code != 0 || strings.Contains(r.Text, "timeout") {
		t.Errorf("no header from the balancer: got %v, want the connection closed without a banner", r)
	}
	// The silent one is closed after the header timeout, without a banner.
	if r := silent.ReadTimeout(10 * time.Second); r.Code != 0 || strings.Contains(r.Text, "timeout") {
		t.Errorf("silent balancer connection: got %v, want closed without a banner", r)
	}
	gw.WaitLog("no valid PROXY header", 5*time.Second)
}

// TestProxyProtocolNotFromBalancer: from a client not in
// proxy_protocol.from a PROXY line is an unknown command (go-proxyproto's
// SKIP policy leaves the connection alone): 500, and the session keeps the
// socket's address (127.0.0.2, outside; 127.0.0.1 in the header would be
// trusted).
func TestProxyProtocolNotFromBalancer(t *testing.T) {
	gw, _, ext := behindBalancer(t, "127.0.0.9/32")
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("PROXY TCP4 127.0.0.1 10.0.0.1 40000 25", "500")
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@example.org>", "250")
	c.Expect("RCPT TO:<victim@example.com>", "554 5.7.1")
	c.Expect("QUIT", "221")
	if n := len(ext.Messages()); n != 0 {
		t.Errorf("%d messages relayed outside", n)
	}
	if !strings.Contains(gw.Log(), "client="+outside) {
		t.Errorf("no log line with client=%s:\n%s", outside, gw.Log())
	}
}
