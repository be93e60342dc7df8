package e2e

// The MSA (issue 8): the submission (587, STARTTLS) and submissions (465,
// implicit TLS) listeners, SMTP AUTH PLAIN/LOGIN checked by a bind against a
// real slapd, the sender rules, the throttles and the certificate reload,
// all through the built binary with real clients (swaks, net/smtp, Python's
// smtplib) and a raw client for what those clients would not send.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/faultproxy"
	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

const msaHost = "msa.campus.test"

// msaOpts changes the MSA fixture before it starts.
type msaOpts struct {
	ldapURL string // default: the fixture's slapd
	auth    string // YAML flow mapping for `auth:`; "" keeps the defaults
	checks  string // more lines under checks: (account: {} is always on)
	extra   string // more top-level YAML (dkim: ...)
	limits  string // YAML lines under limits:

	// site makes last changes to the site before its YAML is written.
	site func(*site)
}

// msaFixture is a running MSA: a slapd with People, a campus next hop
// (campus.test), an Internet next hop (every other domain), and sekisho with
// smtp, submission and submissions listeners and a generated certificate.
type msaFixture struct {
	t     *testing.T
	gw    *harness.Gateway
	slapd *testslapd.Server
	hop   *harness.NextHop // campus.test
	ext   *harness.NextHop // "*": the Internet
	sub   string           // submission (587 role)
	subs  string           // submissions (465 role)
	cert  string           // paths of the certificate files sekisho reads
	key   string
	pool  *x509.CertPool // trusts the certificate sekisho started with

	secrets []string // every password a test typed: never in the log
}

func startMSA(t *testing.T, mod func(*msaOpts)) *msaFixture {
	t.Helper()
	f := &msaFixture{t: t, slapd: testslapd.Start(t)}
	f.hop = harness.StartNextHop(t, false)
	f.ext = harness.StartNextHop(t, false)
	o := msaOpts{ldapURL: f.slapd.URL()}
	if mod != nil {
		mod(&o)
	}
	tlsDir := t.TempDir()
	f.cert, f.key = selfSigned(t, tlsDir, msaHost)
	f.pool = x509.NewCertPool()
	if pemBytes, err := os.ReadFile(f.cert); err != nil || !f.pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("test certificate: %v", err)
	}
	f.sub, f.subs = testenv.FreePort(t), testenv.FreePort(t)

	s := ldapSite(t, o.ldapURL, "smtp://"+f.hop.Addr)
	s.hostname = msaHost
	s.routes = append(s.routes, routeTo([]string{"*"}, "smtp://"+f.ext.Addr))
	if o.checks != "" {
		s.checks += "\n" + o.checks
	}
	s.extra += fmt.Sprintf("tls: {cert: %q, key: %q}\n", f.cert, f.key)
	if o.auth != "" {
		s.extra += "auth: " + o.auth + "\n"
	}
	s.extra += o.extra
	s.limits = o.limits
	if o.site != nil {
		o.site(&s)
	}
	cfg := strings.Replace(s.yaml(t), "listen:\n", fmt.Sprintf("listen:\n  submission: %q\n  submissions: %q\n", f.sub, f.subs), 1)
	f.gw = harness.Start(t, cfg)
	// Every listener is bound before the first is announced; these lines
	// say that the submission listeners are served too.
	f.gw.WaitLog("listener=submission addr=", 10*time.Second)
	f.gw.WaitLog("listener=submissions addr=", 10*time.Second)
	t.Cleanup(f.checkNoSecrets)
	return f
}

// checkNoSecrets fails the test if a password, or the base64 form in which
// it crossed the wire, is in the gateway's log.
func (f *msaFixture) checkNoSecrets() {
	log := f.gw.Log()
	for _, p := range append(f.secrets, "alice-pw", "bob pw with spaces") {
		if p == "" {
			continue
		}
		forms := []string{p, base64.StdEncoding.EncodeToString([]byte(p)), strconv.Quote(p)}
		for _, u := range []string{"alice", "alice@campus.test", "bob", "carol"} {
			forms = append(forms, base64.StdEncoding.EncodeToString([]byte("\x00"+u+"\x00"+p)))
		}
		for _, s := range forms {
			if strings.Contains(log, s) {
				f.t.Errorf("the gateway log holds the password %q (as %q)", p, s)
			}
		}
	}
}

// binds counts the simple binds slapd received for a person's entry.
func (f *msaFixture) binds(uid string) int {
	needle := strings.ToLower(` BIND dn="` + testslapd.PersonByUID(uid).DN() + `"`)
	return strings.Count(strings.ToLower(f.slapd.Log()), needle)
}

// msaClient is a raw SMTP client that can speak TLS (STARTTLS or from the
// first byte), with a transcript printed when the test fails.
type msaClient struct {
	t    *testing.T
	f    *msaFixture
	conn net.Conn
	r    *bufio.Reader
	log  strings.Builder
}

// dial connects from src to the submission listener (STARTTLS later) or, with
// implicit, to the submissions listener (TLS at once), and reads the banner.
func (f *msaFixture) dial(t *testing.T, src string, implicit bool) *msaClient {
	t.Helper()
	addr := f.sub
	if implicit {
		addr = f.subs
	}
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &msaClient{t: t, f: f, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() {
		c.conn.Close()
		if t.Failed() {
			t.Logf("SMTP transcript (%s → %s):\n%s", src, addr, c.log.String())
		}
	})
	if implicit {
		c.handshake()
	}
	if r := c.read(); r.Code != 220 {
		t.Fatalf("banner: %v\n%s", r, c.log.String())
	}
	return c
}

