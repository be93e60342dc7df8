package e2e

// Inbound DKIM and DMARC (issue 18) through the built binary, against the
// test DNS server and a raw next hop that records every byte and command:
// messages signed on the fly by go-msgauth and by an independent signer
// (dkimpy's dkimsign, Debian's python3-dkim), RSA and Ed25519, relaxed and
// simple; every refusal decided before the next hop sees a DATA command.

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
)

// dkimKey is a signing key with its DNS record and, for dkimsign, its file.
type dkimKey struct {
	alg    string // rsa-sha256 or ed25519-sha256
	signer crypto.Signer
	file   string // the private key as dkimsign reads it
	txt    string // the p= record
}

func newDKIMKeys(t *testing.T) []dkimKey {
	t.Helper()
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	rsaFile := filepath.Join(dir, "rsa.pem")
	os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600)
	epub, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edFile := filepath.Join(dir, "ed.key")
	os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(ek.Seed())), 0o600)
	return []dkimKey{
		{alg: "rsa-sha256", signer: rk, file: rsaFile, txt: "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)},
		{alg: "ed25519-sha256", signer: ek, file: edFile, txt: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(epub)},
	}
}

// txtRR is a TXT record in zone-file syntax, its text cut in strings of at
// most 255 bytes (RFC 1035 §3.3.14; a DKIM key's are joined, RFC 6376 §3.6.2.2).
func txtRR(name, text string) string {
	var parts []string
	for len(text) > 200 {
		parts = append(parts, `"`+text[:200]+`"`)
		text = text[200:]
	}
	parts = append(parts, `"`+text+`"`)
	return name + " 300 IN TXT " + strings.Join(parts, " ")
}

