package autoconfig

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
)

// The documents are parsed with harness's types, written from the formats
// (what a client reads), not with the writer's.
type (
	thunderbirdFile = harness.ThunderbirdConfig
	outlookFile     = harness.OutlookAutodiscover
)

func testSettings() *Settings {
	return &Settings{
		LocalDomains: mailaddr.NewDomainSet([]string{"campus.test", ".campus.test"}),
		Hostname:     "msa.campus.test", SubmissionPort: 587, SubmissionsPort: 465,
		Incoming: []Incoming{{Protocol: "imap", Server: Server{Host: "imap.campus.test", Port: 993, Security: ImplicitTLS}}},
	}
}

func serve(t *testing.T, h http.Handler, method, target, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

func outlookRequest(addr string) string {
	return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>` + addr + `</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`
}

// TestThunderbirdDocument: the file parses as clientConfig 1.1 with the
// incoming server, then 465 SSL before 587 STARTTLS on the hostname, with
// the placeholder of the username form; only the listeners that exist.
func TestThunderbirdDocument(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mod      func(*Settings)
		ports    []int
		sockets  []string
		username string
	}{
		{"both, address", func(*Settings) {}, []int{465, 587}, []string{"SSL", "STARTTLS"}, "%EMAILADDRESS%"},
		{"587 only, uid", func(s *Settings) { s.SubmissionsPort = 0; s.Username = UsernameLocalPart }, []int{587}, []string{"STARTTLS"}, "%EMAILLOCALPART%"},
		{"465 only", func(s *Settings) { s.SubmissionPort = 0 }, []int{465}, []string{"SSL"}, "%EMAILADDRESS%"},
	} {
		s := testSettings()
		tc.mod(s)
		for _, path := range []string{ThunderbirdPath + "?emailaddress=alice%40Sub.Campus.Test", ThunderbirdWellKnownPath + "?emailaddress=alice@sub.campus.test"} {
			code, body := serve(t, NewHandler(s), "GET", path, "")
			if code != 200 {
				t.Fatalf("%s: %s: %d %s", tc.name, path, code, body)
			}
			var f thunderbirdFile
			if err := xml.Unmarshal([]byte(body), &f); err != nil {
				t.Fatalf("%s: %v\n%s", tc.name, err, body)
			}
			p := f.Provider
			if f.Version != "1.1" || p.ID != "sub.campus.test" || len(p.Domains) != 1 || p.Domains[0] != "sub.campus.test" {
				t.Errorf("%s: version %q id %q domains %q", tc.name, f.Version, p.ID, p.Domains)
			}
			if len(p.Incoming) != 1 || p.Incoming[0].Type != "imap" || p.Incoming[0].Hostname != "imap.campus.test" || p.Incoming[0].Port != 993 ||
				p.Incoming[0].SocketType != "SSL" || p.Incoming[0].Username != tc.username || p.Incoming[0].Authentication != "password-cleartext" {
				t.Errorf("%s: incoming %+v", tc.name, p.Incoming)
			}
			if len(p.Outgoing) != len(tc.ports) {
				t.Fatalf("%s: outgoing %+v, want ports %v", tc.name, p.Outgoing, tc.ports)
			}
			for i, o := range p.Outgoing {
				if o.Type != "smtp" || o.Hostname != "msa.campus.test" || o.Port != tc.ports[i] || o.SocketType != tc.sockets[i] ||
					o.Authentication != "password-cleartext" || o.Username != tc.username {
					t.Errorf("%s: outgoing %d: %+v, want port %d %s %s", tc.name, i, o, tc.ports[i], tc.sockets[i], tc.username)
				}
			}
		}
	}
}

// TestThunderbirdDomainFromHost: without ?emailaddress= the Host header
// names the domain (autoconfig.<domain>, or the domain for the well-known
// path).
func TestThunderbirdDomainFromHost(t *testing.T) {
	h := NewHandler(testSettings())
	for host, want := range map[string]int{"autoconfig.campus.test": 200, "AutoConfig.campus.test:443": 200, "campus.test": 200, "autoconfig.example.org": 404, "127.0.0.1": 400} {
		for _, path := range []string{ThunderbirdPath, ThunderbirdWellKnownPath} {
			r := httptest.NewRequest("GET", path, nil)
			r.Host = host
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != want {
				t.Errorf("%s, Host %s: %d, want %d", path, host, w.Code, want)
			}
			var f thunderbirdFile
			if want == 200 && (xml.Unmarshal(w.Body.Bytes(), &f) != nil || f.Provider.ID != "campus.test") {
				t.Errorf("%s, Host %s: %s", path, host, w.Body)
			}
		}
	}
}

// TestOutlookDocument: the POST of Outlook's request and a GET both give
// the POX response with the login name written out, and SSL/Encryption
// saying implicit TLS (SSL) or STARTTLS (TLS).
func TestOutlookDocument(t *testing.T) {
	for _, tc := range []struct {
		name   string
		form   Username
		method string
		target string
		body   string
		login  string
	}{
		{"POST address", UsernameAddress, "POST", OutlookPath, outlookRequest("alice@campus.test"), "alice@campus.test"},
		{"POST uid, capitalized path", UsernameLocalPart, "POST", "/Autodiscover/Autodiscover.xml", outlookRequest("alice@campus.test"), "alice"},
		{"GET", UsernameAddress, "GET", OutlookPath + "?emailaddress=bob@campus.test", "", "bob@campus.test"},
		{"no schema named", UsernameAddress, "POST", OutlookPath, "<Autodiscover><Request><EMailAddress>a@campus.test</EMailAddress></Request></Autodiscover>", "a@campus.test"},
	} {
		s := testSettings()
		s.Username = tc.form
		code, body := serve(t, NewHandler(s), tc.method, tc.target, tc.body)
		if code != 200 {
			t.Fatalf("%s: %d %s", tc.name, code, body)
		}
		var f outlookFile
		if err := xml.Unmarshal([]byte(body), &f); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, body)
		}
		a := f.Response.Account
		if a.AccountType != "email" || a.Action != "settings" || len(a.Protocol) != 3 {
			t.Fatalf("%s: %+v", tc.name, a)
		}
		want := []struct {
			typ        string
			port       int
			encryption string
		}{{"IMAP", 993, "SSL"}, {"SMTP", 465, "SSL"}, {"SMTP", 587, "TLS"}}
		for i, p := range a.Protocol {
			if p.Type != want[i].typ || p.Port != want[i].port || p.Encryption != want[i].encryption || p.SSL != "on" ||
				p.AuthRequired != "on" || p.LoginName != tc.login {
				t.Errorf("%s: protocol %d: %+v, want %+v login %q", tc.name, i, p, want[i], tc.login)
			}
		}
	}
}

// TestNotServed: a domain that is not local is 404, and so is everything
// without an incoming server, without a submission listener, or before
// Set; another schema (ActiveSync) is 404 too; a wrong method is 405.
func TestNotServed(t *testing.T) {
	tb := ThunderbirdPath + "?emailaddress=alice@campus.test"
	for _, tc := range []struct {
		name    string
		s       *Settings
		method  string
		target  string
		body    string
		want    int
		wantErr string
	}{
		{"other domain", testSettings(), "GET", ThunderbirdPath + "?emailaddress=alice@example.org", "", 404, "for this domain"},
		{"parent of a subtree entry only", &Settings{LocalDomains: mailaddr.NewDomainSet([]string{".campus.test"}), Hostname: "m", SubmissionPort: 587,
			Incoming: testSettings().Incoming}, "GET", tb, "", 404, ""},
		{"other domain, Outlook", testSettings(), "POST", OutlookPath, outlookRequest("alice@example.org"), 404, ""},
		{"no incoming server", &Settings{LocalDomains: testSettings().LocalDomains, Hostname: "m", SubmissionPort: 587}, "GET", tb, "", 404, "autoconfig.imap"},
		{"no submission listener", &Settings{LocalDomains: testSettings().LocalDomains, Hostname: "m", Incoming: testSettings().Incoming}, "POST", OutlookPath, outlookRequest("alice@campus.test"), 404, "no submission listener"},
		{"nil", nil, "GET", tb, "", 404, "autoconfig.imap"},
		{"ActiveSync", testSettings(), "POST", OutlookPath, strings.Replace(outlookRequest("alice@campus.test"), "outlook/responseschema/2006a", "mobilesync/responseschema/2006", 1), 404, ""},
		{"PUT", testSettings(), "PUT", OutlookPath, "", 405, ""},
		{"POST to Thunderbird's", testSettings(), "POST", tb, "", 405, ""},
		{"another path", testSettings(), "GET", "/mail/other.xml", "", 404, ""},
	} {
		if code, body := serve(t, NewHandler(tc.s), tc.method, tc.target, tc.body); code != tc.want || !strings.Contains(body, tc.wantErr) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.want, tc.wantErr)
		}
	}
	var zero Handler
	if code, _ := serve(t, &zero, "GET", tb, ""); code != 404 {
		t.Errorf("zero Handler: %d, want 404", code)
	}
}

// TestHostileAddresses: what a client puts in the address never comes back
// unescaped: an address that cannot be read is 400 with a fixed text; one
// that can (atext allows & ' { } | and more in a local part) comes back in
// Outlook's LoginName escaped, and parses back to exactly what was sent.
func TestHostileAddresses(t *testing.T) {
	h := NewHandler(testSettings())
	for _, bad := range []string{
		"alice@campus.test\r\nX-Injected: 1", "alice\r\n@campus.test", "<script>@campus.test", "a<b>@campus.test",
		`"a</LoginName><x>"@campus.test`, "alice@campus.test</domain><domain>evil.example", "alice@campus.test>", "alice@[127.0.0.1]",
		"@evil.example:alice@campus.test", "alice@campus.test@evil.example", "alice@campus.test\x00", "alice @campus.test",
		"alice@campus..test", "alice@-campus.test", "", "alice", strings.Repeat("a", 300) + "@campus.test", "alice@campus.test&x=1",
		"alice@cam\xffpus.test",
	} {
		for _, req := range []struct{ method, target, body string }{
			{"GET", ThunderbirdPath + "?emailaddress=" + url.QueryEscape(bad), ""},
			{"GET", OutlookPath + "?emailaddress=" + url.QueryEscape(bad), ""},
			{"POST", OutlookPath, outlookRequest(xmlEscape(bad))},
		} {
			code, body := serve(t, h, req.method, req.target, req.body)
			if code != 400 && code != 404 {
				t.Errorf("%s %q: %d, want 400 or 404:\n%s", req.method, bad, code, body)
			}
			if bad != "" && strings.Contains(body, bad) || strings.ContainsAny(body, "<>\r") {
				t.Errorf("%s %q: the answer repeats it: %q", req.method, bad, body)
			}
		}
	}
	for _, odd := range []string{"a&b@campus.test", "o'brien@campus.test", "{x}|y=z?@campus.test", "a#b$c%d~e@campus.test", "ünï@campus.test"} {
		code, body := serve(t, h, "POST", OutlookPath, outlookRequest(xmlEscape(odd)))
		if code != 200 {
			t.Errorf("%q: %d %s", odd, code, body)
			continue
		}
		var f outlookFile
		if err := xml.Unmarshal([]byte(body), &f); err != nil {
			t.Fatalf("%q: %v\n%s", odd, err, body)
		}
		for _, p := range f.Response.Account.Protocol {
			if p.LoginName != odd {
				t.Errorf("%q: LoginName %q", odd, p.LoginName)
			}
		}
		if strings.ContainsAny(odd, "&'") && strings.Contains(body, "<LoginName>"+odd+"<") {
			t.Errorf("%q: written unescaped:\n%s", odd, body)
		}
	}
	// Two addresses: which one would be meant? Refused.
	if code, _ := serve(t, h, "GET", ThunderbirdPath+"?emailaddress=a@example.org&emailaddress=a@campus.test", ""); code != 400 {
		t.Errorf("two emailaddress parameters: %d, want 400", code)
	}
	two := strings.Replace(outlookRequest("a@example.org"), "</EMailAddress>", "</EMailAddress><EMailAddress>a@campus.test</EMailAddress>", 1)
	if code, _ := serve(t, h, "POST", OutlookPath, two); code != 400 {
		t.Errorf("two EMailAddress elements: %d, want 400", code)
	}
	// An entity declaration is not expanded (encoding/xml reads no DTD);
	// a body over the limit is refused.
	bomb := `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "alice@campus.test">]><Autodiscover><Request><EMailAddress>&e;</EMailAddress></Request></Autodiscover>`
	if code, _ := serve(t, h, "POST", OutlookPath, bomb); code != 400 {
		t.Errorf("entity: %d, want 400", code)
	}
	if code, _ := serve(t, h, "POST", OutlookPath, outlookRequest("a@campus.test")+strings.Repeat(" ", maxRequestBytes)); code != 400 {
		t.Errorf("a body over %d bytes: %d, want 400", maxRequestBytes, code)
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// TestSRV: each line is a zone-file SRV record (miekg/dns parses it back)
// on the hostname and the listener's port; a listener that does not exist
// is published as not available (target "."); _submissions is preferred
// when both exist.
func TestSRV(t *testing.T) {
	type rec struct {
		name          string
		prio, port    uint16
		target        string
		weight, class uint16
	}
	for _, tc := range []struct {
		name       string
		sub, subs  int
		want       []rec
		wantNumber int
	}{
		{"both", 587, 465, []rec{{"_submissions._tcp.campus.test.", 0, 465, "msa.campus.test.", 0, dns.ClassINET}, {"_submission._tcp.campus.test.", 10, 587, "msa.campus.test.", 0, dns.ClassINET}}, 2},
		{"587 only", 587, 0, []rec{{"_submissions._tcp.campus.test.", 0, 0, ".", 0, dns.ClassINET}, {"_submission._tcp.campus.test.", 0, 587, "msa.campus.test.", 0, dns.ClassINET}}, 2},
		{"465 only", 0, 465, []rec{{"_submissions._tcp.campus.test.", 0, 465, "msa.campus.test.", 0, dns.ClassINET}, {"_submission._tcp.campus.test.", 0, 0, ".", 0, dns.ClassINET}}, 2},
		{"none", 0, 0, nil, 0},
	} {
		s := &Settings{Hostname: "msa.campus.test", SubmissionPort: tc.sub, SubmissionsPort: tc.subs}
		lines := s.SRV("campus.test")
		if len(lines) != tc.wantNumber {
			t.Fatalf("%s: %q", tc.name, lines)
		}
		for i, line := range lines {
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatalf("%s: %q: %v", tc.name, line, err)
			}
			srv, ok := rr.(*dns.SRV)
			if !ok {
				t.Fatalf("%s: %q is a %T", tc.name, line, rr)
			}
			got := rec{srv.Hdr.Name, srv.Priority, srv.Port, srv.Target, srv.Weight, srv.Hdr.Class}
			if got != tc.want[i] || srv.Hdr.Ttl != 3600 {
				t.Errorf("%s: %q: %+v ttl %d, want %+v ttl 3600", tc.name, line, got, srv.Hdr.Ttl, tc.want[i])
			}
		}
	}
}

// TestUsernameFor: a filter on an address attribute takes the address; one
// on uid only takes the local part.
func TestUsernameFor(t *testing.T) {
	addrs := []string{"mail", "mailAlternateAddress"}
	for _, tc := range []struct {
		attrs []string
		want  Username
	}{
		{[]string{"uid", "mail"}, UsernameAddress},
		{[]string{"MAIL"}, UsernameAddress},
		{[]string{"mailAlternateAddress"}, UsernameAddress},
		{[]string{"uid"}, UsernameLocalPart},
		{[]string{"sAMAccountName"}, UsernameLocalPart},
	} {
		if got := UsernameFor(tc.attrs, addrs); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.attrs, got, tc.want)
		}
	}
}