func (c *msaClient) handshake() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{ServerName: msaHost, RootCAs: c.f.pool, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(15 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v\n%s", err, c.log.String())
	}
	tc.SetDeadline(time.Time{})
	c.log.WriteString("-- TLS " + tls.VersionName(tc.ConnectionState().Version) + " --\n")
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *msaClient) send(line string) {
	c.t.Helper()
	c.log.WriteString("C: " + strconv.Quote(line) + "\n")
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("write: %v\n%s", err, c.log.String())
	}
}

func (c *msaClient) read() harness.Reply {
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var texts []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.log.WriteString("S: <" + err.Error() + ">\n")
			return harness.Reply{Code: 0, Text: err.Error()}
		}
		line = strings.TrimRight(line, "\r\n")
		c.log.WriteString("S: " + line + "\n")
		if len(line) < 3 {
			return harness.Reply{Code: 0, Text: "malformed reply: " + line}
		}
		code, _ := strconv.Atoi(line[:3])
		if len(line) > 4 {
			texts = append(texts, line[4:])
		}
		if len(line) == 3 || line[3] == ' ' {
			return harness.Reply{Code: code, Text: strings.Join(texts, "\n")}
		}
	}
}

func (c *msaClient) cmd(line string) harness.Reply {
	c.t.Helper()
	c.send(line)
	return c.read()
}

// expect sends a command; the reply must start with want ("553 5.7.1").
func (c *msaClient) expect(line, want string) harness.Reply {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r.String(), want) {
		c.t.Fatalf("%s: got %q, want %q\n%s", line, r.String(), want, c.log.String())
	}
	return r
}

func (c *msaClient) startTLS() {
	c.t.Helper()
	c.expect("STARTTLS", "220")
	c.handshake()
}

// ehlo returns the extensions offered.
func (c *msaClient) ehlo() []string {
	c.t.Helper()
	r := c.expect("EHLO client.example.net", "250")
	return strings.Split(r.Text, "\n")[1:]
}

// plain runs AUTH PLAIN with an initial response and returns the reply.
func (c *msaClient) plain(user, password string) harness.Reply {
	c.t.Helper()
	c.f.secrets = append(c.f.secrets, password)
	return c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password)))
}

// login runs AUTH LOGIN without an initial response, answering the two
// challenges; it returns the first reply that is not the expected challenge,
// or the reply to the password.
func (c *msaClient) login(user, password string) harness.Reply {
	c.t.Helper()
	c.f.secrets = append(c.f.secrets, password)
	r := c.cmd("AUTH LOGIN")
	for _, step := range []struct{ challenge, answer string }{{"Username:", user}, {"Password:", password}} {
		if r.Code != 334 {
			return r
		}
		if got, _ := base64.StdEncoding.DecodeString(r.Text); string(got) != step.challenge {
			c.t.Fatalf("AUTH LOGIN challenge %q, want %q\n%s", got, step.challenge, c.log.String())
		}
		r = c.cmd(base64.StdEncoding.EncodeToString([]byte(step.answer)))
	}
	return r
}

// mustReply fails unless r starts with want.
func (c *msaClient) mustReply(what string, r harness.Reply, want string) {
	c.t.Helper()
	if !strings.HasPrefix(r.String(), want) {
		c.t.Fatalf("%s: got %q, want %q\n%s", what, r.String(), want, c.log.String())
	}
}

// closed reports whether the server closed the connection.
func (c *msaClient) closed(timeout time.Duration) bool {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.r.ReadByte()
	return err != nil && !msaIsTimeout(err)
}

func msaIsTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// session opens a session from src on 587, STARTTLS, EHLO, and AUTH PLAIN
// as user; the reply to AUTH must start with want.
func (f *msaFixture) session(t *testing.T, src, user, password, want string) *msaClient {
	t.Helper()
	c := f.dial(t, src, false)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	c.mustReply("AUTH PLAIN "+user, c.plain(user, password), want)
	return c
}

// msaReceived is the first Received field of a message, unfolded.
func msaReceived(t *testing.T, data []byte) string {
	t.Helper()
	var field []string
	for _, line := range strings.Split(string(data), "\r\n") {
		if len(field) > 0 {
			if line == "" || (line[0] != ' ' && line[0] != '\t') {
				break
			}
			field = append(field, strings.TrimSpace(line))
			continue
		}
		if line == "" {
			break
		}
		if strings.HasPrefix(strings.ToLower(line), "received:") {
			field = append(field, line)
		}
	}
	if field == nil {
		t.Fatalf("no Received field in\n%s", data)
	}
	return strings.Join(field, " ")
}

// msaHeaderCount counts the fields of a name in a message's header section.
func msaHeaderCount(data []byte, name string) int {
	hdr, _, _ := strings.Cut(string(data), "\r\n\r\n")
	n := 0
	for _, line := range strings.Split(hdr, "\r\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			n++
		}
	}
	return n
}

// msaCheckSubmitted checks what the next hop got from an authenticated client
// at src: Date and Message-ID present exactly once, a Received field saying
// ESMTPSA and naming neither the user nor the client's address.
func msaCheckSubmitted(t *testing.T, m harness.Message, src string, users ...string) {
	t.Helper()
	for _, name := range []string{"Date", "Message-ID"} {
		if n := msaHeaderCount(m.Data, name); n != 1 {
			t.Errorf("%d %s fields, want 1:\n%s", n, name, m.Data)
		}
	}
	rcv := msaReceived(t, m.Data)
	if !strings.Contains(rcv, "with ESMTPSA") {
		t.Errorf("Received does not say ESMTPSA: %s", rcv)
	}
	for _, s := range append(users, src, "["+src+"]", "client.example.net") {
		if strings.Contains(strings.ToLower(rcv), strings.ToLower(s)) {
			t.Errorf("Received names %q (auth.received: anonymous): %s", s, rcv)
		}
	}
}

