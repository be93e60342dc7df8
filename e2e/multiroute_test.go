package e2e

// One message to several routes (issue 16): msmtp, curl and Thunderbird
// send one message to a campus address and an outside one at once. A
// submission, and a campus server on the outbound smtp leg, may hold
// recipients of several routes in one transaction: each route's next hop
// is called ahead at its first recipient, the message goes to all of them
// in step, and the client hears 250 only when every one said 250
// (docs/msa.md, "Several routes in one message").

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// multiRouteMessage is what a mail program sends: its own Message-ID, so
// that a copy sent again is recognisably the same message.
const multiRouteMessage = "From: Alice <alice@campus.test>\r\nTo: carol@campus.test, friend@example.net, other@example.org\r\n" +
	"Subject: to campus and outside\r\nMessage-ID: <multi-route-1@client.example.net>\r\n" +
	"Date: Mon, 7 Dec 2026 01:00:00 +0000\r\n\r\nOne message, two routes.\r\n"

// msmtp sends multiRouteMessage through the fixture's submission listener
// (STARTTLS, AUTH PLAIN as alice) to rcpts; it returns msmtp's output and
// whether it succeeded.
func (f *msaFixture) msmtp(t *testing.T, src string, rcpts ...string) (string, bool) {
	t.Helper()
	bin := testenv.Command(t, "msmtp", "msmtp")
	host, port, _ := strings.Cut(f.sub, ":")
	conf := filepath.Join(t.TempDir(), "msmtprc")
	rc := fmt.Sprintf(`account default
host %s
port %s
source_ip %s
domain client.example.net
from alice@campus.test
auth plain
user alice
password alice-pw
tls on
tls_starttls on
tls_trust_file %s
tls_host_override %s
`, host, port, src, f.cert, msaHost)
	if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-C", conf, "--"}, rcpts...)...)
	cmd.Stdin = strings.NewReader(multiRouteMessage)
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestMultiRouteMsmtp: msmtp sends one message to a campus address (the
// campus route's next hop) and two outside addresses (the "*" route's):
// 250, each next hop has the message once, with only its own recipients,
// byte for byte the same, with one Received field of ours.
func TestMultiRouteMsmtp(t *testing.T) {
	f := startMSA(t, nil)
	out, ok := f.msmtp(t, "127.0.0.3", "carol@campus.test", "friend@example.net", "other@example.org")
	if !ok {
		t.Fatalf("msmtp failed:\n%s", out)
	}
	campus, ext := f.hop.Messages(), f.ext.Messages()
	if len(campus) != 1 || len(ext) != 1 {
		t.Fatalf("campus next hop %d messages, outside next hop %d; want 1 each", len(campus), len(ext))
	}
	if got := strings.Join(campus[0].To, " "); got != "carol@campus.test" {
		t.Errorf("campus next hop recipients %q", got)
	}
	if got := strings.Join(ext[0].To, " "); got != "friend@example.net other@example.org" {
		t.Errorf("outside next hop recipients %q", got)
	}
	if string(campus[0].Data) != string(ext[0].Data) {
		t.Errorf("the routes got different bytes:\n%s\n---\n%s", campus[0].Data, ext[0].Data)
	}
	if n := msaHeaderCount(campus[0].Data, "Received"); n != 1 {
		t.Errorf("%d Received fields, want 1", n)
	}
	if !strings.Contains(string(campus[0].Data), "\r\n\r\nOne message, two routes.\r\n") {
		t.Errorf("body changed:\n%s", campus[0].Data)
	}
}

// TestMultiRouteDisagree: the outside next hop answers the final dot with
// 451 once, the campus one with 250: msmtp is told 451 (mail may be
// delayed, never lost) and keeps the message; the campus next hop has its
// copy already, and the retry gives it a second one with the same
// Message-ID: the documented price. The gateway logs the disagreement.
func TestMultiRouteDisagree(t *testing.T) {
	f := startMSA(t, nil)
	var refused atomic.Bool
	f.ext.OnData = func(harness.Message) error {
		if refused.CompareAndSwap(false, true) {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}
	out, ok := f.msmtp(t, "127.0.0.3", "carol@campus.test", "friend@example.net")
	if ok || !strings.Contains(out, "451") {
		t.Fatalf("msmtp succeeded or was not told 451:\n%s", out)
	}
	if n, m := len(f.hop.Messages()), len(f.ext.Messages()); n != 1 || m != 0 {
		t.Fatalf("after the 451: campus %d messages, outside %d; want 1 and 0", n, m)
	}
	f.gw.WaitLog("routes disagree on the message", 10*time.Second)
	out, ok = f.msmtp(t, "127.0.0.3", "carol@campus.test", "friend@example.net")
	if !ok {
		t.Fatalf("msmtp's retry failed:\n%s", out)
	}
	campus := f.hop.Messages()
	if len(campus) != 2 || len(f.ext.Messages()) != 1 {
		t.Fatalf("after the retry: campus %d messages, outside %d; want 2 (the duplicate) and 1", len(campus), len(f.ext.Messages()))
	}
	for _, m := range campus {
		if !strings.Contains(string(m.Data), "Message-ID: <multi-route-1@client.example.net>\r\n") {
			t.Errorf("a copy lost the client's Message-ID:\n%s", m.Data)
		}
	}
}

// TestMultiRouteTrustedSMTP: a campus server on the outbound smtp leg
// (trusted_networks) sends with curl to two routes: each route's next hop
// has its recipient. Then a raw client opens nine routes in one
// transaction: the ninth recipient gets 452 4.5.3 (at most 8 next hop
// transactions per message) and the eight others are delivered. An
// untrusted client still has one route per transaction.
func TestMultiRouteTrustedSMTP(t *testing.T) {
	curl := testenv.Command(t, "curl", "curl")
	hop := harness.StartRawNextHop(t)
	var routes []string
	for i := 1; i <= 9; i++ {
		routes = append(routes, routeTo([]string{fmt.Sprintf("d%d.test", i)}, "smtp://"+hop.Addr))
	}
	gw := harness.Start(t, site{local: []string{"d1.test", "d2.test"}, routes: routes}.yaml(t))

	msg := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msg, []byte(hdr("from a campus server")+"body\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-sS", "--url", "smtp://"+gw.SMTP, "--mail-from", "server@campus.test",
		"--mail-rcpt", "u@d1.test", "--mail-rcpt", "u@d3.test", "--upload-file", msg).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	// The two final dots go out together: either may come first.
	var to []string
	for _, m := range hop.Messages() {
		to = append(to, strings.Join(m.To, " "))
	}
	sort.Strings(to)
	if strings.Join(to, ", ") != "u@d1.test, u@d3.test" {
		t.Fatalf("next hop messages to %q, want one to u@d1.test and one to u@d3.test", to)
	}

	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO server.campus.test", "250")
	c.Expect("MAIL FROM:<server@campus.test>", "250")
	for i := 1; i <= 8; i++ {
		c.Expect(fmt.Sprintf("RCPT TO:<u@d%d.test>", i), "250")
	}
	c.Expect("RCPT TO:<u@d9.test>", "452 4.5.3")
	c.Expect("RCPT TO:<second@d2.test>", "250") // a route already open
	c.Expect("DATA", "354")
	c.SendRaw(hdr("eight routes") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("data: %v", r)
	}
	c.Expect("QUIT", "221")
	if n := len(hop.Messages()); n != 2+8 {
		t.Errorf("next hop has %d messages, want 10", n)
	}

	// Untrusted: local domains only, and one route per transaction.
	o := harness.DialFrom(t, outside, gw.SMTP)
	o.Expect("EHLO client.example.org", "250")
	o.Expect("MAIL FROM:<bob@example.org>", "250")
	o.Expect("RCPT TO:<u@d1.test>", "250")
	o.Expect("RCPT TO:<u@d2.test>", "452 4.5.3")
	o.Expect("QUIT", "221")

	// explain drives the same engine: two routes for the campus server,
	// one for the outside client, each route called ahead for real.
	explain := func(ip string) string {
		t.Helper()
		out, _ := explainCLI(t, gw.Dir, "-config", filepath.Join(gw.Dir, "sekisho.yaml"),
			"-ip", ip, "-from", "server@campus.test", "-rcpt", "x@d1.test", "-rcpt", "x@d2.test")
		return out
	}
	before := len(hop.Lines())
	mustContain(t, explain("127.0.0.1"), tell("RCPT TO:<x@d1.test>", "250"), tell("RCPT TO:<x@d2.test>", "250"))
	mustContain(t, explain(outside), tell("RCPT TO:<x@d1.test>", "250"), tell("RCPT TO:<x@d2.test>", "452 4.5.3"))
	rcpts := 0
	for _, l := range hop.Lines()[before:] {
		if strings.HasPrefix(l, "RCPT TO:<x@") {
			rcpts++
		}
	}
	if rcpts != 3 || len(hop.Messages()) != 10 {
		t.Errorf("explain made %d RCPTs at the next hop (want 3: two routes, then one) and %d messages (want none)", rcpts, len(hop.Messages())-10)
	}
}

// TestMultiRouteLMTPNextHop: towards an LMTP next hop each recipient of a
// trusted client's message has a next-hop transaction of its own (LMTP
// answers the data per recipient, the client takes one answer): both are
// accepted, and each copy carries one recipient.
func TestMultiRouteLMTPNextHop(t *testing.T) {
	hop := harness.StartRawNextHop(t, func(h *harness.RawNextHop) { h.LMTP = true })
	gw := harness.Start(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "lmtp://"+hop.Addr)}}.yaml(t))
	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO server.campus.test", "250")
	c.Expect("MAIL FROM:<server@campus.test>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<carol@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(hdr("two LMTP recipients") + "body\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("data: %v", r)
	}
	c.Expect("QUIT", "221")
	var to []string
	for _, m := range hop.Messages() {
		to = append(to, strings.Join(m.To, " "))
	}
	sort.Strings(to)
	if strings.Join(to, ", ") != "alice@campus.test, carol@campus.test" {
		t.Errorf("LMTP next hop copies to %q, want one to each recipient", to)
	}
}
