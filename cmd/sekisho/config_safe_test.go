package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"sekisho/config"
)

// localRoute and localSite are what a test file about something else needs
// to be a whole configuration (requiredInFile): the local domain and the
// route of the embedded defaults.
const (
	localRoute = "routes: [{domains: [localhost], next_hops: [\"maildir:var/mail\"]}]\n"
	localSite  = "local_domains: [localhost]\n" + localRoute
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// deployConfigs are the example configurations under deploy/.
func deployConfigs(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../../deploy/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configurations under deploy/")
	}
	return files
}

var etcPath = regexp.MustCompile(`/etc/sekisho/[^\s"',\]}]+`)

// deployFixture makes the files an example configuration names under
// /etc/sekisho/ in a temporary directory, real ones (the shipped bad-domain
// list, a password, a certificate with its key, a DKIM key), and returns the
// configuration naming them there.
func deployFixture(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := testCertificate(t)
	for _, p := range etcPath.FindAllString(text, -1) {
		local := filepath.Join(dir, strings.TrimPrefix(p, "/etc/sekisho/"))
		base := filepath.Base(p)
		switch {
		case base == "sekisho.yaml": // the configuration itself, in a comment
			continue
		case base == "baddomains.txt":
			writeFile(t, local, fileContent(t, "../../baddomains.txt"))
		case strings.HasSuffix(base, ".secret"):
			writeFile(t, local, "secret\n")
		case strings.HasSuffix(base, ".pem") && strings.Contains(base, "key"):
			writeFile(t, local, keyPEM)
		case strings.HasSuffix(base, ".pem"):
			writeFile(t, local, certPEM)
		case strings.HasSuffix(base, ".key"): // DKIM, as `sekisho dkim keygen` writes it
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			writeFile(t, local, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		default:
			t.Fatalf("deployFixture: no fixture for %s", p)
		}
	}
	return strings.ReplaceAll(text, "/etc/sekisho/", dir+"/")
}

// testCertificate is a self-signed certificate and its key, in PEM.
func testCertificate(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.campus.example"},
		DNSNames: []string{"mx.campus.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// probeDomain is a name local domain d covers: d itself, or a name under
// it for ".d".
func probeDomain(d string) string {
	if strings.HasPrefix(d, ".") {
		return "sub" + d
	}
	return d
}

// TestDeployPrefixesNeverRefuseTheCampus: every example configuration cut
// after each of its lines (an editor's save caught half way, a file emptied
// by `: > sekisho.yaml`), as the loader of serve, SIGHUP and check-config
// reads it, is either refused, naming the file, or keeps every local domain
// of the whole file local and routed to the same next hops: no prefix may
// put in force a configuration that answers a campus address "relay access
// denied" or "no route". A prefix with nothing but comments is refused as
// an empty file. The same holds for a file cut at any byte.
func TestDeployPrefixesNeverRefuseTheCampus(t *testing.T) {
	for _, file := range deployConfigs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			text := deployFixture(t, fileContent(t, file))
			path := filepath.Join(t.TempDir(), "sekisho.yaml")
			writeFile(t, path, text)
			full, err := config.Load(path)
			if err != nil {
				t.Fatalf("the whole file: %v", err)
			}
			lines := strings.SplitAfter(text, "\n")
			refused, accepted := 0, 0
			for n := 0; n <= len(lines); n++ {
				prefix := strings.Join(lines[:n], "")
				writeFile(t, path, prefix)
				cfg, err := config.Load(path)
				if err != nil {
					refused++
					if !strings.HasPrefix(err.Error(), path+":") {
						t.Errorf("cut after line %d: the refusal does not start with the file name: %v", n, err)
					}
					if isComments(prefix) && !strings.Contains(err.Error(), "file is empty") {
						t.Errorf("cut after line %d (comments only): %v, want \"file is empty\"", n, err)
					}
					continue
				}
				accepted++
				for _, e := range campusLost(&full, &cfg) {
					t.Errorf("cut after line %d: accepted, and %s; the file was:\n%s", n, e, prefix)
				}
			}
			if refused == 0 || accepted == 0 {
				t.Errorf("%d prefixes refused, %d accepted: want both", refused, accepted)
			}
			for n := 0; n < len(text); n++ {
				if cfg, err := config.Parse(path, []byte(text[:n])); err == nil {
					for _, e := range campusLost(&full, &cfg) {
						t.Errorf("cut at byte %d (...%q): accepted, and %s", n, text[max(0, n-40):n], e)
					}
				}
			}
		})
	}
}

