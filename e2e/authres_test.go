package e2e

// Forged verdicts (issue 16): Authentication-Results fields that carry our
// authserv-id, however they are written, and Received-SPF fields naming us as
// the receiver, are removed from incoming mail (RFC 8601 §5); fields naming
// another server are kept. Through the built binary on the smtp listener,
// with the SPF check writing our own fields, and the raw next hop recording
// the bytes as they crossed the wire.

import (
	"strings"
	"testing"

	"sekisho/internal/harness"
)

// headerFields returns the fields of a message's header section in order,
// each as name and unfolded value (CRLF removed, as RFC 5322 §2.2.3 unfolds).
func headerFields(data []byte) (names, values []string) {
	head, _, _ := strings.Cut(string(data), "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(values) > 0 {
			values[len(values)-1] += line
			continue
		}
		n, v, _ := strings.Cut(line, ":")
		names, values = append(names, strings.TrimRight(n, " \t")), append(values, v)
	}
	return names, values
}

// TestForgedAuthenticationResultsRemoved: an outside client whose SPF passes
// sends a message carrying Authentication-Results fields with our
// authserv-id (mx.campus.test) folded, after a comment, quoted, with a
// trailing dot, in another case, with white space before the colon, with a
// version number, and one with an identifier that cannot be read, and
// Received-SPF fields naming us as receiver. The next hop has exactly one
// Authentication-Results field with our identifier, ours, on top above our
// Received field, and one Received-SPF, ours; the Authentication-Results and
// Received-SPF of another server are kept as they were sent.
func TestForgedAuthenticationResultsRemoved(t *testing.T) {
	s := spfDNS(t)
	hop := harness.StartRawNextHop(t)
	gw := harness.Start(t, site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		extra:  "dns: {resolvers: [\"" + s.Addr() + "\"], timeout: 500ms, attempts: 1}\n",
		checks: "spf: {}",
	}.yaml(t))

	forged := []string{
		"Authentication-Results:\r\n mx.campus.test; spf=pass smtp.mailfrom=forged1.example\r\n",
		"Authentication-Results: (x) mx.campus.test; spf=pass smtp.mailfrom=forged2.example\r\n",
		"Authentication-Results: \"mx.campus.test\"; dkim=pass header.d=forged3.example\r\n",
		"Authentication-Results: mx.campus.test.; dmarc=pass header.from=forged4.example\r\n",
		"Authentication-Results: MX.Campus.TEST; spf=pass smtp.mailfrom=forged5.example\r\n",
		"authentication-results : mx.campus.test 1; spf=pass smtp.mailfrom=forged6.example\r\n",
		"Authentication-Results: mx.campus.test\r\n\t(trusted) ; spf=pass smtp.mailfrom=forged7.example\r\n",
		"Authentication-Results: mx.campus.test 2; spf=pass smtp.mailfrom=forged8.example\r\n",
		"Received-SPF: pass (mx.campus.test: forged9) receiver=mx.campus.test; identity=mailfrom\r\n",
		"Received-SPF: pass\r\n receiver=\"MX.campus.test.\"; client-ip=192.0.2.10 (forged10)\r\n",
	}
	others := "Authentication-Results: mx.example.org;\r\n spf=pass smtp.mailfrom=example.org\r\n" +
		"Received-SPF: pass (mx.example.org: example.org designates 192.0.2.1) receiver=mx.example.org;\r\n"
	msg := strings.Join(forged[:5], "") + others + strings.Join(forged[5:], "") +
		"From: Bob <bob@spfpass.net>\r\nTo: alice@campus.test\r\n" + headerDate + "Subject: verdicts\r\n\r\nbody\r\n"

	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob@spfpass.net>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(msg + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the next hop has %d messages, want 1", len(msgs))
	}
	wire := msgs[0].Unstuffed()
	data := string(wire)
	if strings.Contains(data, "forged") {
		t.Errorf("a forged field reached the next hop:\n%s", data)
	}
	if !strings.HasSuffix(data, others+"From: Bob <bob@spfpass.net>\r\nTo: alice@campus.test\r\n"+headerDate+"Subject: verdicts\r\n\r\nbody\r\n") {
		t.Errorf("the other server's fields or the rest of the message changed:\n%s", data)
	}
	names, values := headerFields(wire)
	var ours, ar, spf []int
	for i, n := range names {
		switch strings.ToLower(n) {
		case "authentication-results":
			ar = append(ar, i)
			if strings.HasPrefix(strings.TrimSpace(values[i]), "mx.campus.test;") {
				ours = append(ours, i)
			}
		case "received-spf":
			spf = append(spf, i)
		}
	}
	rcv := -1
	for i, n := range names {
		if strings.EqualFold(n, "received") {
			rcv = i
			break
		}
	}
	if len(ours) != 1 || len(ar) != 2 || len(spf) != 2 {
		t.Fatalf("%d Authentication-Results (%d with our identifier) and %d Received-SPF, want 2 (1) and 2:\n%s", len(ar), len(ours), len(spf), data)
	}
	if ours[0] != ar[0] || ours[0] > rcv || spf[0] > rcv || !strings.Contains(values[ours[0]], "spf=pass") {
		t.Errorf("our Authentication-Results is not the one on top, above our Received, saying spf=pass:\n%s", data)
	}
	if !strings.Contains(values[spf[0]], "receiver=mx.campus.test;") || !strings.Contains(values[spf[1]], "receiver=mx.example.org;") {
		t.Errorf("Received-SPF fields are not ours then the other server's:\n%s", data)
	}
}