// msaNoDateBody is a message without Date and Message-ID: the MSA adds them.
const msaNoDateBody = "From: Someone <alice@campus.test>\nTo: friend@example.net\nSubject: from swaks\n\nHello from the MSA.\n"

// TestMSASwaksNetSMTPAndSmtplib: good passwords, uid and mail form, with
// three real clients: swaks --tls --auth PLAIN and --auth LOGIN on 587,
// swaks --tlsc on 465, net/smtp with STARTTLS and Python's smtplib over
// implicit TLS. Each gets 235 and 250; the next hop has the message with Date
// and Message-ID added when the client sent none, and a Received field that
// says ESMTPSA and names neither the user nor the client's address.
func TestMSASwaksNetSMTPAndSmtplib(t *testing.T) {
	f := startMSA(t, nil)
	swaks := testenv.Command(t, "swaks", "swaks")
	runs := []struct {
		name, src, user, password, from string
		args                            []string
	}{
		{"587 STARTTLS PLAIN uid", "127.0.0.3", "alice", "alice-pw", "alice@campus.test",
			[]string{"--server", f.sub, "--tls", "--auth", "PLAIN"}},
		{"587 STARTTLS LOGIN mail form", "127.0.0.4", "alice@campus.test", "alice-pw", "a.smith@campus.test",
			[]string{"--server", f.sub, "--tls", "--auth", "LOGIN"}},
		{"465 implicit TLS PLAIN, mixed-case address in the directory", "127.0.0.5", "bob", "bob pw with spaces", "bob@campus.test",
			[]string{"--server", f.subs, "--tlsc", "--auth", "PLAIN"}},
	}
	for i, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "msg.txt")
			body := strings.Replace(msaNoDateBody, "alice@campus.test", run.from, 1)
			if err := os.WriteFile(data, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append(run.args, "--local-interface", run.src, "--ehlo", "client.example.net",
				"--auth-user", run.user, "--auth-password", run.password,
				"--from", run.from, "--to", "friend@example.net", "--data", "@"+data)
			out, err := exec.Command(swaks, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("swaks %v: %v\n%s", args, err, out)
			}
			for _, want := range []string{"235 2.7.0", "250 2.0.0"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("swaks output lacks %q:\n%s", want, out)
				}
			}
			msgs := f.ext.Messages()
			if len(msgs) != i+1 {
				t.Fatalf("the next hop has %d messages, want %d", len(msgs), i+1)
			}
			m := msgs[i]
			if m.From != run.from || len(m.To) != 1 || m.To[0] != "friend@example.net" {
				t.Errorf("envelope %q → %q", m.From, m.To)
			}
			msaCheckSubmitted(t, m, run.src, run.user, strings.Split(run.user, "@")[0])
			if !bytes.Contains(m.Data, []byte("Subject: from swaks\r\n")) || !bytes.Contains(m.Data, []byte("\r\n\r\nHello from the MSA.\r\n")) {
				t.Errorf("body changed:\n%s", m.Data)
			}
		})
	}

	t.Run("net/smtp STARTTLS PLAIN", func(t *testing.T) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}
		conn, err := d.Dial("tcp", f.sub)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClient(conn, msaHost)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.example.net"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Errorf("AUTH offered before STARTTLS")
		}
		if err := c.StartTLS(&tls.Config{ServerName: msaHost, RootCAs: f.pool}); err != nil {
			t.Fatal(err)
		}
		if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
			t.Errorf("AUTH after STARTTLS: %v %q", ok, mechs)
		}
		if err := c.Auth(smtp.PlainAuth("", "alice@campus.test", "alice-pw", msaHost)); err != nil {
			t.Fatalf("AUTH: %v", err)
		}
		msg := "From: alice@campus.test\r\nTo: carol@campus.test\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n" +
			"Message-ID: <own-id@campus.test>\r\nSubject: net/smtp\r\n\r\nbody\r\n"
		if err := c.Mail("alice+lists@campus.test"); err != nil {
			t.Fatalf("MAIL from the user's +tag address: %v", err)
		}
		if err := c.Rcpt("carol@campus.test"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			t.Fatalf("end of data: %v", err)
		}
		c.Quit()
		msgs := f.hop.Messages()
		if len(msgs) != 1 {
			t.Fatalf("campus next hop: %d messages", len(msgs))
		}
		msaCheckSubmitted(t, msgs[0], "127.0.0.6", "alice")
		if !strings.Contains(string(msgs[0].Data), "Message-ID: <own-id@campus.test>\r\n") ||
			!strings.Contains(string(msgs[0].Data), "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n") {
			t.Errorf("the client's own Date and Message-ID were not kept:\n%s", msgs[0].Data)
		}
	})

	t.Run("Python smtplib SMTP_SSL LOGIN", func(t *testing.T) {
		py := testenv.Command(t, "python3", "python3")
		host, port, _ := net.SplitHostPort(f.subs)
		script := `import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.check_hostname = False  # the chain is verified; the name is msa.campus.test, we dial 127.0.0.1
s = smtplib.SMTP_SSL(sys.argv[1], int(sys.argv[2]), local_hostname="client.example.net",
                     source_address=("127.0.0.7", 0), context=ctx)
s.ehlo()
s.user, s.password = "bob@campus.test", "bob pw with spaces"
code, text = s.auth("LOGIN", s.auth_login)
print("AUTH", code)
s.sendmail("Bob@Campus.Test", ["friend@example.net"], b"From: Bob <bob@campus.test>\r\nSubject: smtplib\r\n\r\nhi\r\n")
print("SENT")
s.quit()
`
		out, err := exec.Command(py, "-c", script, host, port, f.cert).CombinedOutput()
		if err != nil {
			t.Fatalf("smtplib: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "AUTH 235") || !strings.Contains(string(out), "SENT") {
			t.Fatalf("smtplib:\n%s", out)
		}
		msgs := f.ext.Messages()
		m := msgs[len(msgs)-1]
		if !strings.EqualFold(m.From, "Bob@Campus.Test") {
			t.Fatalf("last message is from %q", m.From)
		}
		msaCheckSubmitted(t, m, "127.0.0.7", "bob")
	})
}

