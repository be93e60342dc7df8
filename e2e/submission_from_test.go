package e2e

// The From field of submitted and outbound mail (issue 16): on submission a
// From that does not read as exactly one of the user's addresses is refused
// with 550 5.7.1 and never reaches the next hop; the header rules, the From
// rule and the DKIM signer read the whole header section that is relayed, so
// a second From cannot hide behind 256 KiB of padding; a message with other
// than one From is never signed, on the trusted leg either. Through the built
// binary, with slapd, TLS and AUTH, raw clients for the malformed forms and
// Python's smtplib for the ordinary ones.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
)

// startSigningMSA is the MSA fixture with an Ed25519 key for campus.test
// (its record in a test DNS server, for the test's own verification) and
// the header check's from-count rule at tag, so that the only thing between
// a message with two From fields and the next hop is the From rule of
// submission and, on the trusted leg, nothing: whether it is signed shows.
func startSigningMSA(t *testing.T) (f *msaFixture, dnsAddr string) {
	t.Helper()
	key, record := dkimKeygen(t, t.TempDir(), "campus.test", "s2026", "ed25519")
	ns := testdns.Start(t)
	ns.Add(record)
	f = startMSA(t, func(o *msaOpts) {
		o.checks = "header: {rules: {from-count: tag}}"
		o.extra = fmt.Sprintf("dkim:\n  - {domain: campus.test, selector: s2026, key_file: %q}\n", key)
	})
	return f, ns.Addr()
}

// paddedTwoFrom is a message whose first From is the user's and whose second,
// someone else's, comes after 300 KiB of header fields: past the 256 KiB the
// header check used to parse.
func paddedTwoFrom(first, second string) string {
	var b strings.Builder
	b.WriteString("From: " + first + "\r\nTo: friend@example.net\r\n" + headerDate + "Subject: padded\r\n")
	pad := "X-Pad: " + strings.Repeat("p", 90) + "\r\n"
	for b.Len() < 300<<10 {
		b.WriteString(pad)
	}
	b.WriteString("From: " + second + "\r\n\r\nbody\r\n")
	return b.String()
}

// smtplibSubmit sends msg with Python's smtplib over STARTTLS on 587 as
// alice, from src, and returns the reply to the data ("250 ..." or the
// refusal smtplib raised).
func smtplibSubmit(t *testing.T, f *msaFixture, src, msg string) string {
	t.Helper()
	py := testenv.Command(t, "python3", "python3")
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(f.sub)
	script := `import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.check_hostname = False  # the chain is verified; the name is msa.campus.test, we dial 127.0.0.1
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="client.example.net", source_address=(sys.argv[4], 0))
s.starttls(context=ctx)
s.login("alice", "alice-pw")
msg = open(sys.argv[5], "rb").read()
try:
    s.sendmail("alice@campus.test", ["friend@example.net"], msg)
    print("DATA 250")
except smtplib.SMTPDataError as e:
    print("DATA %d %s" % (e.smtp_code, e.smtp_error.decode()))
s.quit()
`
	f.secrets = append(f.secrets, "alice-pw")
	out, err := exec.Command(py, "-c", script, host, port, f.cert, src, file).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	_, reply, ok := strings.Cut(strings.TrimSpace(string(out)), "DATA ")
	if !ok {
		t.Fatalf("smtplib printed no DATA reply:\n%s", out)
	}
	return reply
}

