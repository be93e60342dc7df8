package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// dkimKeygen runs `sekisho dkim keygen` and returns the key file and the TXT
// record it printed (its last line, in zone-file syntax).
func dkimKeygen(t *testing.T, dir, domain, selector, algo string) (keyFile, record string) {
	t.Helper()
	keyFile = filepath.Join(dir, domain+"."+selector+".key")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(harness.Binary(t), "dkim", "keygen", "-domain", domain, "-selector", selector, "-algo", algo, "-out", keyFile)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dkim keygen -algo %s: %v\n%s%s", algo, err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	record = lines[len(lines)-1]
	if want := selector + "._domainkey." + domain + ". 3600 IN TXT \"v=DKIM1; k=" + map[string]string{"rsa": "rsa", "ed25519": "ed25519"}[algo] + "; p="; !strings.HasPrefix(record, want) {
		t.Fatalf("keygen printed %q as its last line, want a record starting %q", record, want)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v; want 0600", keyFile, err, fi.Mode())
	}
	return keyFile, record
}

// dkimVerify verifies every DKIM-Signature of a message with go-msgauth,
// looking the keys up in the test DNS (over TCP: an RSA key's record does
// not fit a plain UDP answer).
func dkimVerify(t *testing.T, dnsAddr string, msg []byte) []*dkim.Verification {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		in, _, err := c.Exchange(q, dnsAddr)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rr := range in.Answer {
			if txt, ok := rr.(*dns.TXT); ok {
				out = append(out, strings.Join(txt.Txt, ""))
			}
		}
		return out, nil
	}
	v, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("dkim verify: %v", err)
	}
	return v
}

// signedBy checks that a message carries exactly the DKIM signatures named
// by their algorithms (a=), each for campus.test and each verifying.
func signedBy(t *testing.T, what, dnsAddr string, msg []byte, algos ...string) {
	t.Helper()
	vs := dkimVerify(t, dnsAddr, msg)
	if len(vs) != len(algos) {
		t.Fatalf("%s: %d DKIM signatures, want %d (%v):\n%s", what, len(vs), len(algos), algos, msg)
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "campus.test" {
			t.Errorf("%s: signature d=%s: %v, want a valid signature of campus.test", what, v.Domain, v.Err)
		}
	}
	for _, a := range algos {
		if !bytes.Contains(msg, []byte("a="+a+";")) {
			t.Errorf("%s: no %s signature:\n%s", what, a, msg)
		}
	}
}

