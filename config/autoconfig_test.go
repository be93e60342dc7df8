package config

import (
	"reflect"
	"strings"
	"testing"

	"sekisho/autoconfig"
)

// acHead is an MSA with the http listener, up to the autoconfig section
// (lines 1-6). The files it names are not opened: every case below is
// refused by validation, before the loader opens them.
const acHead = `hostname: smtp.campus.test
listen: {submission: "127.0.0.1:2587", http: "127.0.0.1:9025"}
tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}
ldap: {urls: ["ldap://127.0.0.1:9"], base_dn: "dc=campus,dc=test", canary: canary@campus.test}
local_domains: [campus.test]
routes: [{domains: ["*"], next_hops: ["smtp://127.0.0.1:9"]}]
`

// TestAutoconfigConfigErrors: autoconfig keys that cannot be served, or
// that leave nothing to serve them, are refused with the file, the line of
// the key at fault and what was wanted.
func TestAutoconfigConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{acHead + "autoconfig:\n  imap: imap.campus.test\n", `f.yaml:8: "imap.campus.test" is not host:port: want host:port, like imap.campus.example:993`},
		{acHead + "autoconfig:\n  pop3: \"192.0.2.1:995\"\n", "f.yaml:8: \"192.0.2.1\": "},
		{acHead + "autoconfig:\n  imap: imap.campus.test:0\n", `f.yaml:8: port "0" is not a port number`},
		{acHead + "autoconfig:\n  pop3: pop.campus.test:pop3s\n", `f.yaml:8: port "pop3s" is not a port number`},
		{acHead + "autoconfig:\n  imap: imap.campus.test:993\n  username: uid\n", "f.yaml:9: username must be address or localpart"},
		{acHead + "autoconfig:\n  imap: imap.campus.test:993\n  imaps: x\n", `f.yaml:9: unknown key "imaps" in autoconfig`},
		{strings.Replace(acHead, `, http: "127.0.0.1:9025"`, "", 1) + "autoconfig:\n  imap: imap.campus.test:993\n", "f.yaml:7: autoconfig is served by the http listener, and listen.http is not set"},
		{strings.Replace(acHead, `submission: "127.0.0.1:2587"`, `smtp: "127.0.0.1:2525"`, 1) + "autoconfig: {imap: imap.campus.test:993}\n", "f.yaml:7: autoconfig tells mail programs about the submission listeners"},
		{strings.Replace(acHead, `"127.0.0.1:2587"`, `"127.0.0.1:submission"`, 1) + "autoconfig: {imap: imap.campus.test:993}\n", `f.yaml:2: "127.0.0.1:submission" has no port that mail programs could be told`},
		{strings.Replace(acHead, "hostname: smtp.campus.test", "hostname: -smtp.campus.test", 1) + "autoconfig: {imap: imap.campus.test:993}\n", "f.yaml:1: autoconfig gives hostname to mail programs, and it is not a host name"},
	} {
		_, err := Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\nerror %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}

// TestAutoconfigSettings: what the http listener is given: the hostname
// and the ports of the submission listeners, the incoming servers in order
// with the security their port says, and the login-name form, named or
// taken from ldap.auth_filter. Autoconfig not served checks no listener.
func TestAutoconfigSettings(t *testing.T) {
	cfg := Defaults()
	cfg.Hostname = "smtp.campus.test"
	cfg.LocalDomains = []string{"campus.test"}
	cfg.Routes = []RouteConfig{{Domains: []string{"*"}, NextHops: []NextHop{mustHop("smtp://127.0.0.1:9")}}}
	cfg.Listen = ListenConfig{Submission: "127.0.0.1:587", Submissions: "127.0.0.1:465", HTTP: "127.0.0.1:9025"}
	cfg.TLS = TLSConfig{Cert: "c.pem", Key: "k.pem"}
	cfg.LDAP.URLs, cfg.LDAP.BaseDN, cfg.LDAP.Canary = []string{"ldap://127.0.0.1:9"}, "dc=campus,dc=test", "canary@campus.test"
	cfg.Autoconfig = AutoconfigConfig{IMAP: "imap.campus.test:993", POP3: "pop.campus.test:110"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := cfg.AutoconfigSettings()
	want := []autoconfig.Incoming{
		{Protocol: "imap", Server: autoconfig.Server{Host: "imap.campus.test", Port: 993, Security: autoconfig.ImplicitTLS}},
		{Protocol: "pop3", Server: autoconfig.Server{Host: "pop.campus.test", Port: 110, Security: autoconfig.StartTLS}},
	}
	if s.Hostname != "smtp.campus.test" || s.SubmissionPort != 587 || s.SubmissionsPort != 465 ||
		!reflect.DeepEqual(s.Incoming, want) || !s.LocalDomains.Contains("campus.test") || s.LocalDomains.Contains("localhost") {
		t.Errorf("settings: %+v", s)
	}
	for _, c := range []struct {
		filter, username string
		want             autoconfig.Username
	}{
		{"", "", autoconfig.UsernameAddress}, // the default filter asks mail too
		{"(uid=%s)", "", autoconfig.UsernameLocalPart},
		{"(MailAlternateAddress=%s)", "", autoconfig.UsernameAddress},
		{"(uid=%s)", "address", autoconfig.UsernameAddress},
		{"(|(uid=%s)(mail=%s))", "localpart", autoconfig.UsernameLocalPart},
	} {
		cfg.LDAP.AuthFilter, cfg.Autoconfig.Username = c.filter, c.username
		if c.filter == "" {
			cfg.LDAP.AuthFilter = Defaults().LDAP.AuthFilter
		}
		if got := cfg.AutoconfigSettings().Username; got != c.want {
			t.Errorf("auth_filter %q, username %q: %v, want %v", c.filter, c.username, got, c.want)
		}
	}

	// Not served: a listener whose port cannot be told is no concern of
	// autoconfig's (sekisho autoconfig -dns checks it itself).
	cfg.Autoconfig = AutoconfigConfig{}
	cfg.Listen.Submission = "127.0.0.1:submission"
	if err := cfg.Validate(); err != nil {
		t.Errorf("autoconfig not served, a named port: %v", err)
	}
	if p, err := ListenerPort(cfg.Listen.Submission); p != 0 || err == nil {
		t.Errorf("ListenerPort(%q): %d, %v", cfg.Listen.Submission, p, err)
	}
}