// TestSubmissionFromForms: a logged-in alice sends with a From that is not
// one address of hers, in every form the From rule must not let pass as
// "could not parse, tag it": a group (also with her own address as its one
// member), an unclosed angle bracket, a trailing semicolon, a quoted name
// without brackets, an encoded-word address, a second From in a
// continuation line, in upper case, with white space before the colon or
// with its name on a line of its own, obsolete route and spacing syntax,
// two mailboxes, no From at all, an 8-bit address. Each is 550 5.7.1 (a NUL
// is refused earlier, 550 5.6.0, as any NUL in data), and nothing reaches
// the next hop. The padded two-From message, sent by smtplib, is refused the
// same way. Her own plain From is then accepted and signed, the signature
// verifying against the published key.
func TestSubmissionFromForms(t *testing.T) {
	f, dnsAddr := startSigningMSA(t)
	forms := []struct{ name, from, want string }{
		{"group", "From: grp: bob@campus.test;\r\n", "550 5.7.1"},
		{"group with the user's own address as its one member", "From: me: alice@campus.test;\r\n", "550 5.7.1"},
		{"unclosed angle bracket", "From: Bob <bob@campus.test\r\n", "550 5.7.1"},
		{"trailing semicolon", "From: bob@campus.test;\r\n", "550 5.7.1"},
		{"quoted name without angle brackets", "From: \"Bob\" bob@campus.test\r\n", "550 5.7.1"},
		{"encoded-word address", "From: =?utf-8?q?bob=40campus.test?=\r\n", "550 5.7.1"},
		{"encoded-word address in angle brackets", "From: Alice <=?utf-8?q?bob=40campus.test?=>\r\n", "550 5.7.1"},
		{"second From in a continuation line", "From: alice@campus.test\r\n From: bob@campus.test\r\n", "550 5.7.1"},
		{"second From in upper case", "From: alice@campus.test\r\nFROM: bob@campus.test\r\n", "550 5.7.1"},
		{"second From with a space before the colon", "From: alice@campus.test\r\nFrom : bob@campus.test\r\n", "550 5.7.1"},
		{"second From with its name on a line of its own", "From\r\n : bob@campus.test\r\nFrom: alice@campus.test\r\n", "550 5.7.1"},
		{"obsolete route", "From: <@relay.example.net:bob@campus.test>\r\n", "550 5.7.1"},
		{"obsolete spacing", "From: bob @ campus . test\r\n", "550 5.7.1"},
		{"two mailboxes", "From: alice@campus.test, bob@campus.test\r\nSender: alice@campus.test\r\n", "550 5.7.1"},
		{"no From", "", "550 5.7.1"},
		{"8-bit address", "From: b\xc3\xb6b@campus.test\r\n", "550 5.7.1"},
		{"8-bit name that is not UTF-8", "From: Al\xe9 <alice@campus.test>\r\n", "550 5.7.1"},
		{"NUL", "From: alice@campus.test\x00bob@campus.test\r\n", "550 5.6.0"},
	}
	for _, form := range forms {
		// A session each: ten refusals would meet limits.max_errors.
		c := f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0")
		c.expect("MAIL FROM:<alice@campus.test>", "250")
		c.expect("RCPT TO:<friend@example.net>", "250")
		c.expect("DATA", "354")
		c.send(form.from + "To: friend@example.net\r\n" + headerDate + "Subject: " + form.name + "\r\n\r\nbody\r\n.")
		if r := c.read(); !strings.HasPrefix(r.String(), form.want) {
			t.Errorf("%s: %q, want %s", form.name, r.String(), form.want)
		}
		c.expect("QUIT", "221")
	}
	if msgs := f.ext.Messages(); len(msgs) != 0 {
		t.Fatalf("the next hop got %d messages, want none; first:\n%s", len(msgs), msgs[0].Data)
	}

	if r := smtplibSubmit(t, f, "127.0.0.4", paddedTwoFrom("alice@campus.test", "bob@campus.test")); !strings.HasPrefix(r, "550 5.7.1") {
		t.Errorf("padded two-From message: %q, want 550 5.7.1", r)
	}
	// Both Froms hers: still two From fields, still refused.
	if r := smtplibSubmit(t, f, "127.0.0.4", paddedTwoFrom("alice@campus.test", "Alice <alice@campus.test>")); !strings.HasPrefix(r, "550 5.7.1") {
		t.Errorf("padded message with her own From twice: %q, want 550 5.7.1", r)
	}
	if msgs := f.ext.Messages(); len(msgs) != 0 {
		t.Fatalf("the next hop got %d messages, want none; first:\n%.2000s", len(msgs), msgs[0].Data)
	}

	own := "From: Alice Smith <alice.smith@campus.test>\r\nTo: friend@example.net\r\n" + headerDate + "Subject: own\r\n\r\nbody\r\n"
	if r := smtplibSubmit(t, f, "127.0.0.4", own); !strings.HasPrefix(r, "250") {
		t.Fatalf("her own From: %q, want 250", r)
	}
	msgs := f.ext.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the next hop got %d messages, want 1", len(msgs))
	}
	signedBy(t, "her own From", dnsAddr, msgs[0].Data, "ed25519-sha256")
}