// TestMSAAuthOnlyInsideTLS: on 587 AUTH is not offered before STARTTLS and is
// refused there with 538 5.7.11, MAIL before AUTH is 530 5.7.0 (in clear and
// inside TLS); after STARTTLS AUTH is offered. On 465 AUTH is offered at
// once, and STARTTLS is not.
func TestMSAAuthOnlyInsideTLS(t *testing.T) {
	f := startMSA(t, nil)
	before := f.binds("alice")
	c := f.dial(t, "127.0.0.3", false)
	ext := c.ehlo()
	if msaHasExt(ext, "AUTH") || !msaHasExt(ext, "STARTTLS") {
		t.Errorf("EHLO before TLS offers %q: want STARTTLS and no AUTH", ext)
	}
	c.mustReply("AUTH PLAIN in clear", c.plain("alice", "alice-pw"), "538 5.7.11")
	c.mustReply("AUTH LOGIN in clear", c.cmd("AUTH LOGIN"), "538 5.7.11")
	c.expect("MAIL FROM:<alice@campus.test>", "530 5.7.0")
	c.startTLS()
	ext = c.ehlo()
	if !msaHasExt(ext, "AUTH PLAIN LOGIN") || msaHasExt(ext, "STARTTLS") {
		t.Errorf("EHLO inside TLS offers %q: want AUTH PLAIN LOGIN and no STARTTLS", ext)
	}
	c.expect("MAIL FROM:<alice@campus.test>", "530 5.7.0")
	c.expect("RCPT TO:<friend@example.net>", "503")
	if n := f.binds("alice") - before; n != 0 {
		t.Errorf("%d binds for a password sent in clear, want 0", n)
	}
	c.mustReply("AUTH PLAIN", c.plain("alice", "alice-pw"), "235 2.7.0")
	c.expect("AUTH PLAIN", "503 5.5.1")
	c.expect("MAIL FROM:<alice@campus.test>", "250")

	i := f.dial(t, "127.0.0.4", true)
	ext = i.ehlo()
	if !msaHasExt(ext, "AUTH PLAIN LOGIN") || msaHasExt(ext, "STARTTLS") {
		t.Errorf("EHLO on submissions offers %q: want AUTH and no STARTTLS", ext)
	}
	i.expect("MAIL FROM:<alice@campus.test>", "530 5.7.0")
	i.mustReply("AUTH LOGIN", i.login("alice", "alice-pw"), "235 2.7.0")

	// Port 25 offers no AUTH at all, even with TLS.
	p := harness.DialFrom(t, outside, f.gw.SMTP)
	r := p.Expect("EHLO client.example.net", "250")
	if strings.Contains(r.Text, "AUTH") {
		t.Errorf("the smtp listener offers AUTH: %q", r.Text)
	}
	p.Expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-pw")), "502 5.5.1")
}

func msaHasExt(ext []string, want string) bool {
	for _, e := range ext {
		if strings.EqualFold(e, want) || strings.HasPrefix(strings.ToUpper(e), strings.ToUpper(want)+" ") {
			return true
		}
	}
	return false
}

// TestMSAWrongAndEmptyPassword: a wrong password is 535 5.7.8 after one bind;
// an empty password (PLAIN and LOGIN) is 535 5.7.8 without any bind (an empty
// password would make an unauthenticated bind, which succeeds); an unknown
// user is 535 too; the session goes on and the right password then works.
func TestMSAWrongAndEmptyPassword(t *testing.T) {
	f := startMSA(t, nil)
	c := f.dial(t, "127.0.0.3", false)
	c.ehlo()
	c.startTLS()
	c.ehlo()

	b0 := f.binds("alice")
	c.mustReply("AUTH PLAIN wrong password", c.plain("alice", "not-alices-pw"), "535 5.7.8")
	if n := f.binds("alice") - b0; n != 1 {
		t.Errorf("wrong password: %d binds for alice, want 1 (the directory decides)", n)
	}
	b1 := f.binds("alice")
	c.mustReply("AUTH PLAIN empty password", c.plain("alice", ""), "535 5.7.8")
	c.mustReply("AUTH LOGIN empty password", c.login("alice@campus.test", ""), "535 5.7.8")
	if n := f.binds("alice") - b1; n != 0 {
		t.Errorf("empty password: %d binds for alice, want 0", n)
	}
	c.mustReply("AUTH LOGIN unknown user", c.login("nosuchuser", "whatever-pw"), "535 5.7.8")
	c.mustReply("AUTH PLAIN right password", c.plain("alice", "alice-pw"), "235 2.7.0")
	f.gw.WaitLog("outcome=accepted mechanism=PLAIN", 5*time.Second)
}

