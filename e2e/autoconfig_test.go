package e2e

// Mail programs set themselves up (issue 17): the http listener's
// Thunderbird autoconfig and Outlook autodiscover documents, checked by
// using them as a client would, logging in on the advertised servers of the
// running binary against slapd, and `sekisho autoconfig -dns` read back by
// miekg/dns.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

// acGateway is a running MSA with the http listener and autoconfig.
type acGateway struct {
	gw         *harness.Gateway
	http       string // http listener
	sub, subs  string // submission, submissions listeners ("" : none)
	configPath string
	pool       *x509.CertPool
}

// startAutoconfigMSA starts sekisho as the MSA of campus.test on slapd,
// with the listeners named (submissions "" : only 587), ldap.auth_filter
// authFilter ("" : the default) and the autoconfig: line given.
func startAutoconfigMSA(t *testing.T, slapd *testslapd.Server, hop *harness.NextHop, withSubmissions bool, authFilter, autoconfigYAML string) *acGateway {
	t.Helper()
	g := &acGateway{http: testenv.FreePort(t), sub: testenv.FreePort(t)}
	if withSubmissions {
		g.subs = testenv.FreePort(t)
	}
	cert, key := selfSigned(t, t.TempDir(), msaHost)
	g.pool = x509.NewCertPool()
	if pemBytes, err := os.ReadFile(cert); err != nil || !g.pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("test certificate: %v", err)
	}
	s := ldapSite(t, slapd.URL(), "smtp://"+hop.Addr)
	s.hostname = msaHost
	s.http = g.http
	if authFilter != "" {
		s.extra = strings.Replace(s.extra, "  timeout: 1s\n", fmt.Sprintf("  timeout: 1s\n  auth_filter: %q\n", authFilter), 1)
	}
	s.extra += fmt.Sprintf("tls: {cert: %q, key: %q}\n", cert, key) + autoconfigYAML + "\n"
	listen := fmt.Sprintf("listen:\n  submission: %q\n", g.sub)
	if withSubmissions {
		listen += fmt.Sprintf("  submissions: %q\n", g.subs)
	}
	g.gw = harness.Start(t, strings.Replace(s.yaml(t), "listen:\n", listen, 1))
	g.configPath = filepath.Join(g.gw.Dir, "sekisho.yaml")
	g.gw.WaitLog("listener=http addr=", 10*time.Second)
	return g
}