// TestOutboundTwoFromNeverSigned: on the trusted leg (a campus server on the
// smtp listener) with from-count at tag, the padded two-From message is
// relayed, tagged, and not signed: the signer, like the header check, reads
// both From fields and there is no one author domain to sign for. A message
// with one From on the same connection is signed.
func TestOutboundTwoFromNeverSigned(t *testing.T) {
	f, dnsAddr := startSigningMSA(t)
	c := harness.Dial(t, f.gw.SMTP)
	c.Expect("EHLO mail.campus.test", "250")
	send := func(msg string) {
		t.Helper()
		c.Expect("MAIL FROM:<alice@campus.test>", "250")
		c.Expect("RCPT TO:<friend@example.net>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(msg + ".\r\n")
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("DATA: %v", r)
		}
	}
	send(paddedTwoFrom("alice@campus.test", "bob@campus.test"))
	send(campusMsg("one From", "body\r\n"))
	msgs := f.ext.Messages()
	if len(msgs) != 2 {
		t.Fatalf("the next hop got %d messages, want 2", len(msgs))
	}
	two := msgs[0].Data
	if bytes.Contains(two, []byte("DKIM-Signature")) {
		t.Errorf("the two-From message was signed:\n%.1000s", two)
	}
	if !bytes.HasPrefix(two, []byte("X-Sekisho-Header-Violation: from-count\r\n")) || !bytes.Contains(two, []byte("\r\nFrom: bob@campus.test\r\n")) {
		t.Errorf("the two-From message is not the tagged message with both From fields:\n%.1000s", two)
	}
	signedBy(t, "one From", dnsAddr, msgs[1].Data, "ed25519-sha256")
}

// TestHeaderWholeSection: with the default header rules, the header check
// judges the whole header section it relays: a second From after 300 KiB of
// header is 550 5.6.0 naming from-count (it was relayed with a header-size
// tag only). A header section above 1 MiB, more than sekisho reads before
// deciding, is 552 5.3.4. Neither reaches the next hop.
func TestHeaderWholeSection(t *testing.T) {
	gw, hop := campus(t, nil)
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO mx.example.net", "250")
	send := func(msg string) harness.Reply {
		t.Helper()
		c.Expect("MAIL FROM:<bob@example.net>", "250")
		c.Expect("RCPT TO:<alice@campus.test>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(msg + ".\r\n")
		return c.Read()
	}
	r := send(paddedTwoFrom("bob@example.net", "Dean <dean@campus.test>"))
	if !strings.HasPrefix(r.String(), "550 5.6.0") || !strings.Contains(r.Text, "from-count") {
		t.Errorf("second From past 256 KiB: %v, want 550 5.6.0 naming from-count", r)
	}
	var huge strings.Builder
	huge.WriteString("From: bob@example.net\r\n" + headerDate)
	for huge.Len() <= 1<<20 {
		huge.WriteString("X-Pad: " + strings.Repeat("h", 90) + "\r\n")
	}
	huge.WriteString("\r\nbody\r\n")
	if r := send(huge.String()); !strings.HasPrefix(r.String(), "552 5.3.4") {
		t.Errorf("header section over 1 MiB: %v, want 552 5.3.4", r)
	}
	if msgs := hop.Messages(); len(msgs) != 0 {
		t.Errorf("the next hop got %d messages, want none", len(msgs))
	}
	// The session goes on.
	if r := send(campusMsg("after", "body\r\n")); r.Code != 250 {
		t.Errorf("a conforming message after the refusals: %v", r)
	}
}