// campusLost says how cfg treats a local domain of full otherwise: no
// longer local, without a route, or routed to other next hops.
func campusLost(full, cfg *config.Config) []string {
	var lost []string
	local := gatewayConfig(cfg).LocalDomains
	routes, fullRoutes := cfg.RelayRoutes(), full.RelayRoutes()
	for _, d := range full.LocalDomains {
		probe := probeDomain(d)
		i, j := routes.Lookup(probe), fullRoutes.Lookup(probe)
		switch {
		case !local.Contains(probe):
			lost = append(lost, probe+" is no longer local (relay access denied)")
		case i < 0:
			lost = append(lost, probe+" has no route")
		case !reflect.DeepEqual(routes[i].NextHops, fullRoutes[j].NextHops):
			lost = append(lost, fmt.Sprintf("%s goes to %v instead of %v", probe, routes[i].NextHops, fullRoutes[j].NextHops))
		}
	}
	return lost
}

// isComments reports whether a file holds nothing but blanks and comments.
func isComments(text string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// TestFileMustNameWhatTheGatewayNeeds: the rule of docs/config.md, "What a
// file must say", one case each, with file and line where there is one;
// serve without -config still runs on the embedded defaults.
func TestFileMustNameWhatTheGatewayNeeds(t *testing.T) {
	route := "routes: [{domains: [campus.test], next_hops: [\"smtp://10.0.1.5:25\"]}]\n"
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "f.yaml: file is empty"},
		{"blank and comments", "\n# sekisho\n  \n", "f.yaml: file is empty"},
		{"null document", "---\n~\n", "f.yaml: file is empty"},
		{"empty mapping", "{}\n", "f.yaml: file is empty"},
		{"no hostname", "listen: {smtp: \"0.0.0.0:25\"}\nlocal_domains: [campus.test]\n" + route, "f.yaml: hostname is required"},
		{"cut after listen:", "hostname: mx\nlisten:\n", "f.yaml:2: no SMTP listener configured"},
		{"smtp without local_domains", "hostname: mx\nlisten:\n  smtp: \"0.0.0.0:25\"\n" + route, "f.yaml:3: listener smtp needs local_domains"},
		{"smtp with local_domains: []", "hostname: mx\nlisten:\n  smtp: \"0.0.0.0:25\"\nlocal_domains: []\n" + route, "f.yaml:3: listener smtp needs local_domains"},
		{"the default smtp listener", "hostname: mx\n" + route, "f.yaml: listener smtp (the default, the file has no listen) needs local_domains"},
		{"smtp without routes", "hostname: mx\nlisten:\n  smtp: \"0.0.0.0:25\"\nlocal_domains: [localhost]\n", "f.yaml:3: listener smtp relays mail and needs routes"},
		{"lmtp without routes", "hostname: mx\nlisten:\n  lmtp: \"10.0.0.1:24\"\ntrusted_networks: [10.0.0.0/8]\n", "f.yaml:3: listener lmtp relays mail and needs routes"},
		{"cut in routes", "hostname: mx\nlisten:\n  smtp: \"0.0.0.0:25\"\nlocal_domains: [campus.test]\nroutes:\n", "f.yaml:3: listener smtp relays mail and needs routes"},
	}
	for _, c := range cases {
		_, err := config.Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// Enough: an lmtp-only relay names no local domain.
	if _, err := config.Parse("f.yaml", []byte("hostname: out\nlisten:\n  lmtp: \"10.0.0.1:24\"\ntrusted_networks: [10.0.0.0/8]\nroutes: [{domains: [\"*\"], next_hops: [mx]}]\n")); err != nil {
		t.Errorf("an lmtp relay without local_domains: %v", err)
	}
	// No -config: the embedded defaults, through the same loader.
	cfg, err := config.Load("")
	if err != nil || !reflect.DeepEqual(cfg.LocalDomains, []string{"localhost"}) || cfg.Listen.SMTP != "127.0.0.1:2525" {
		t.Errorf("serve without -config: %v, %v %v", err, cfg.LocalDomains, cfg.Listen)
	}
}