// TestMSASenderRules: an authenticated user may send only as one of their own
// addresses: another user's sender is 553 5.7.1, the null sender is refused
// (5xx), and a From field naming someone else is 550 5.7.1 at the end of the
// data, with nothing reaching the next hop. Their own alternate address and
// +tag pass.
func TestMSASenderRules(t *testing.T) {
	f := startMSA(t, nil)
	c := f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0")
	c.expect("MAIL FROM:<bob@campus.test>", "553 5.7.1")
	c.expect("MAIL FROM:<Bob@Campus.Test>", "553 5.7.1")
	c.expect("MAIL FROM:<alice@example.net>", "553 5.7.1")
	r := c.cmd("MAIL FROM:<>")
	if r.Code < 500 || r.Code > 599 || !strings.HasPrefix(r.Text, "5.") {
		t.Errorf("null sender: %v, want a 5xx with an enhanced code", r)
	}
	c.expect("MAIL FROM:<a.smith@campus.test>", "250")
	c.expect("RCPT TO:<friend@example.net>", "250")
	c.expect("DATA", "354")
	c.send("From: Bob <bob@campus.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nSubject: forged\r\n\r\nbody\r\n.")
	c.mustReply("forged From", c.read(), "550 5.7.1")

	c.expect("MAIL FROM:<ALICE+news@campus.test>", "250")
	c.expect("RCPT TO:<friend@example.net>", "250")
	c.expect("DATA", "354")
	c.send("From: Alice <alice.smith@campus.test>\r\nSubject: own\r\n\r\nbody\r\n.")
	c.mustReply("own From", c.read(), "250 2.0.0")
	msgs := f.ext.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "Subject: own") {
		t.Fatalf("next hop: %+v (only the message with the user's own From may arrive)", msgs)
	}
}

// TestMSADirectoryDown: with slapd stopped, every login (right or wrong
// password) is 454 4.7.0, never 535; started again, the right password
// works without restarting sekisho.
func TestMSADirectoryDown(t *testing.T) {
	f := startMSA(t, nil)
	f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0") // warm pool
	f.slapd.Stop()
	c := f.dial(t, "127.0.0.3", false)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	c.mustReply("right password, slapd stopped", c.plain("alice", "alice-pw"), "454 4.7.0")
	c.mustReply("wrong password, slapd stopped", c.plain("alice", "wrong-while-down"), "454 4.7.0")
	c.mustReply("LOGIN, slapd stopped", c.login("bob", "bob pw with spaces"), "454 4.7.0")
	f.slapd.Restart()
	c.mustReply("right password, slapd back", c.plain("alice", "alice-pw"), "235 2.7.0")
}

// TestMSADirectoryFrozen: the TCP path to slapd stops forwarding without
// closing; a login gets 454 4.7.0 within the LDAP timeout (1 s) and slack,
// never 535, and works again once the path thaws.
func TestMSADirectoryFrozen(t *testing.T) {
	var proxy *faultproxy.Proxy
	f := startMSA(t, func(o *msaOpts) {
		proxy = faultproxy.Start(t, strings.TrimPrefix(o.ldapURL, "ldap://"))
		o.ldapURL = "ldap://" + proxy.Addr()
	})
	f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0")
	c := f.dial(t, "127.0.0.4", false)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	proxy.Freeze()
	for _, pw := range []string{"alice-pw", "wrong-while-frozen"} {
		start := time.Now()
		c.mustReply("AUTH while frozen", c.plain("alice", pw), "454 4.7.0")
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("a frozen directory held AUTH for %v (LDAP timeout 1s)", took)
		}
	}
	proxy.Thaw()
	c.mustReply("AUTH after thaw", c.plain("alice", "alice-pw"), "235 2.7.0")
}

// TestMSABruteForcePerUser: auth.max_failures (5) failed logins for one user,
// from five different addresses, make the sixth attempt from a sixth address
// 454 4.7.0 without a bind — even with the right password, which is what a
// guesser would otherwise find; the connection stays open, and another user
// from that address is not affected.
func TestMSABruteForcePerUser(t *testing.T) {
	f := startMSA(t, nil)
	for i := 11; i <= 15; i++ {
		src := fmt.Sprintf("127.0.0.%d", i)
		user := "alice"
		if i%2 == 0 {
			user = "alice@campus.test" // the other name of the same entry counts too
		}
		f.session(t, src, user, fmt.Sprintf("guess-%d", i), "535 5.7.8")
	}
	before := f.binds("alice")
	c := f.dial(t, "127.0.0.16", false)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	c.mustReply("6th attempt, wrong password", c.plain("alice", "guess-16"), "454 4.7.0")
	c.mustReply("7th attempt, right password", c.login("alice", "alice-pw"), "454 4.7.0")
	if n := f.binds("alice") - before; n != 0 {
		t.Errorf("%d binds for alice once her budget was spent, want 0", n)
	}
	c.expect("NOOP", "250")
	c.mustReply("another user from the same address", c.plain("bob", "bob pw with spaces"), "235 2.7.0")
	line := f.gw.WaitLog("too many failures for this user", 5*time.Second)
	if !strings.Contains(line, `reply="454 4.7.0`) || !logSessionRE.MatchString(line) {
		t.Errorf("the throttled attempt's line has no reply or session: %s", line)
	}
	loggedOnce(t, settledLog(t, f.gw, f.sub), "127.0.0.16", c.log.String())
}

