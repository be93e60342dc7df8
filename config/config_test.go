package config

import (
	"os"
	"strings"
	"testing"

	"sekisho/relay"
)

// What a test file about something else needs to be a whole configuration
// (requiredInFile): the local domain and the route of the embedded
// defaults, and a hostname.
const (
	localRoute  = "routes: [{domains: [localhost], next_hops: [\"maildir:var/mail\"]}]\n"
	localSite   = "local_domains: [localhost]\n" + localRoute
	dnsTestBase = "hostname: mx\nlocal_domains: [localhost]\n"
	site        = "hostname: mx\n" + localSite
)

func TestDefaultsAreValid(t *testing.T) {
	cfg := Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("embedded defaults invalid: %v", err)
	}
	if cfg.Listen.SMTP != "127.0.0.1:2525" || cfg.LocalDomains[0] != "localhost" {
		t.Errorf("defaults changed: %+v", cfg.Listen)
	}
}

// TestConfigErrorsNameFileAndLine: every kind of mistake names file:line.
func TestConfigErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"hostname: mx\nlimts:\n  max_recipients: 3\n", `f.yaml:2: unknown key "limts" at the top level (did you mean "limits"?)`},
		{"hostname: mx\nlimits:\n  max_recipients: 3\n  max_conections: 4\n", `f.yaml:4: unknown key "max_conections" in limits (did you mean "max_connections"?)`},
		{"hostname: mx\ntrusted_networks: [10.0.0.0/8, 10.0.0.300]\n", "f.yaml:2: \"10.0.0.300\" is not an IP network"},
		{"hostname: mx\nproxy_protocol:\n  from: [10.0.0.250/33]\n", "f.yaml:3: \"10.0.0.250/33\" is not an IP network"},
		{"hostname: mx\nproxy_protocol:\n  form: [10.0.0.250]\n", `f.yaml:3: unknown key "form" in proxy_protocol (did you mean "from"?)`},
		{"hostname: mx\nroutes:\n  - domains: [localhost]\n    next_hops: [\"ftp://x:21\"]\n", "f.yaml:4: next hop \"ftp://x:21\": unknown kind"},
		{"hostname: mx\nchecks:\n  domain:\n    nxdomain: bounce\n", "f.yaml:4: nxdomain must be tempfail or reject"},
		{"hostname: mx\nlimits:\n  data_timeout: 10\n", "f.yaml:"},
		{"hostname: mx\nlimits:\n  data_timeout: soon\n", "f.yaml:3:"},
		{"hostname: mx\nlocal_domains: [campus.test]\nroutes: [{domains: [other.test], next_hops: [mx]}]\n", "f.yaml:2: local domain campus.test matches no route"},
		{"hostname: [\n", "f.yaml:"},
		{"hostname: mx\ntls: {cert: /etc/sekisho/cert.pem}\n", "f.yaml:2: cert and key go together"},
		{"hostname: mx\nldap:\n  urls: [ldap://l]\n  base_dn: dc=x\n  canary: c@x\n  positive_cache_ttl: -1m\n", "f.yaml:6: positive_cache_ttl must not be negative"},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}