// TestLoaderOpensEveryNamedFile: each file serve opens, the loader opens:
// a missing or broken one is an error naming the configuration's file:line
// and the file, for check-config and serve alike.
func TestLoaderOpensEveryNamedFile(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testCertificate(t)
	otherCert, _ := testCertificate(t)
	files := map[string]string{
		"bad.txt": "first.net\n", "broken-bad.txt": "first.net\nnot a domain\n", "ldap.secret": "pw\n",
		"cert.pem": certPEM, "key.pem": keyPEM, "other.pem": otherCert, "redis.secret": "pw\n",
	}
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	in := func(name string) string { return filepath.Join(dir, name) }
	head := "hostname: mx\nlisten:\n  smtp: \"127.0.0.1:2525\"\n" + localSite
	ldap := func(secret string) string {
		return "ldap:\n  urls: [\"ldap://127.0.0.1:389\"]\n  base_dn: \"dc=x\"\n  bind_dn: \"cn=s,dc=x\"\n  bind_password_file: " + secret + "\n  canary: c@localhost\n"
	}
	good := []string{
		"checks:\n  domain: {bad_domains: " + in("bad.txt") + "}\n",
		"checks:\n  domain: {off: true, bad_domains: " + in("missing.txt") + "}\n", // off: not opened, as serve does not
		ldap(in("ldap.secret")),
		"tls: {cert: " + in("cert.pem") + ", key: " + in("key.pem") + "}\n",
		"store: {redis: {addrs: [\"127.0.0.1:6379\"], password_file: " + in("redis.secret") + "}}\n",
	}
	for _, g := range good {
		if _, err := config.Parse("f.yaml", []byte(head+g)); err != nil {
			t.Errorf("%q: %v", g, err)
		}
	}
	bad := []struct{ yaml, want string }{
		{"checks:\n  domain: {bad_domains: " + in("missing.txt") + "}\n", "f.yaml:7: bad_domains: open " + in("missing.txt") + ": no such file or directory"},
		{"checks:\n  domain:\n    bad_domains: " + in("broken-bad.txt") + "\n", "f.yaml:8: bad_domains: " + in("broken-bad.txt") + ":2:"},
		{ldap(in("missing.secret")), "f.yaml:10: bind_password_file: open " + in("missing.secret") + ": no such file or directory"},
		{"tls: {cert: " + in("missing.pem") + ", key: " + in("key.pem") + "}\n", "f.yaml:6: cert " + in("missing.pem") + " and key " + in("key.pem") + ": open " + in("missing.pem") + ": no such file"},
		{"tls: {cert: " + in("other.pem") + ", key: " + in("key.pem") + "}\n", "f.yaml:6: cert " + in("other.pem") + " and key " + in("key.pem") + ": tls: private key does not match public key"},
		{"store: {redis: {addrs: [\"127.0.0.1:6379\"], password_file: " + in("missing.secret") + "}}\n", "f.yaml:6: password_file: open " + in("missing.secret")},
		{"dns: {resolvers: [\"not an address\"]}\n", "f.yaml:6: dns:"},
		{"ldap:\n  urls: [\"ldap://127.0.0.1:389\"]\n  base_dn: \"not a dn\"\n  canary: c@localhost\n", "f.yaml:6: ldap: base_dn \"not a dn\""},
	}
	for _, c := range bad {
		_, err := config.Parse("f.yaml", []byte(head+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n%v\nwant %q", c.yaml, err, c.want)
		}
	}
	// serve and check-config, on a file: the same refusal.
	path := in("sekisho.yaml")
	writeFile(t, path, head+bad[0].yaml)
	for _, cmd := range []string{"check-config", "serve"} {
		var out, errb bytes.Buffer
		if code := run([]string{cmd, "-config", path}, &out, &errb); code == 0 || !strings.Contains(errb.String(), path+":7: bad_domains: open "+in("missing.txt")+": no such file or directory") {
			t.Errorf("%s with a missing bad-domain list: exit %d, %q", cmd, code, errb.String())
		}
	}
}