// TestMSABruteForcePerIP: five failed logins from one address (any user
// names) make the sixth attempt from it 421 4.7.0 and a disconnect, without
// a bind, even for a right password; a successful login by another user from
// the same address in between does not reset the address's count. Another
// address is not affected.
func TestMSABruteForcePerIP(t *testing.T) {
	f := startMSA(t, nil)
	const src = "127.0.0.21"
	a := f.dial(t, src, false)
	a.ehlo()
	a.startTLS()
	a.ehlo()
	for i, user := range []string{"guess1", "carol", "root", "alice"} {
		a.mustReply("failure "+strconv.Itoa(i+1), a.plain(user, "try-"+user), "535 5.7.8")
	}
	b := f.session(t, src, "bob", "bob pw with spaces", "235 2.7.0")
	c := f.dial(t, src, false)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	c.mustReply("failure 5", c.login("admin", "try-admin"), "535 5.7.8")
	before := f.binds("alice")
	c.mustReply("6th attempt from the address", c.plain("alice", "alice-pw"), "421 4.7.0")
	if !c.closed(10 * time.Second) {
		t.Errorf("the connection stayed open after 421")
	}
	if n := f.binds("alice") - before; n != 0 {
		t.Errorf("%d binds after the address's budget was spent, want 0", n)
	}
	// A new connection from the address is refused the same way.
	d := f.dial(t, src, true)
	d.ehlo()
	d.mustReply("a new session from the address", d.plain("bob", "bob pw with spaces"), "421 4.7.0")
	f.session(t, "127.0.0.22", "alice", "alice-pw", "235 2.7.0")
	line := f.gw.WaitLog("too many failures from this address", 5*time.Second)
	if !strings.Contains(line, `reply="421 4.7.0`) || !logSessionRE.MatchString(line) {
		t.Errorf("the throttled attempt's line has no reply or session: %s", line)
	}
	// Each 535 and 421 is one line, the throttled ones included.
	loggedOnce(t, settledLog(t, f.gw, f.sub), src, a.log.String()+b.log.String()+c.log.String()+d.log.String())
}

// TestMSAHourlyRecipientLimit: with auth.max_recipients_per_hour: 3 the
// fourth recipient is 450 4.7.1, logged at WARN with the user; the three
// accepted are delivered; the user stays limited in the next transaction,
// and another user is not.
func TestMSAHourlyRecipientLimit(t *testing.T) {
	f := startMSA(t, func(o *msaOpts) { o.auth = "{max_recipients_per_hour: 3}" })
	c := f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0")
	c.expect("MAIL FROM:<alice@campus.test>", "250")
	for i := 1; i <= 3; i++ {
		c.expect(fmt.Sprintf("RCPT TO:<friend%d@example.net>", i), "250")
	}
	c.expect("RCPT TO:<friend4@example.net>", "450 4.7.1")
	line := f.gw.WaitLog("user sending limit exceeded", 5*time.Second)
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "user=alice") {
		t.Errorf("the limit was not logged at WARN with the user: %s", line)
	}
	c.expect("DATA", "354")
	c.send("From: alice@campus.test\r\nSubject: three\r\n\r\nbody\r\n.")
	c.mustReply("DATA", c.read(), "250")
	if m := f.ext.Messages(); len(m) != 1 || len(m[0].To) != 3 {
		t.Fatalf("next hop: %+v", m)
	}
	c.expect("MAIL FROM:<alice@campus.test>", "250")
	c.expect("RCPT TO:<friend5@example.net>", "450 4.7.1")

	b := f.session(t, "127.0.0.4", "bob", "bob pw with spaces", "235 2.7.0")
	b.expect("MAIL FROM:<bob@campus.test>", "250")
	b.expect("RCPT TO:<friend@example.net>", "250")
}

// TestMSANoGreylistAndRelay: on a site with greylisting on (no exemptions),
// an outside client on port 25 is greylisted and may not relay (554 5.7.1);
// an authenticated user from the same address is not greylisted and relays
// to an external domain.
func TestMSANoGreylistAndRelay(t *testing.T) {
	f := startMSA(t, func(o *msaOpts) { o.checks = "greylist: {delay: 5m, exempt: []}" })
	p := harness.DialFrom(t, outside, f.gw.SMTP)
	p.Expect("EHLO client.example.net", "250")
	p.Expect("MAIL FROM:<someone@example.org>", "250")
	p.Expect("RCPT TO:<carol@campus.test>", "451 4.7.1")
	p.Expect("RCPT TO:<friend@example.net>", "554 5.7.1")
	p.Expect("MAIL FROM:<alice@campus.test>", "503") // a transaction is open
	p.Expect("RSET", "250")
	p.Expect("MAIL FROM:<alice@campus.test>", "250")
	p.Expect("RCPT TO:<friend@example.net>", "554 5.7.1") // claiming a campus sender changes nothing

	c := f.session(t, outside, "alice", "alice-pw", "235 2.7.0")
	c.expect("MAIL FROM:<alice@campus.test>", "250")
	c.expect("RCPT TO:<carol@campus.test>", "250")
	c.expect("DATA", "354")
	c.send("From: alice@campus.test\r\nSubject: first, local\r\n\r\nbody\r\n.")
	c.mustReply("DATA", c.read(), "250 2.0.0")
	c.expect("MAIL FROM:<alice@campus.test>", "250")
	c.expect("RCPT TO:<friend@example.net>", "250")
	c.expect("DATA", "354")
	c.send("From: alice@campus.test\r\nSubject: first, external\r\n\r\nbody\r\n.")
	c.mustReply("DATA", c.read(), "250 2.0.0")
	if n, m := len(f.hop.Messages()), len(f.ext.Messages()); n != 1 || m != 1 {
		t.Errorf("campus next hop %d, Internet next hop %d messages; want 1 and 1", n, m)
	}
}