// TestDKIMSignsOutbound: keys made with `sekisho dkim keygen` (RSA and
// Ed25519, both for campus.test), their printed records published in the
// test DNS. Outbound mail from a trusted client, through the smtp listener
// and through the lmtp listener, reaches the next hop with two signatures
// that go-msgauth verifies against those records, also for a body that ends
// in empty lines; an altered copy fails. Mail from the Internet claiming a
// campus.test From is not signed, nor is outbound mail whose From domain has
// no key.
func TestDKIMSignsOutbound(t *testing.T) {
	dir := t.TempDir()
	rsaKey, rsaRecord := dkimKeygen(t, dir, "campus.test", "r2026", "rsa")
	edKey, edRecord := dkimKeygen(t, dir, "campus.test", "e2026", "ed25519")
	ns := testdns.Start(t)
	campusDNS(ns)
	ns.Add(rsaRecord, edRecord)

	campusHop := harness.StartNextHop(t, false)
	out := harness.StartNextHop(t, false)
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+campusHop.Addr),
			routeTo([]string{"*"}, "smtp://"+out.Addr),
		},
		extra: fmt.Sprintf("dkim:\n  - {domain: campus.test, selector: r2026, key_file: %q}\n  - {domain: campus.test, selector: e2026, key_file: %q}\n", rsaKey, edKey),
	}
	gw, lmtp := startWithLMTP(t, s)

	// Through the smtp listener, from a campus server; the body ends in
	// empty lines (relaxed body canonicalization drops them: the signer
	// must too).
	body := "Hello,\r\n\r\nsee you.\r\n\r\n\r\n"
	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<friend@example.net>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(campusMsg("signed over smtp", body) + ".\r\n")
	if r := c.Read(); !strings.HasPrefix(r.String(), "250 2.0.0") {
		t.Fatalf("DATA: %v", r)
	}
	msgs := out.Messages()
	if len(msgs) != 1 {
		t.Fatalf("outbound next hop has %d messages, want 1", len(msgs))
	}
	m := msgs[0].Data
	if !bytes.HasSuffix(m, []byte("\r\n\r\nsee you.\r\n\r\n\r\n")) {
		t.Errorf("the body was changed on the way:\n%q", m)
	}
	if !bytes.HasPrefix(m, []byte("DKIM-Signature:")) {
		t.Errorf("the signature is not on top of the message:\n%s", m)
	}
	signedBy(t, "smtp listener", ns.Addr(), m, "rsa-sha256", "ed25519-sha256")
	altered := bytes.Replace(m, []byte("see you."), []byte("see you!"), 1)
	for _, v := range dkimVerify(t, ns.Addr(), altered) {
		if v.Err == nil {
			t.Errorf("a signature of d=%s still verifies after the body was altered", v.Domain)
		}
	}

	// Through the lmtp listener, with go-smtp's LMTP client.
	conn, err := net.DialTimeout("tcp", lmtp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lc := smtp.NewClientLMTP(conn)
	defer lc.Close()
	if err := lc.Hello("mail.campus.test"); err != nil {
		t.Fatal(err)
	}
	if err := lc.Mail("alice@campus.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := lc.Rcpt("friend@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := lc.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, campusMsg("signed over lmtp", body))
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		t.Fatalf("LMTP data: %v", err)
	}
	msgs = out.Messages()
	if len(msgs) != 2 {
		t.Fatalf("outbound next hop has %d messages, want 2", len(msgs))
	}
	signedBy(t, "lmtp listener", ns.Addr(), msgs[1].Data, "rsa-sha256", "ed25519-sha256")

	// A From domain without a key: relayed, not signed.
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<friend@example.net>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("From: Lab <lab@other.test>\r\n" + headerDate + "Subject: no key\r\n\r\nbody\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	msgs = out.Messages()
	if len(msgs) != 3 || bytes.Contains(msgs[2].Data, []byte("DKIM-Signature")) {
		t.Errorf("From other.test (no key): %d messages, last:\n%s", len(msgs), msgs[len(msgs)-1].Data)
	}

	// Inbound: an outside client, a campus.test From. Not signed.
	in := harness.DialFrom(t, outside, gw.SMTP)
	in.Expect("EHLO mx.example.net", "250")
	in.Expect("MAIL FROM:<bob@example.net>", "250")
	in.Expect("RCPT TO:<alice@campus.test>", "250")
	in.Expect("DATA", "354")
	in.SendRaw(campusMsg("inbound", "spoofed\r\n") + ".\r\n")
	if r := in.Read(); r.Code != 250 {
		t.Fatalf("inbound DATA: %v", r)
	}
	inbound := campusHop.Messages()
	if len(inbound) != 1 || bytes.Contains(inbound[0].Data, []byte("DKIM-Signature")) {
		t.Errorf("inbound mail: %d messages, want 1 unsigned:\n%s", len(inbound), inbound[len(inbound)-1].Data)
	}
}

// TestDKIMCheckConfigMissingKey: check-config names the file and the line of
// a key_file that does not exist, and fails.
func TestDKIMCheckConfigMissingKey(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.key")
	s := site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://127.0.0.1:2526")},
		extra:  fmt.Sprintf("dkim:\n  - domain: campus.test\n    selector: s1\n    key_file: %q\n", missing),
	}
	y := s.yaml(t)
	line := 0
	for i, l := range strings.Split(y, "\n") {
		if strings.HasPrefix(l, "    key_file:") {
			line = i + 1
		}
	}
	path := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("check-config accepted a missing key file:\n%s", out)
	}
	want := fmt.Sprintf("%s:%d:", path, line)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "nope.key") {
		t.Errorf("check-config said:\n%s\nwant it to name %q and the file", out, want)
	}
}