func TestConfigOverridesDefaults(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(`
hostname: mx1.campus.test
listen: {smtp: "0.0.0.0:25", http: "127.0.0.1:9025"}
local_domains: [campus.test, .campus.test]
trusted_networks: [127.0.0.0/8, "10.0.0.1"]
routes:
  - {domains: [campus.test, .campus.test], next_hops: ["smtp://10.0.1.5:25", "smtp://10.0.1.6:25"]}
limits: {max_recipients: 50, data_timeout: 2m}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxRecipients != 50 || cfg.Limits.MaxMessageBytes != 50<<20 || cfg.Limits.DataTimeout.Minutes() != 2 {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	if cfg.TrustedNetworks[1].String() != "10.0.0.1/32" || len(cfg.Routes[0].NextHops) != 2 {
		t.Errorf("cfg = %+v", cfg)
	}
}

// TestListenReplacedWhole: a file that has a listen block names every
// listener; the default smtp listener is not kept behind its back.
func TestListenReplacedWhole(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte("hostname: mx\nlisten:\n  http: \"127.0.0.1:9025\"\n  smtp: \"127.0.0.1:25\"\n"+localSite))
	if err != nil || cfg.Listen.SMTP != "127.0.0.1:25" {
		t.Fatalf("smtp given: %+v, %v", cfg.Listen, err)
	}
	_, err = Parse("f.yaml", []byte("hostname: mx\nlisten:\n  http: \"127.0.0.1:9025\"\n"))
	if err == nil || !strings.Contains(err.Error(), "no SMTP listener") {
		t.Fatalf("listen without smtp kept the default smtp listener: %v", err)
	}
	cfg, err = Parse("f.yaml", []byte("hostname: mx\n"+localSite))
	if err != nil || cfg.Listen.SMTP != "127.0.0.1:2525" {
		t.Fatalf("no listen block: %+v, %v", cfg.Listen, err)
	}
}

// TestRouteMode: routes[].mode is failover by default, all when asked, and
// every mistake with it names the line of the route's mode (or of the
// route).
func TestRouteMode(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(`
hostname: mx1.campus.test
local_domains: [campus.test]
routes:
  - {domains: [campus.test], mode: all, next_hops: ["smtp://10.0.1.5:25", "lmtp://10.0.1.6:24", "maildir:/srv/copy"]}
  - {domains: [other.test], mode: failover, next_hops: ["smtp://10.0.1.5:25"]}
  - {domains: ["*"], next_hops: [mx]}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs := cfg.RelayRoutes()
	if rs[0].Mode != relay.ModeAll || rs[1].Mode != relay.ModeFailover || rs[2].Mode != relay.ModeFailover {
		t.Errorf("modes %v %v %v, want all failover failover", rs[0].Mode, rs[1].Mode, rs[2].Mode)
	}

	head := "hostname: mx\nroutes:\n  - domains: [localhost]\n    next_hops: [\"smtp://10.0.1.5:25\", \"smtp://10.0.1.6:25\"]\n"
	cases := []struct{ yaml, want string }{
		{head + "  - domains: [a.test]\n    mode: mirror\n    next_hops: [\"smtp://10.0.1.5:25\"]\n", "f.yaml:6: mode \"mirror\": want failover"},
		{head + "  - domains: [a.test]\n    next_hops: [\"smtp://10.0.1.5:25\"]\n    mode: all\n", "f.yaml:7: route 2 has mode all and one next hop"},
		{head + "  - domains: [a.test]\n    mode: all\n    next_hops: [mx, \"smtp://10.0.1.5:25\"]\n", "f.yaml:6: route 2 has mode all and an mx next hop"},
		{head + "  - domains: [a.test]\n    mode: all\n    next_hops: [\"smtp://10.0.1.5:25\", \"smtp://10.0.1.5:25\"]\n", "f.yaml:6: route 2 has mode all and next hop smtp://10.0.1.5:25 twice"},
		{head + "  - domains: []\n    next_hops: [\"smtp://10.0.1.5:25\"]\n", "f.yaml:5: route 2 has no domains"},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}

// TestBadDomainsOfTheEmbeddedDefaults: serve without -config reads
// ./baddomains.txt where there is one (make run, in the source tree) and
// runs without a list where there is none; a broken one is refused with its
// line. A file names its own list or has none, even where ./baddomains.txt
// is: a file that leaves bad_domains out loads without it, and -changed
// (MarshalChanged) does not name it; Defaults() names no list.
func TestBadDomainsOfTheEmbeddedDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg, err := Load("")
	if err != nil || cfg.Checks.Domain.BadDomains != "" {
		t.Fatalf("no ./baddomains.txt: bad_domains %q, err %v; want none, no error", cfg.Checks.Domain.BadDomains, err)
	}

	if err := os.WriteFile(DefaultBadDomains, []byte("# the list\ngmail.con\n.evil.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load("")
	if err != nil || cfg.Checks.Domain.BadDomains != DefaultBadDomains {
		t.Fatalf("./baddomains.txt there: bad_domains %q, err %v; want %q", cfg.Checks.Domain.BadDomains, err, DefaultBadDomains)
	}
	files, err := cfg.Files()
	if err != nil || files.BadDomains == nil {
		t.Fatalf("the list is not read: %v, %v", files.BadDomains, err)
	}
	if d := Defaults(); d.Checks.Domain.BadDomains != "" {
		t.Errorf("Defaults() names the list %q: a file would inherit it", d.Checks.Domain.BadDomains)
	}

	file, err := Parse("f.yaml", []byte(site))
	if err != nil {
		t.Fatal(err)
	}
	if file.Checks.Domain.BadDomains != "" {
		t.Errorf("a file without bad_domains has %q", file.Checks.Domain.BadDomains)
	}
	out, err := MarshalChanged(&file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "bad_domains") {
		t.Errorf("-changed names bad_domains, which the file does not set:\n%s", out)
	}

	if err := os.WriteFile(DefaultBadDomains, []byte("gmail.con\nnot a domain!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "baddomains.txt:2") {
		t.Errorf("a broken ./baddomains.txt: %v, want its line named", err)
	}
}