// TestMSACheckConfigNeedsTLS: check-config refuses a submission listener
// without a certificate, or without a directory, naming the file and the line
// of the listener; with both it passes and prints the auth defaults.
func TestMSACheckConfigNeedsTLS(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sekisho.yaml")
	secret := filepath.Join(dir, "ldap.secret")
	os.WriteFile(secret, []byte("x\n"), 0o600)
	cert, key := selfSigned(t, dir, msaHost)
	ldapYAML := fmt.Sprintf("ldap:\n  urls: [\"ldap://127.0.0.1:389\"]\n  base_dn: %q\n  bind_dn: %q\n  bind_password_file: %q\n  canary: %q\n",
		testslapd.PeopleDN, testslapd.ServiceDN, secret, testslapd.Canary)
	tlsYAML := fmt.Sprintf("tls: {cert: %q, key: %q}\n", cert, key)
	head := "hostname: msa.campus.test\nlisten:\n  smtp: \"127.0.0.1:2525\"\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"submission without tls", head + "  submission: \"127.0.0.1:2587\"\n" + ldapYAML, path + ":4: "},
		{"submissions without tls", head + "  submissions: \"127.0.0.1:2465\"\n" + ldapYAML, path + ":4: "},
		{"submission without ldap", head + "  submission: \"127.0.0.1:2587\"\n" + tlsYAML, path + ":4: "},
		{"a bad auth setting", head + "  submission: \"127.0.0.1:2587\"\n" + tlsYAML + ldapYAML + "auth:\n  received: everything\n", path + ":13: "},
	}
	for _, tc := range cases {
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
		if err == nil {
			t.Errorf("%s: check-config accepted it:\n%s", tc.name, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: check-config said %q, want file:line %q", tc.name, out, tc.want)
		}
	}
	campus := "local_domains: [campus.test]\nroutes: [{domains: [campus.test], next_hops: [\"smtp://127.0.0.1:9\"]}]\n"
	os.WriteFile(path, []byte(head+"  submission: \"127.0.0.1:2587\"\n  submissions: \"127.0.0.1:2465\"\n"+tlsYAML+ldapYAML+campus), 0o600)
	out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("a complete MSA config was refused: %v\n%s", err, out)
	}
	for _, want := range []string{"max_failures: 5", "max_recipients_per_hour: 500", "received: anonymous", "auth_filter:", "address_attributes:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective settings lack %q:\n%s", want, out)
		}
	}
}

// TestMSADeployConfigs: every example config under deploy/ passes
// check-config, with the files it names (under /etc/sekisho/) made for the
// test: the shipped bad-domain list, a password, a certificate and its key
// (check-config opens every file, as serve does).
func TestMSADeployConfigs(t *testing.T) {
	files, _ := filepath.Glob("../deploy/*.yaml")
	if len(files) == 0 {
		t.Fatal("no deploy/*.yaml")
	}
	sawMSA := false
	for _, file := range files {
		cfg, text := deployConfig(t, file)
		out, err := exec.Command(harness.Binary(t), "check-config", "-config", cfg).CombinedOutput()
		if err != nil {
			t.Errorf("%s: check-config: %v\n%s", file, err, out)
		}
		if strings.Contains(text, "submission:") {
			sawMSA = true
		}
	}
	if !sawMSA {
		t.Errorf("no example config under deploy/ has a submission listener")
	}
}

// deployConfig copies the example config file under deploy/ into a
// temporary directory with the files it names under /etc/sekisho/ made
// there (the shipped bad-domain list, a password, a certificate and its
// key), and returns the copy's path and text.
func deployConfig(t *testing.T, file string) (path, text string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := selfSigned(t, t.TempDir(), msaHost)
	for _, p := range regexp.MustCompile(`/etc/sekisho/[^\s"',\]}]+`).FindAllString(string(data), -1) {
		local := filepath.Join(dir, strings.TrimPrefix(p, "/etc/sekisho/"))
		os.MkdirAll(filepath.Dir(local), 0o700)
		content := []byte("secret\n")
		switch base := filepath.Base(p); {
		case base == "baddomains.txt":
			content, _ = os.ReadFile("../baddomains.txt")
		case strings.HasSuffix(base, ".pem") && strings.Contains(base, "key"):
			content, _ = os.ReadFile(key)
		case strings.HasSuffix(base, ".pem"):
			content, _ = os.ReadFile(cert)
		}
		os.WriteFile(local, content, 0o600)
	}
	text = strings.ReplaceAll(string(data), "/etc/sekisho/", dir+"/")
	path = filepath.Join(dir, filepath.Base(file))
	os.WriteFile(path, []byte(text), 0o600)
	return path, text
}