// dmarcDNS serves the scenarios: spfpass.net's SPF passes for 127.0.0.2
// only, fwd.net's for any loopback client; rejecting.net publishes
// p=reject and the selectors rsa and ed of keys, slow (whose key lookup is
// never answered); nonepolicy.net p=none; pct0.net p=reject pct=0;
// parent.net p=none sp=reject; campus.test (the canary) publishes no DMARC
// record and the key of selector campus; 127.0.0.4 is lists.fwd.net by
// forward-confirmed reverse DNS.
func dmarcDNS(t *testing.T, keys []dkimKey) *testdns.Server {
	s := testdns.Start(t)
	campusDNS(s)
	s.AddZone("net.", 60)
	s.AddZone("127.in-addr.arpa.", 60)
	s.Add(
		`spfpass.net. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"`,
		`fwd.net. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`_dmarc.rejecting.net. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.nonepolicy.net. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.pct0.net. 300 IN TXT "v=DMARC1; p=reject; pct=0"`,
		`_dmarc.parent.net. 300 IN TXT "v=DMARC1; p=none; sp=reject"`,
		`slow._domainkey.rejecting.net. 300 IN TXT "v=DKIM1; p=AAAA"`,
		"4.0.0.127.in-addr.arpa. 300 IN PTR lists.fwd.net.",
		"lists.fwd.net. 300 IN A 127.0.0.4",
	)
	for _, k := range keys {
		sel := strings.SplitN(k.alg, "-", 2)[0]
		s.Add(txtRR(sel+"._domainkey.rejecting.net.", k.txt), txtRR(sel+"._domainkey.nonepolicy.net.", k.txt))
	}
	s.Add(txtRR("campus._domainkey.campus.test.", keys[1].txt))
	s.SetBehavior("slow._domainkey.rejecting.net.", dns.TypeTXT, testdns.Silent)
	return s
}

// signGo signs msg with go-msgauth.
func signGo(t *testing.T, msg, domain, selector string, k dkimKey, canon dkim.Canonicalization) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: k.signer,
		HeaderCanonicalization: canon, BodyCanonicalization: canon, HeaderKeys: []string{"From", "To", "Subject", "Date"}})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// signDkimpy signs msg with dkimpy's dkimsign (Debian's python3-dkim),
// which make test-deps installs.
func signDkimpy(t *testing.T, msg, domain, selector string, k dkimKey, canon dkim.Canonicalization) string {
	t.Helper()
	cmd := exec.Command("dkimsign", "--signalg", k.alg, "--hcanon", string(canon), "--bcanon", string(canon), selector, domain, k.file)
	cmd.Stdin = strings.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign (make test-deps installs python3-dkim): %v: %s", err, stderr.String())
	}
	// dkimsign ends its own lines with LF: the wire wants CRLF.
	return strings.ReplaceAll(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n", "\r\n")
}

// dmarcMessage is a message From the given address.
func dmarcMessage(from, subject string) string {
	return "From: Someone <" + from + ">\r\nTo: alice@campus.test\r\nSubject: " + subject + "\r\n" + headerDate +
		"Message-ID: <" + subject + "@example.net>\r\n\r\nHello,\r\n  with  spaces  \r\n\r\nand an end.\r\n"
}

// dmarcSend sends one message from src and returns the reply to its data.
func dmarcSend(t *testing.T, gw *harness.Gateway, src, mailFrom, msg string) harness.Reply {
	t.Helper()
	c := harness.DialFrom(t, src, gw.SMTP)
	defer c.Close()
	c.Expect("EHLO client.example.net", "250")
	c.Expect("MAIL FROM:<"+mailFrom+">", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw(msg + ".\r\n")
	r := c.Read()
	c.Expect("QUIT", "221")
	return r
}

// ourAuthResults returns the Authentication-Results fields of a relayed
// message that carry our authserv-id, unfolded, and whether the first is
// the first field of the message.
func ourAuthResults(data []byte) (fields []string, onTop bool) {
	names, values := headerFields(data)
	for i, n := range names {
		if strings.EqualFold(n, "Authentication-Results") && strings.HasPrefix(strings.TrimSpace(values[i]), "mx.campus.test;") {
			fields = append(fields, strings.Join(strings.Fields(values[i]), " "))
			onTop = onTop || i == 0
		}
	}
	return fields, onTop
}

// TestDKIMAndDMARCInbound walks every scenario of issue 18 through one
// gateway (spf and dmarc on, trusted_forwarders 127.0.0.3 and lists.fwd.net).
func TestDKIMAndDMARCInbound(t *testing.T) {
	if _, err := exec.LookPath("dkimsign"); err != nil {
		t.Fatal("dkimsign not found: make test-deps installs python3-dkim")
	}
	keys := newDKIMKeys(t)
	s := dmarcDNS(t, keys)
	hop := harness.StartRawNextHop(t)
	httpAddr := testenv.FreePort(t)
	gw := harness.Start(t, site{
		http:   httpAddr,
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		extra:  dnsExtra(s),
		checks: "spf: {}\ndmarc: {trusted_forwarders: [\"127.0.0.3\", lists.fwd.net]}",
	}.yaml(t))

	accepted := 0
	relayed := func(t *testing.T, r harness.Reply) []byte {
		t.Helper()
		if r.Code != 250 {
			t.Fatalf("DATA: %v, want 250", r)
		}
		accepted++
		msgs := hop.Messages()
		if len(msgs) != accepted {
			t.Fatalf("the next hop has %d messages, want %d", len(msgs), accepted)
		}
		return msgs[len(msgs)-1].Unstuffed()
	}
	oneAR := func(t *testing.T, data []byte, want ...string) string {
		t.Helper()
		ar, top := ourAuthResults(data)
		if len(ar) != 1 || !top {
			t.Fatalf("%d Authentication-Results of ours (on top: %t), want one on top:\n%s", len(ar), top, data)
		}
		for _, w := range want {
			if !strings.Contains(ar[0], w) {
				t.Errorf("Authentication-Results %q lacks %q", ar[0], w)
			}
		}
		return ar[0]
	}
	refused := func(t *testing.T, r harness.Reply, want, text string) {
		t.Helper()
		if !strings.HasPrefix(r.String(), want) || !strings.Contains(r.Text, text) {
			t.Fatalf("DATA: %v, want %s naming %q", r, want, text)
		}
	}

	signers := []struct {
		name string
		sign func(*testing.T, string, string, string, dkimKey, dkim.Canonicalization) string
	}{{"go-msgauth", signGo}, {"dkimsign", signDkimpy}}
	for _, sg := range signers {
		for _, k := range keys {
			for _, canon := range []dkim.Canonicalization{dkim.CanonicalizationRelaxed, dkim.CanonicalizationSimple} {
				sel := strings.SplitN(k.alg, "-", 2)[0]
				t.Run(fmt.Sprintf("aligned through DKIM only/%s/%s/%s", sg.name, k.alg, canon), func(t *testing.T) {
					// SPF passes for spfpass.net, which is not aligned with
					// the From: the signature alone makes DMARC pass.
					msg := sg.sign(t, dmarcMessage("news@rejecting.net", "signed-"+sg.name+"-"+sel+"-"+string(canon)), "rejecting.net", sel, k, canon)
					data := relayed(t, dmarcSend(t, gw, outside, "bob@spfpass.net", msg))
					oneAR(t, data, "spf=pass", "smtp.mailfrom=spfpass.net",
						"dkim=pass header.d=rejecting.net header.s="+sel+" header.a="+k.alg,
						"dmarc=pass (p=reject) header.from=rejecting.net policy.dmarc=reject")
				})
			}
		}
	}

	t.Run("modified body fails", func(t *testing.T) {
		msg := signGo(t, dmarcMessage("news@rejecting.net", "modified"), "rejecting.net", "rsa", keys[0], dkim.CanonicalizationRelaxed)
		msg = strings.Replace(msg, "and an end.", "and a changed end.", 1)
		refused(t, dmarcSend(t, gw, outside, "bob@spfpass.net", msg), "550 5.7.1", "rejecting.net")
		line := gw.WaitLog("body hash did not verify", 5*time.Second)
		if !strings.Contains(line, "dkim=fail d=rejecting.net s=rsa") {
			t.Errorf("log line does not give the signature's fail: %s", line)
		}
	})

	t.Run("missing key is permerror", func(t *testing.T) {
		// p=none: relayed, and the results show the signature's outcome.
		msg := signGo(t, dmarcMessage("news@nonepolicy.net", "nokey"), "nonepolicy.net", "gone", keys[1], dkim.CanonicalizationRelaxed)
		data := relayed(t, dmarcSend(t, gw, outside, "bob@spfpass.net", msg))
		oneAR(t, data, "dkim=permerror", "header.d=nonepolicy.net header.s=gone header.a=ed25519-sha256",
			"dmarc=fail (p=none dis=none) header.from=nonepolicy.net")
	})

	t.Run("key lookup timing out is 451 under p=reject", func(t *testing.T) {
		msg := signGo(t, dmarcMessage("news@rejecting.net", "slowkey"), "rejecting.net", "slow", keys[0], dkim.CanonicalizationRelaxed)
		refused(t, dmarcSend(t, gw, outside, "bob@spfpass.net", msg), "451 4.7.5", "could not be completed")
		line := gw.WaitLog("dkim=temperror d=rejecting.net s=slow", 5*time.Second)
		if !strings.Contains(line, "dmarc=temperror") {
			t.Errorf("log line: %s", line)
		}
	})

	t.Run("p=reject with SPF pass unaligned", func(t *testing.T) {
		refused(t, dmarcSend(t, gw, outside, "bob@spfpass.net", dmarcMessage("ceo@rejecting.net", "unaligned")), "550 5.7.1", "DMARC policy of rejecting.net")
	})

	t.Run("pct=0 is quarantine, tagged", func(t *testing.T) {
		data := relayed(t, dmarcSend(t, gw, outside, "bob@spfpass.net", dmarcMessage("ceo@pct0.net", "pct0")))
		oneAR(t, data, "dmarc=fail (p=reject pct=0 dis=quarantine) header.from=pct0.net")
		if !strings.Contains(string(data), "\r\nX-Sekisho-DMARC: quarantine; header.from=pct0.net\r\n") {
			t.Errorf("no quarantine tag:\n%s", data)
		}
	})

	t.Run("sp for a subdomain", func(t *testing.T) {
		refused(t, dmarcSend(t, gw, outside, "bob@spfpass.net", dmarcMessage("x@sub.parent.net", "sp")), "550 5.7.1", "sub.parent.net")
		data := relayed(t, dmarcSend(t, gw, outside, "bob@spfpass.net", dmarcMessage("x@parent.net", "p")))
		oneAR(t, data, "dmarc=fail (p=none dis=none) header.from=parent.net")
	})

	spoof := "Authentication-Results: mx.campus.test; dkim=pass header.d=campus.test; dmarc=pass header.from=campus.test\r\n" +
		dmarcMessage("it-helpdesk@campus.test", "spoof")
	t.Run("spoofed local From without a DMARC record", func(t *testing.T) {
		for i := 0; i < 2; i++ { // and its retry
			refused(t, dmarcSend(t, gw, outside, "bob@spfpass.net", spoof), "550 5.7.1", "campus.test")
		}
	})

	t.Run("spoofed local From that does not parse", func(t *testing.T) {
		// A From net/mail cannot read (the header check only tags
		// from-syntax by default) that a mail reader shows as ours.
		for _, from := range []string{
			"From: IT Helpdesk <it-helpdesk@Campus.Test\r\n",
			"From: it-helpdesk@campus.test. <\r\n",
			"From: \"IT\" it-helpdesk@campus.test,,\r\n",
		} {
			msg := from + strings.SplitN(dmarcMessage("x@y.example", "unparsed"), "\r\n", 2)[1]
			refused(t, dmarcSend(t, gw, outside, "bob@spfpass.net", msg), "550 5.7.1", "campus.test")
		}
	})

	t.Run("BDAT", func(t *testing.T) {
		// The same decisions for a message in chunks (RFC 3030): the
		// verdict comes with the last chunk, none of it went on before.
		bdat := func(msg string) harness.Reply {
			c := harness.DialFrom(t, outside, gw.SMTP)
			defer c.Close()
			c.Expect("EHLO client.example.net", "250")
			c.Expect("MAIL FROM:<bob@spfpass.net>", "250")
			c.Expect("RCPT TO:<alice@campus.test>", "250")
			half := len(msg) / 2
			c.SendRaw(fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half]))
			if r := c.Read(); r.Code != 250 {
				t.Fatalf("first chunk: %v", r)
			}
			c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:]))
			return c.Read()
		}
		refused(t, bdat(dmarcMessage("it-helpdesk@campus.test", "bdat-spoof")), "550 5.7.1", "campus.test")
		msg := signGo(t, dmarcMessage("news@rejecting.net", "bdat-signed"), "rejecting.net", "ed25519", keys[1], dkim.CanonicalizationSimple)
		data := relayed(t, bdat(msg))
		oneAR(t, data, "dkim=pass header.d=rejecting.net header.s=ed25519", "dmarc=pass")
	})

	t.Run("local From signed by the campus", func(t *testing.T) {
		msg := signDkimpy(t, dmarcMessage("it-helpdesk@campus.test", "campus-signed"), "campus.test", "campus", keys[1], dkim.CanonicalizationRelaxed)
		data := relayed(t, dmarcSend(t, gw, outside, "bob@spfpass.net", msg))
		oneAR(t, data, "dkim=pass header.d=campus.test", "dmarc=pass (local domain) header.from=campus.test")
	})

	for _, fw := range []struct{ name, src string }{{"network", "127.0.0.3"}, {"forward-confirmed name", "127.0.0.4"}} {
		t.Run("spoofed local From from a trusted forwarder by "+fw.name, func(t *testing.T) {
			data := relayed(t, dmarcSend(t, gw, fw.src, "list@fwd.net", spoof))
			oneAR(t, data, "spf=pass", "smtp.mailfrom=fwd.net", "dkim=none", "dmarc=none (local domain trusted forwarder) header.from=campus.test")
			if strings.Contains(string(data), "dkim=pass header.d=campus.test") {
				t.Errorf("the forged Authentication-Results reached the next hop:\n%s", data)
			}
		})
	}

	t.Run("explain -message", func(t *testing.T) {
		// Two signatures: one that verifies, one whose key is gone; the
		// file has LF line endings, as a Maildir file.
		msg := signGo(t, dmarcMessage("news@rejecting.net", "explained"), "nonepolicy.net", "gone", keys[1], dkim.CanonicalizationRelaxed)
		msg = signDkimpy(t, msg, "rejecting.net", "rsa", keys[0], dkim.CanonicalizationSimple)
		file := filepath.Join(t.TempDir(), "msg.eml")
		os.WriteFile(file, []byte(strings.ReplaceAll(msg, "\r\n", "\n")), 0o600)
		// The running gateway explains (its control socket): its dry run
		// counts no result in sekisho_auth_results_total (checked below).
		explain := func(file string, wantCode int) string {
			cmd := exec.Command(harness.Binary(t), "explain", "-config", "sekisho.yaml",
				"-ip", outside, "-helo", "client.example.net", "-from", "bob@spfpass.net", "-rcpt", "alice@campus.test", "-message", file)
			cmd.Dir = gw.Dir // where the configuration's control.sock is
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("sekisho explain: %v\n%s", err, out)
			}
			if code != wantCode {
				t.Fatalf("sekisho explain exited %d, want %d:\n%s", code, wantCode, out)
			}
			if !strings.Contains(string(out), "(explained by the running gateway on ") {
				t.Errorf("explain -message was not explained by the running gateway:\n%s", out)
			}
			return string(out)
		}
		out := explain(file, 0)
		for _, w := range []string{
			"why:    dkim=permerror d=nonepolicy.net s=gone a=ed25519-sha256",
			"why:    dkim=pass d=rejecting.net s=rsa a=rsa-sha256",
			"why:    dmarc=pass from=rejecting.net policy=reject",
			"Authentication-Results: mx.campus.test; spf=pass",
			"end of DATA                              250 2.0.0 would be relayed",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("explain output lacks %q:\n%s", w, out)
			}
		}
		// The same message with its body changed: the signature fails,
		// and explain tells the refusal a client would get.
		os.WriteFile(file, []byte(strings.Replace(strings.ReplaceAll(msg, "\r\n", "\n"), "and an end.", "and a changed end.", 1)), 0o600)
		out = explain(file, 1)
		for _, w := range []string{"why:    dkim=fail d=rejecting.net s=rsa", "end of DATA                              550 5.7.1 message refused by the DMARC policy of rejecting.net"} {
			if !strings.Contains(out, w) {
				t.Errorf("explain output lacks %q:\n%s", w, out)
			}
		}
		// A message larger than the control socket takes (4 MiB of
		// request, the message base64-encoded in it): explain says so
		// and names -direct, instead of the gateway's bare 413.
		big := dmarcMessage("news@rejecting.net", "big") + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 60000)
		os.WriteFile(file, []byte(big), 0o600)
		cmd := exec.Command(harness.Binary(t), "explain", "-config", "sekisho.yaml",
			"-ip", outside, "-helo", "client.example.net", "-from", "bob@spfpass.net", "-rcpt", "alice@campus.test", "-message", file)
		cmd.Dir = gw.Dir
		out2, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 69 || !strings.Contains(string(out2), "-direct explains it in this process") {
			t.Errorf("explain -message of %d bytes through the control socket: %v, want exit 69 naming -direct:\n%s", len(big), err, out2)
		}
	})

	// The next hop's log: a DATA command for each message accepted, none
	// for any refusal (decided before the data went anywhere).
	datas := 0
	for _, l := range hop.Lines() {
		if strings.EqualFold(strings.TrimSpace(l), "DATA") {
			datas++
		}
	}
	if datas != accepted || len(hop.Messages()) != accepted {
		t.Errorf("the next hop saw %d DATA commands and has %d messages, want %d (the accepted ones only)", datas, len(hop.Messages()), accepted)
	}

	// The metrics: one dkim result per signature, one dmarc per message.
	got := series(scrape(t, httpAddr), "sekisho_auth_results_total")
	for k, want := range map[string]float64{
		"method=dkim,result=pass": 10, "method=dkim,result=fail": 1, "method=dkim,result=permerror": 1, "method=dkim,result=temperror": 1,
		"method=dmarc,result=pass": 10, "method=dmarc,result=temperror": 1, "method=dmarc,result=none": 8,
	} {
		if got[k] != want {
			t.Errorf("sekisho_auth_results_total{%s} = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}

	// The report: cause dmarc (refused and deferred), and the week's top
	// spoofed From domains.
	gw.Signal(syscall.SIGTERM)
	if err := gw.Wait(30 * time.Second); err != nil {
		t.Fatalf("sekisho did not stop: %v", err)
	}
	today := time.Now().UTC().Format("2006-01-02")
	run := func(format string) string {
		cmd := exec.Command(harness.Binary(t), "report", "-config", "sekisho.yaml", "-from", today, "-to", today, "-format", format)
		cmd.Dir = gw.Dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sekisho report: %v\n%s", err, out)
		}
		return string(out)
	}
	var rep struct {
		Rows []struct {
			Cause              string
			Attempts, Distinct int64
		}
		TopDomains []struct {
			Cause, Domain string
			Rank          int
			Attempts      int64
		} `json:"top_domains"`
	}
	out := run("json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, out)
	}
	for _, r := range rep.Rows {
		// modified body, slow key (451), unaligned, sub.parent.net, the
		// spoof twice, three unparsed Froms, the spoof in BDAT: one
		// triplet (client network, sender, recipient).
		if r.Cause == "dmarc" && (r.Attempts != 10 || r.Distinct != 1) {
			t.Errorf("dmarc: attempts/distinct %d/%d, want 10/1", r.Attempts, r.Distinct)
		}
	}
	var top []string
	for _, d := range rep.TopDomains {
		if d.Cause == "dmarc" {
			top = append(top, fmt.Sprintf("%d. %s %d", d.Rank, d.Domain, d.Attempts))
		}
	}
	// Refusals only: the 451 of the key that timed out is not among them.
	if w := []string{"1. campus.test 6", "2. rejecting.net 2", "3. sub.parent.net 1"}; strings.Join(top, "; ") != strings.Join(w, "; ") {
		t.Errorf("top spoofed From domains %q, want %q", top, w)
	}
	if text := run("text"); !strings.Contains(text, "Top spoofed From domains (refused by DMARC)") || !strings.Contains(text, "campus.test") {
		t.Errorf("the text report lacks the top spoofed From domains:\n%s", text)
	}
}
