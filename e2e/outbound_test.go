package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// TestOutboundRelayViaMX: a campus server (trusted) relays to the Internet
// through "mx" next hops: the recipient domain's MX hosts in preference
// order, the dead first one skipped; a null MX domain is refused 556 5.1.10.
func TestOutboundRelayViaMX(t *testing.T) {
	hop := harness.StartNextHop(t, false) // plays the remote MX, on 127.0.0.1
	_, port, _ := net.SplitHostPort(hop.Addr)
	dns := testdns.Start(t)
	dns.AddZone("example.com.", 60)
	dns.AddZone("campus.test.", 60)
	dns.Add(
		"campus.test. 60 IN A 127.0.0.1",
		"example.com. 60 IN MX 10 dead.example.com.",
		"example.com. 60 IN MX 20 alive.example.com.",
		"dead.example.com. 60 IN A 127.0.0.66", // nothing listens there
		"alive.example.com. 60 IN A 127.0.0.1",
		"nullmx.example.com. 60 IN MX 0 .",
	)
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr),
			routeTo([]string{"*"}, "mx"),
		},
		extra: fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 1}\nnext_hop: {mx_port: %s, connect_timeout: 2s}\n", dns.Addr(), port),
	}
	gw := harness.Start(t, s.yaml(t))

	c := harness.Dial(t, gw.SMTP) // from 127.0.0.1: trusted
	c.Expect("EHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<someone@nullmx.example.com>", "556 5.1.10")
	c.Expect("RCPT TO:<friend@example.com>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("outbound") + "hello\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatal(r)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "friend@example.com" {
		t.Fatalf("remote MX got %+v", msgs)
	}
	gw.WaitLog("next_hop=\"mx alive.example.com [127.0.0.1]\"", 5*time.Second)
	if !strings.Contains(gw.Log(), "to=friend@example.com outcome=accepted") {
		t.Error("no decision line for the relayed recipient")
	}
}