// TestMSACertificateReload: SIGHUP reloads the certificate: after the files
// are replaced with a new pair, new handshakes on 465 and STARTTLS on 587
// present it; after they are replaced with a pair that does not match, the
// reload is refused and logged, and the previous certificate is still served.
func TestMSACertificateReload(t *testing.T) {
	f := startMSA(t, nil)
	oldDER := msaCertDER(t, f.cert)
	if got := f.served(t, true); !bytes.Equal(got, oldDER) {
		t.Fatal("465 does not serve the configured certificate")
	}

	// A new pair, written next to the old files and renamed over them.
	newDir := t.TempDir()
	newCert, newKey := selfSigned(t, newDir, msaHost)
	newDER := msaCertDER(t, newCert)
	if pemBytes, err := os.ReadFile(newCert); err != nil || !f.pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("new certificate: %v", err)
	}
	msaReplace(t, newCert, f.cert)
	msaReplace(t, newKey, f.key)
	f.gw.Signal(syscall.SIGHUP)
	f.gw.WaitLog("tls: certificate reloaded", 10*time.Second)
	for _, implicit := range []bool{true, false} {
		if got := f.served(t, implicit); !bytes.Equal(got, newDER) {
			t.Errorf("implicit TLS %v: the old certificate is still served after the reload", implicit)
		}
	}

	// A broken pair: a third certificate with the second pair's key. The
	// loader refuses the reload, naming the files.
	brokenDir := t.TempDir()
	brokenCert, _ := selfSigned(t, brokenDir, msaHost)
	msaReplace(t, brokenCert, f.cert)
	f.gw.Signal(syscall.SIGHUP)
	line := f.gw.WaitLog("configuration reload refused", 10*time.Second)
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, f.cert) || !strings.Contains(line, "private key does not match") {
		t.Errorf("a refused certificate is not logged as an error naming the file: %s", line)
	}
	for _, implicit := range []bool{true, false} {
		if got := f.served(t, implicit); !bytes.Equal(got, newDER) {
			t.Errorf("implicit TLS %v: after a refused reload the served certificate is not the last good one", implicit)
		}
	}
	// And the gateway still works end to end.
	f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0")
}

func msaCertDER(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	return blk.Bytes
}

func msaReplace(t *testing.T, from, to string) {
	t.Helper()
	tmp := to + ".new"
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// served is the certificate a new handshake presents, on 465 or after
// STARTTLS on 587.
func (f *msaFixture) served(t *testing.T, implicit bool) []byte {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	addr := f.sub
	if implicit {
		addr = f.subs
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if !implicit {
		r := bufio.NewReader(conn)
		for _, step := range []string{"", "EHLO client.example.net\r\n", "STARTTLS\r\n"} {
			if step != "" {
				conn.Write([]byte(step))
			}
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("before STARTTLS: %v", err)
				}
				if len(line) < 4 || line[3] == ' ' {
					break
				}
			}
		}
	}
	// Any certificate is taken: the test compares it, not the client.
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: msaHost})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return tc.ConnectionState().PeerCertificates[0].Raw
}

// TestMSAHourlyMessageLimit: with max_messages_per_hour: 2, the third
// message of the hour is refused at its first recipient with 450 4.7.1 (RFC
// 5321 §4.3.2 allows 450 at RCPT, not at MAIL), logged at WARN; another
// user is not affected.
func TestMSAHourlyMessageLimit(t *testing.T) {
	f := startMSA(t, func(o *msaOpts) { o.auth = "{max_messages_per_hour: 2}" })
	c := f.session(t, "127.0.0.3", "alice", "alice-pw", "235 2.7.0")
	for i := 1; i <= 2; i++ {
		c.expect("MAIL FROM:<alice@campus.test>", "250 2.1.0")
		c.expect(fmt.Sprintf("RCPT TO:<friend%d@example.net>", i), "250 2.1.5")
		c.expect("DATA", "354")
		c.send("From: alice@campus.test\r\nSubject: n\r\n\r\nbody\r\n.")
		c.mustReply("DATA", c.read(), "250")
	}
	c.expect("MAIL FROM:<alice@campus.test>", "250 2.1.0")
	c.expect("RCPT TO:<friend3@example.net>", "450 4.7.1")
	line := f.gw.WaitLog("user sending limit exceeded", 5*time.Second)
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "user=alice") {
		t.Errorf("the limit was not logged at WARN with the user: %s", line)
	}
	if m := f.ext.Messages(); len(m) != 2 {
		t.Fatalf("next hop holds %d messages, want 2", len(m))
	}
	b := f.session(t, "127.0.0.4", "bob", "bob pw with spaces", "235 2.7.0")
	b.expect("MAIL FROM:<bob@campus.test>", "250")
	b.expect("RCPT TO:<friend@example.net>", "250")
}

// TestMSAHandshakeNotStartedIsDebug: a load balancer's TCP check of the
// submissions listener (connect, then close or reset before a byte) is a
// handshake that never started: a DEBUG line, no INFO line per check. A
// handshake that did start and failed is still an INFO line: garbage where
// the ClientHello should be, and a real ClientHello the server cannot take
// (TLS 1.1 only).
func TestMSAHandshakeNotStartedIsDebug(t *testing.T) {
	f := startMSA(t, nil)
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", f.subs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const fin, rst, garbage, tls11 = "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"
	dial(fin).Close()
	c := dial(rst)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	c = dial(garbage)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c = dial(tls11)
	tc := tls.Client(c, &tls.Config{ServerName: msaHost, RootCAs: f.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}

	for _, src := range []string{fin, rst} {
		// The connection's first line: its handshake's outcome.
		line := f.gw.WaitLog("client="+src+" ", 10*time.Second)
		if !strings.Contains(line, "level=DEBUG msg=starttls") || !strings.Contains(line, `outcome="not started"`) {
			t.Errorf("a check that closed at once (%s) is logged as %s", src, line)
		}
	}
	for _, src := range []string{garbage, tls11} {
		line := f.gw.WaitLog("client="+src+" ", 10*time.Second)
		if !strings.Contains(line, "level=INFO msg=starttls") || !strings.Contains(line, "outcome=failed") {
			t.Errorf("a handshake that failed (%s) is logged as %s", src, line)
		}
	}
	for _, l := range strings.Split(f.gw.Log(), "\n") {
		if (strings.Contains(l, "client="+fin+" ") || strings.Contains(l, "client="+rst+" ")) && !strings.Contains(l, "level=DEBUG") {
			t.Errorf("a check that closed at once is logged above DEBUG: %s", l)
		}
	}
}