// request sends an HTTP request to the gateway's http listener.
func (g *acGateway) request(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.http+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/xml")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// outlookRequestBody is the request Outlook POSTs.
func outlookRequestBody(addr string) string {
	var esc bytes.Buffer
	xml.EscapeText(&esc, []byte(addr))
	return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>` + esc.String() + `</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`
}

// thunderbird fetches and parses the Thunderbird file for addr at path.
func (g *acGateway) thunderbird(t *testing.T, path, addr string) harness.ThunderbirdConfig {
	t.Helper()
	code, body := g.request(t, "GET", path+"?emailaddress="+url.QueryEscape(addr), "")
	if code != 200 {
		t.Fatalf("GET %s for %s: %d %s", path, addr, code, body)
	}
	var c harness.ThunderbirdConfig
	if err := xml.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("the Thunderbird file does not parse: %v\n%s", err, body)
	}
	return c
}

// outlook fetches and parses Outlook's answer for addr, by POST or GET.
func (g *acGateway) outlook(t *testing.T, method, addr string) harness.OutlookAutodiscover {
	t.Helper()
	path, body := "/autodiscover/autodiscover.xml", outlookRequestBody(addr)
	if method == "GET" {
		path, body = path+"?emailaddress="+url.QueryEscape(addr), ""
	}
	code, resp := g.request(t, method, path, body)
	if code != 200 {
		t.Fatalf("%s autodiscover for %s: %d %s", method, addr, code, resp)
	}
	var o harness.OutlookAutodiscover
	if err := xml.Unmarshal([]byte(resp), &o); err != nil {
		t.Fatalf("the autodiscover answer does not parse: %v\n%s", err, resp)
	}
	return o
}

// wantServers checks the servers a document gives against the gateway's
// listeners: 465 (TLS at once) first if it exists, then 587 (STARTTLS), on
// hostname, with the login name user.
func (g *acGateway) wantServers(t *testing.T, what string, got []harness.MailServer, user string) {
	t.Helper()
	var want []harness.MailServer
	port := func(addr string) int { _, p, _ := net.SplitHostPort(addr); n, _ := strconv.Atoi(p); return n }
	if g.subs != "" {
		want = append(want, harness.MailServer{Host: msaHost, Port: port(g.subs), Implicit: true, Username: user})
	}
	want = append(want, harness.MailServer{Host: msaHost, Port: port(g.sub), Implicit: false, Username: user})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: servers %+v, want %+v", what, got, want)
	}
}

// login connects to server as a mail program set up by the document would
// (to 127.0.0.1: msa.campus.test is not in DNS, but the certificate is
// checked for the host name the document gave), logs in as user with
// password, and sends one message from alice to bob; it returns the error
// of the first step that failed.
func (g *acGateway) login(t *testing.T, server harness.MailServer, password, subject string) error {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(server.Port))
	tlsConfig := &tls.Config{ServerName: server.Host, RootCAs: g.pool}
	var conn net.Conn
	var err error
	if server.Implicit {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, tlsConfig)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 10*time.Second)
	}
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, server.Host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if !server.Implicit {
		if err := c.StartTLS(tlsConfig); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if err := c.Auth(smtp.PlainAuth("", server.Username, password, server.Host)); err != nil {
		return fmt.Errorf("AUTH as %q: %w", server.Username, err)
	}
	if err := c.Mail("alice@campus.test"); err != nil {
		return err
	}
	if err := c.Rcpt("bob@campus.test"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: alice@campus.test\r\nTo: bob@campus.test\r\nSubject: %s\r\n\r\nset up by autoconfig\r\n", subject)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestAutoconfigAgainstTheListeners: for an MSA with both submission
// listeners and the default auth_filter, and one with only 587 and a
// filter on uid, the Thunderbird file (both paths) and Outlook's answer
// (POST and GET) parse, name the listeners that exist (465 SSL first,
// then 587 STARTTLS) on the hostname with the username form the filter
// takes; a client that uses each server as given logs in against slapd
// and sends a message that reaches the next hop, while the other username
// form is refused (535) where the filter does not take it. Domains that are
// not local get 404 on every path. SIGHUP puts a changed autoconfig in force.
func TestAutoconfigAgainstTheListeners(t *testing.T) {
	slapd := testslapd.Start(t)
	hop := harness.StartNextHop(t, false)
	alice := testslapd.PersonByUID("alice")
	both := startAutoconfigMSA(t, slapd, hop, true, "", `autoconfig: {imap: "imap.campus.test:993"}`)
	only587 := startAutoconfigMSA(t, slapd, hop, false, "(uid=%s)", `autoconfig: {pop3: "pop.campus.test:110"}`)

	sent := 0
	for _, tc := range []struct {
		name     string
		g        *acGateway
		user     string // the login name for alice@campus.test
		other    string // the other form: refused
		incoming harness.ThunderbirdServer
		proto    harness.OutlookProtocol
	}{
		{"both listeners, (|(uid=%s)(mail=%s))", both, alice.Mail, "", harness.ThunderbirdServer{Type: "imap", Hostname: "imap.campus.test", Port: 993, SocketType: "SSL",
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}, harness.OutlookProtocol{Type: "IMAP", Server: "imap.campus.test", Port: 993,
			LoginName: alice.Mail, SSL: "on", Encryption: "SSL", AuthRequired: "on"}},
		{"587 only, (uid=%s)", only587, "alice", alice.Mail, harness.ThunderbirdServer{Type: "pop3", Hostname: "pop.campus.test", Port: 110, SocketType: "STARTTLS",
			Authentication: "password-cleartext", Username: "%EMAILLOCALPART%"}, harness.OutlookProtocol{Type: "POP3", Server: "pop.campus.test", Port: 110,
			LoginName: "alice", SSL: "on", Encryption: "TLS", AuthRequired: "on"}},
	} {
		g := tc.g
		var servers []harness.MailServer
		for _, path := range []string{"/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"} {
			c := g.thunderbird(t, path, alice.Mail)
			if c.Version != "1.1" || c.Provider.ID != "campus.test" || fmt.Sprint(c.Provider.Domains) != "[campus.test]" {
				t.Errorf("%s: %s: version %q, id %q, domains %v", tc.name, path, c.Version, c.Provider.ID, c.Provider.Domains)
			}
			if len(c.Provider.Incoming) != 1 || c.Provider.Incoming[0] != tc.incoming {
				t.Errorf("%s: %s: incoming %+v, want %+v", tc.name, path, c.Provider.Incoming, tc.incoming)
			}
			out, err := c.Outgoing(alice.Mail)
			if err != nil {
				t.Fatalf("%s: %s: %v", tc.name, path, err)
			}
			g.wantServers(t, tc.name+": "+path, out, tc.user)
			servers = append(servers, out...)
		}
		// Without ?emailaddress=, the name the request was sent to: the
		// domain itself for the well-known path (a proxy passes Host on).
		req, _ := http.NewRequest("GET", "http://"+g.http+"/.well-known/autoconfig/mail/config-v1.1.xml", nil)
		req.Host = "campus.test"
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Error(err)
		} else {
			var c harness.ThunderbirdConfig
			err := xml.NewDecoder(resp.Body).Decode(&c)
			resp.Body.Close()
			if out, _ := c.Outgoing(alice.Mail); resp.StatusCode != 200 || err != nil || c.Provider.ID != "campus.test" || len(out) == 0 {
				t.Errorf("%s: well-known path with Host campus.test: %d %v %+v", tc.name, resp.StatusCode, err, c)
			}
		}
		for _, method := range []string{"POST", "GET"} {
			o := g.outlook(t, method, alice.Mail)
			a := o.Response.Account
			if a.AccountType != "email" || a.Action != "settings" || len(a.Protocol) == 0 || a.Protocol[0] != tc.proto {
				t.Errorf("%s: Outlook %s: %+v, want first %+v", tc.name, method, a, tc.proto)
			}
			smtpServers, err := o.SMTP()
			if err != nil {
				t.Fatalf("%s: Outlook %s: %v", tc.name, method, err)
			}
			g.wantServers(t, tc.name+": Outlook "+method, smtpServers, tc.user)
			servers = append(servers, smtpServers...)
		}
		// Each server as given works: login and a message to the next hop.
		for i, server := range servers {
			sent++
			if err := g.login(t, server, alice.Password, fmt.Sprintf("autoconfig %d", sent)); err != nil {
				t.Errorf("%s: server %d %+v: %v", tc.name, i, server, err)
			}
		}
		if tc.other != "" {
			server := servers[0]
			server.Username = tc.other
			if err := g.login(t, server, alice.Password, "other form"); err == nil || !strings.Contains(err.Error(), "535") {
				t.Errorf("%s: login as %q (the form the filter does not take): %v, want 535", tc.name, tc.other, err)
			}
		}
		// Not a local domain: 404 everywhere, whatever the client.
		for _, req := range []struct{ method, path, body string }{
			{"GET", "/mail/config-v1.1.xml?emailaddress=alice%40example.org", ""},
			{"GET", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40campus.test.example.org", ""},
			{"POST", "/autodiscover/autodiscover.xml", outlookRequestBody("alice@example.org")},
			{"GET", "/autodiscover/autodiscover.xml?emailaddress=alice%40example.org", ""},
		} {
			if code, body := g.request(t, req.method, req.path, req.body); code != 404 || strings.Contains(body, "example.org") {
				t.Errorf("%s: %s %s: %d %q, want 404 without the domain", tc.name, req.method, req.path, code, body)
			}
		}
	}
	if got := len(hop.Messages()); got != sent {
		t.Errorf("the next hop has %d messages, want %d (one per server used)", got, sent)
	}

	// A reload changes what is served: IMAP on 143 (STARTTLS) instead of POP3.
	cfg, err := os.ReadFile(only587.configPath)
	if err != nil {
		t.Fatal(err)
	}
	rewriteConfig(t, only587.configPath, strings.Replace(string(cfg), `autoconfig: {pop3: "pop.campus.test:110"}`, `autoconfig: {imap: "imap2.campus.test:143"}`, 1))
	if line := reloadAndWait(t, only587.gw, "configuration reloaded", 1); !strings.Contains(line, "autoconfig") {
		t.Errorf("the reload line does not name autoconfig: %s", line)
	}
	in := only587.thunderbird(t, "/mail/config-v1.1.xml", alice.Mail).Provider.Incoming
	if len(in) != 1 || in[0].Type != "imap" || in[0].Hostname != "imap2.campus.test" || in[0].Port != 143 || in[0].SocketType != "STARTTLS" {
		t.Errorf("after the reload: incoming %+v, want imap2.campus.test:143 STARTTLS", in)
	}
}

// TestAutoconfigHostileAddress: what a client puts in the address, through
// the real http listener, comes back as 400 with a fixed text, never
// repeated: XML metacharacters, CR and LF, a second address; an address
// with atext that XML must escape comes back escaped, as the same value.
func TestAutoconfigHostileAddress(t *testing.T) {
	slapd := testslapd.Start(t)
	g := startAutoconfigMSA(t, slapd, harness.StartNextHop(t, false), true, "", `autoconfig: {imap: "imap.campus.test:993"}`)
	for _, bad := range []string{
		"alice@campus.test\r\nSet-Cookie: x=1", "</domain><x>@campus.test", `"a<b>"@campus.test`,
		"alice@campus.test</EMailAddress>", "alice@campus.test\x00", "alice@campus.test, bob@campus.test",
	} {
		for _, req := range []struct{ method, path, body string }{
			{"GET", "/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape(bad), ""},
			{"GET", "/autodiscover/autodiscover.xml?emailaddress=" + url.QueryEscape(bad), ""},
			{"POST", "/autodiscover/autodiscover.xml", outlookRequestBody(bad)},
		} {
			code, body := g.request(t, req.method, req.path, req.body)
			if code != 400 || strings.ContainsAny(body, "<>\r@") {
				t.Errorf("%s %q: %d %q, want 400 with a fixed text", req.method, bad, code, body)
			}
		}
	}
	odd := "o'brien&co@campus.test"
	code, body := g.request(t, "POST", "/autodiscover/autodiscover.xml", outlookRequestBody(odd))
	if code != 200 || strings.Contains(body, odd) {
		t.Fatalf("%q: %d, unescaped or refused:\n%s", odd, code, body)
	}
	var o harness.OutlookAutodiscover
	if err := xml.Unmarshal([]byte(body), &o); err != nil || len(o.Response.Account.Protocol) == 0 || o.Response.Account.Protocol[0].LoginName != odd {
		t.Errorf("%q: %v %+v", odd, err, o)
	}
}

// TestAutoconfigDNS: `sekisho autoconfig -dns` prints, for each local
// domain with a name of its own, SRV records that miekg/dns parses, on the
// hostname and the listeners' ports (_submissions preferred); with only 587,
// _submissions says "not available" (target "."). A subtree entry is named
// on stderr, not printed.
func TestAutoconfigDNS(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "ldap.secret")
	os.WriteFile(secret, []byte("x\n"), 0o600)
	cert, key := selfSigned(t, dir, msaHost)
	common := fmt.Sprintf(`hostname: %s
tls: {cert: %q, key: %q}
local_domains: [campus.test, .campus.test, Other.Test]
routes: [{domains: ["*"], next_hops: ["smtp://127.0.0.1:9"]}]
ldap: {urls: ["ldap://127.0.0.1:9"], base_dn: %q, bind_dn: %q, bind_password_file: %q, canary: %q}
`, msaHost, cert, key, testslapd.PeopleDN, testslapd.ServiceDN, secret, testslapd.Canary)
	type srv struct {
		name           string
		priority, port uint16
		target         string
	}
	for _, tc := range []struct {
		name, listen string
		want         []srv
	}{
		{"both", "listen: {submission: \"0.0.0.0:587\", submissions: \"0.0.0.0:465\"}\n", []srv{
			{"_submissions._tcp.campus.test.", 0, 465, msaHost + "."}, {"_submission._tcp.campus.test.", 10, 587, msaHost + "."},
			{"_submissions._tcp.other.test.", 0, 465, msaHost + "."}, {"_submission._tcp.other.test.", 10, 587, msaHost + "."}}},
		{"587 only, another port", "listen: {submission: \"0.0.0.0:2587\"}\n", []srv{
			{"_submissions._tcp.campus.test.", 0, 0, "."}, {"_submission._tcp.campus.test.", 0, 2587, msaHost + "."},
			{"_submissions._tcp.other.test.", 0, 0, "."}, {"_submission._tcp.other.test.", 0, 2587, msaHost + "."}}},
	} {
		path := filepath.Join(dir, "sekisho.yaml")
		os.WriteFile(path, []byte(common+tc.listen), 0o600)
		cmd := exec.Command(harness.Binary(t), "autoconfig", "-dns", "-config", path)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s%s", tc.name, err, stdout.String(), stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
		if len(lines) != len(tc.want) {
			t.Fatalf("%s: %d lines, want %d:\n%s", tc.name, len(lines), len(tc.want), stdout.String())
		}
		for i, line := range lines {
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatalf("%s: %q does not parse: %v", tc.name, line, err)
			}
			s, ok := rr.(*dns.SRV)
			if !ok {
				t.Fatalf("%s: %q is a %T, not SRV", tc.name, line, rr)
			}
			got := srv{s.Hdr.Name, s.Priority, s.Port, s.Target}
			if got != tc.want[i] || s.Hdr.Class != dns.ClassINET || s.Hdr.Ttl == 0 {
				t.Errorf("%s: %q: %+v, want %+v", tc.name, line, got, tc.want[i])
			}
		}
		if !strings.Contains(stderr.String(), ".campus.test") {
			t.Errorf("%s: stderr does not name the subtree entry: %q", tc.name, stderr.String())
		}
	}
	// Usage: -dns is the command; -h is help.
	for args, want := range map[string]int{"autoconfig": 2, "autoconfig -h": 0, "autoconfig -dns extra": 2} {
		err := exec.Command(harness.Binary(t), strings.Fields(args)...).Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Errorf("sekisho %s: exit %d, want %d", args, code, want)
		}
	}
	// No submission listener: nothing to publish, and it says so.
	path := filepath.Join(dir, "mx.yaml")
	os.WriteFile(path, []byte(common+"listen: {smtp: \"0.0.0.0:25\"}\n"), 0o600)
	out, err := exec.Command(harness.Binary(t), "autoconfig", "-dns", "-config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no submission listener") {
		t.Errorf("no submission listener: %v %s", err, out)
	}
}

// TestAutoconfigCheckConfig: autoconfig keys that cannot be served are
// refused with the file and the line.
func TestAutoconfigCheckConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sekisho.yaml")
	secret := filepath.Join(dir, "ldap.secret")
	os.WriteFile(secret, []byte("x\n"), 0o600)
	cert, key := selfSigned(t, dir, msaHost)
	head := fmt.Sprintf(`hostname: %s
tls: {cert: %q, key: %q}
routes: [{domains: ["*"], next_hops: ["smtp://127.0.0.1:9"]}]
ldap: {urls: ["ldap://127.0.0.1:9"], base_dn: %q, bind_dn: %q, bind_password_file: %q, canary: %q}
`, msaHost, cert, key, testslapd.PeopleDN, testslapd.ServiceDN, secret, testslapd.Canary)
	msa := "listen: {submission: \"127.0.0.1:2587\", http: \"127.0.0.1:9025\"}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"no http listener", head + "listen: {submission: \"127.0.0.1:2587\"}\nautoconfig:\n  imap: imap.campus.test:993\n", path + ":6: autoconfig.*listen.http"},
		{"no submission listener", head + "listen: {smtp: \"127.0.0.1:2525\", http: \"127.0.0.1:9025\"}\nlocal_domains: [campus.test]\nautoconfig: {imap: imap.campus.test:993}\n", path + ":7: .*submission"},
		{"no port", head + msa + "autoconfig:\n  imap: imap.campus.test\n", path + ":7: .*host:port"},
		{"an address, not a name", head + msa + "autoconfig:\n  pop3: \"192.0.2.1:995\"\n", path + ":7: .*IP address"},
		{"a bad username form", head + msa + "autoconfig:\n  imap: imap.campus.test:993\n  username: uid\n", path + ":8: .*address or localpart"},
		{"an unknown key", head + msa + "autoconfig:\n  imaps: imap.campus.test:993\n", path + ":7: .*imaps"},
	} {
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput()
		if err == nil {
			t.Errorf("%s: check-config accepted it:\n%s", tc.name, out)
			continue
		}
		if !regexp.MustCompile(regexp.QuoteMeta(path) + tc.want[len(path):]).MatchString(string(out)) {
			t.Errorf("%s: check-config said %q, want %q", tc.name, out, tc.want)
		}
	}
	os.WriteFile(path, []byte(head+msa+"autoconfig: {imap: imap.campus.test:993, username: localpart}\n"), 0o600)
	if out, err := exec.Command(harness.Binary(t), "check-config", "-config", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "imap: imap.campus.test:993") {
		t.Errorf("a valid autoconfig: %v\n%s", err, out)
	}
}

// TestMSADocSRVRecords: the output docs/msa.md shows for `sekisho
// autoconfig -dns` is what the command prints for deploy/msa.yaml.
func TestMSADocSRVRecords(t *testing.T) {
	doc, err := os.ReadFile("../docs/msa.md")
	if err != nil {
		t.Fatal(err)
	}
	const command = "$ sekisho autoconfig -dns -config /etc/sekisho/sekisho.yaml\n"
	i := strings.Index(string(doc), command)
	if i < 0 {
		t.Fatalf("docs/msa.md does not show %q", command)
	}
	shown := string(doc[i+len(command):])
	shown = shown[:strings.Index(shown, "```")]
	cfg, _ := deployConfig(t, "../deploy/msa.yaml")
	cmd := exec.Command(harness.Binary(t), "autoconfig", "-dns", "-config", cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if stdout.String() != shown {
		t.Errorf("docs/msa.md shows\n%s\nthe command prints\n%s", shown, stdout.String())
	}
}