// TestDKIMKeyRotationBySIGHUP: the rotation of docs/outbound.md, "Key
// rotation": a message is signed with the key of selector r2026; a new key
// is made under s2027 and published, the configuration's entry is changed
// to it, and SIGHUP (systemctl reload) puts it in force without a restart:
// the next message carries one signature, s=s2027, which verifies. Then a
// configuration naming a key file that does not exist is refused at the
// next SIGHUP, and mail is still signed with s2027.
func TestDKIMKeyRotationBySIGHUP(t *testing.T) {
	dir := t.TempDir()
	oldKey, oldRecord := dkimKeygen(t, dir, "campus.test", "r2026", "rsa")
	ns := testdns.Start(t)
	campusDNS(ns)
	ns.Add(oldRecord)
	out := harness.StartNextHop(t, false)
	s := site{routes: []string{routeTo([]string{"*"}, "smtp://"+out.Addr)},
		extra: fmt.Sprintf("dkim:\n  - {domain: campus.test, selector: r2026, key_file: %q}\n", oldKey)}
	cfg := s.yaml(t)
	gw := harness.Start(t, cfg)
	send := func(subject string) []byte {
		t.Helper()
		c := harness.Dial(t, gw.SMTP)
		c.Expect("EHLO mail.campus.test", "250")
		c.Expect("MAIL FROM:<alice@campus.test>", "250")
		c.Expect("RCPT TO:<friend@example.net>", "250")
		c.Expect("DATA", "354")
		c.SendRaw(campusMsg(subject, "body\r\n") + ".\r\n")
		if r := c.Read(); r.Code != 250 {
			t.Fatalf("DATA: %v", r)
		}
		c.Expect("QUIT", "221")
		msgs := out.Messages()
		return msgs[len(msgs)-1].Data
	}
	selectors := func(m []byte) string {
		var sels []string
		for _, v := range regexp.MustCompile(`(?m)^DKIM-Signature:(?:.*\r\n[ \t])*.*?[ ;\t]s=([a-z0-9]+);`).FindAllSubmatch(m, -1) {
			sels = append(sels, string(v[1]))
		}
		return strings.Join(sels, ",")
	}

	m := send("before")
	signedBy(t, "before the rotation", ns.Addr(), m, "rsa-sha256")
	if got := selectors(m); got != "r2026" {
		t.Fatalf("before the rotation: selectors %q, want r2026:\n%s", got, m)
	}

	newKey, newRecord := dkimKeygen(t, dir, "campus.test", "s2027", "rsa")
	ns.Add(newRecord)
	path := filepath.Join(gw.Dir, "sekisho.yaml")
	rotated := strings.Replace(strings.Replace(cfg, "selector: r2026", "selector: s2027", 1), oldKey, newKey, 1)
	rewriteConfig(t, path, rotated)
	reloadAndWait(t, gw, "configuration reloaded", 1)
	m = send("after")
	signedBy(t, "after the rotation", ns.Addr(), m, "rsa-sha256")
	if got := selectors(m); got != "s2027" {
		t.Errorf("after SIGHUP: selectors %q, want s2027:\n%s", got, m)
	}

	rewriteConfig(t, path, strings.Replace(rotated, newKey, filepath.Join(dir, "missing.key"), 1))
	line := reloadAndWait(t, gw, "configuration reload refused", 1)
	if !strings.Contains(line, "missing.key") {
		t.Errorf("the refusal does not name the key file:\n%s", line)
	}
	if got := selectors(send("refused reload")); got != "s2027" {
		t.Errorf("after a refused reload: selectors %q, want s2027", got)
	}
}
