// Package e2e holds sekisho's end-to-end tests: the built binary, real
// clients (swaks, net/smtp, a raw transcript client), real next hops, and the
// real slapd, redis-server and DNS server of internal/.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// site describes a gateway configuration for a test. Zero values give the
// campus.test setup: mail for campus.test relayed to one next hop, 127.0.0.1
// trusted, 127.0.0.2 an outside client.
type site struct {
	smtp     string   // listener address; a free port if empty
	http     string   // the http listener's address; none if empty
	local    []string // local_domains
	trusted  []string
	routes   []string // YAML lines of the routes list
	extra    string   // more top-level YAML
	limits   string   // YAML lines under limits:
	greet    string   // checks.greet_pause delay; "0s" by default
	checks   string   // more YAML lines under checks: (a check not named here is off)
	hostname string
}

func (s site) yaml(t testing.TB) string {
	if s.smtp == "" {
		s.smtp = testenv.FreePort(t)
	}
	if s.local == nil {
		s.local = []string{"campus.test", ".campus.test"}
	}
	if s.trusted == nil {
		s.trusted = []string{"127.0.0.1/32"}
	}
	if s.hostname == "" {
		s.hostname = "mx.campus.test"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname: %s\n", s.hostname)
	fmt.Fprintf(&b, "listen:\n  smtp: %q\n", s.smtp)
	if s.http != "" {
		fmt.Fprintf(&b, "  http: %q\n", s.http)
	}
	fmt.Fprintf(&b, "local_domains: [%s]\n", quoteList(s.local))
	fmt.Fprintf(&b, "trusted_networks: [%s]\n", quoteList(s.trusted))
	b.WriteString("routes:\n")
	for _, r := range s.routes {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	b.WriteString("limits:\n  shutdown_grace: 20s\n")
	for _, l := range strings.Split(strings.TrimSpace(s.limits), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
		}
	}
	if s.greet == "" {
		s.greet = "0s"
	}
	b.WriteString("checks:\n")
	if !strings.Contains(s.checks, "greet_pause:") {
		fmt.Fprintf(&b, "  greet_pause: {delay: %s, exempt: []}\n", s.greet)
	}
	// The checks that need DNS, LDAP or a store are off unless the test
	// configures them: each test is about what it sets up.
	for _, check := range []string{"dnsbl", "domain", "account", "greylist", "spf", "dmarc"} {
		if !strings.Contains(s.checks, check+":") {
			fmt.Fprintf(&b, "  %s: {off: true}\n", check)
		}
	}
	for _, l := range strings.Split(s.checks, "\n") {
		if strings.TrimSpace(l) != "" {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	b.WriteString("log: {level: debug}\n")
	if !strings.Contains(s.extra, "control:") {
		b.WriteString(harness.TestControl) // one per test, not /run/sekisho's
	}
	b.WriteString(s.extra)
	return b.String()
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// routeTo is a route line sending domains to next hops.
func routeTo(domains []string, hops ...string) string {
	return fmt.Sprintf("{domains: [%s], next_hops: [%s]}", quoteList(domains), quoteList(hops))
}

// TestCheckConfigFailsWhereServeWould: check-config opens every file the
// configuration names, as serve does, so that the unit's ExecStartPre
// (deploy/sekisho.service) refuses what serve would: for each file made
// missing or broken, and for a configuration emptied or cut short,
// check-config and serve both exit non-zero with the same error, naming the
// configuration's file (and line) and the file; a missing
// bad-domain list says "no such file or directory" (and not that a previous
// list stays in force). With every file in place, check-config passes and
// serve starts.
func TestCheckConfigFailsWhereServeWould(t *testing.T) {
	dir := t.TempDir()
	bin := harness.Binary(t)
	cert, key := selfSigned(t, dir, "mx.campus.test")
	otherCert, _ := selfSigned(t, t.TempDir(), "mx.campus.test")
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dkimKey := filepath.Join(dir, "campus.test.s1.key")
	if out, err := exec.Command(bin, "dkim", "keygen", "-domain", "campus.test", "-selector", "s1", "-out", dkimKey).CombinedOutput(); err != nil {
		t.Fatalf("dkim keygen: %v\n%s", err, out)
	}
	good := map[string]string{
		"bad_domains": file("baddomains.txt", "first.net\n"),
		"whitelist":   file("whitelist.txt", "# none\n"),
		"secret":      file("ldap.secret", "pw\n"),
		"cert":        cert,
		"key":         key,
		"dkim":        dkimKey,
		"ca":          cert,
	}
	missing := filepath.Join(dir, "missing")
	config := func(smtp string, change map[string]string) string {
		f := map[string]string{}
		for k, v := range good {
			f[k] = v
		}
		for k, v := range change {
			f[k] = v
		}
		return site{
			smtp: smtp,
			routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://127.0.0.1:9"),
				fmt.Sprintf(`{domains: ["*"], next_hops: [mx], tls: verify, tls_ca_file: %q}`, f["ca"])},
			checks: fmt.Sprintf("domain: {bad_domains: %q}\ngreylist: {whitelist: %q}\naccount: {}", f["bad_domains"], f["whitelist"]),
			extra: fmt.Sprintf("tls: {cert: %q, key: %q}\n", f["cert"], f["key"]) +
				fmt.Sprintf("ldap: {urls: [\"ldap://127.0.0.1:9\"], base_dn: \"dc=campus,dc=test\", bind_dn: \"cn=sekisho,dc=campus,dc=test\", bind_password_file: %q, canary: canary@campus.test}\n", f["secret"]) +
				fmt.Sprintf("dkim: [{domain: campus.test, selector: s1, key_file: %q}]\n", f["dkim"]) + f["store"],
		}.yaml(t)
	}
	cases := []struct {
		name   string
		change map[string]string
		raw    string   // the whole file instead, when set
		want   []string // in the error, besides the configuration's file:line
	}{
		{"empty file", nil, "# emptied by : > sekisho.yaml\n", []string{"file is empty"}},
		{"cut after listen", nil, "hostname: mx.campus.test\nlisten:\n  smtp: \"127.0.0.1:9\"\n", []string{":3: listener smtp needs local_domains"}},
		{"bad-domain list missing", map[string]string{"bad_domains": missing}, "", []string{"bad_domains: open " + missing + ": no such file or directory"}},
		{"bad-domain list broken", map[string]string{"bad_domains": file("broken.txt", "first.net\nnot a domain\n")}, "", []string{filepath.Join(dir, "broken.txt") + ":2:"}},
		{"LDAP secret missing", map[string]string{"secret": missing}, "", []string{"bind_password_file: open " + missing + ": no such file or directory"}},
		{"TLS certificate missing", map[string]string{"cert": missing}, "", []string{"cert " + missing + " and key " + key, "no such file or directory"}},
		{"TLS key of another certificate", map[string]string{"cert": otherCert}, "", []string{"cert " + otherCert + " and key " + key, "private key does not match"}},
		{"DKIM key missing", map[string]string{"dkim": missing}, "", []string{"key file: open " + missing + ": no such file or directory"}},
		{"greylist whitelist missing", map[string]string{"whitelist": missing}, "", []string{"whitelist refused: open " + missing}},
		{"CA file missing", map[string]string{"ca": missing}, "", []string{"CA file: open " + missing}},
		{"Redis password file missing", map[string]string{"store": fmt.Sprintf("store: {redis: {addrs: [\"127.0.0.1:9\"], password_file: %q}}\n", missing)}, "", []string{"password_file: open " + missing}},
	}
	path := filepath.Join(dir, "sekisho.yaml")
	for _, c := range cases {
		text := c.raw
		if text == "" {
			text = config("127.0.0.1:9", c.change)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		check, checkErr := exec.Command(bin, "check-config", "-config", path).CombinedOutput()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		serveCmd := exec.CommandContext(ctx, bin, "serve", "-config", path)
		serveCmd.Dir = t.TempDir()
		serve, serveErr := serveCmd.CombinedOutput()
		cancel()
		if checkErr == nil || serveErr == nil {
			t.Errorf("%s: check-config exit %v, serve exit %v: want both to fail\ncheck-config: %s\nserve: %s", c.name, checkErr, serveErr, check, serve)
			continue
		}
		first, _, _ := strings.Cut(string(check), "\n")
		if !strings.HasPrefix(first, path+":") || !strings.Contains(string(serve), first) {
			t.Errorf("%s: check-config and serve do not give the same error naming %s:\ncheck-config: %s\nserve: %s", c.name, path, check, serve)
		}
		for _, w := range c.want {
			if !strings.Contains(first, w) {
				t.Errorf("%s: %q lacks %q", c.name, first, w)
			}
		}
		if strings.Contains(string(serve), "previous list") {
			t.Errorf("%s: serve speaks of a previous list at start:\n%s", c.name, serve)
		}
	}

	// Every file in place: check-config passes, and serve starts.
	ok := config(testenv.FreePort(t), nil)
	if err := os.WriteFile(path, []byte(ok), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check-config", "-config", path).CombinedOutput(); err != nil {
		t.Fatalf("check-config of the whole configuration: %v\n%s", err, out)
	}
	gw := harness.Start(t, ok)
	gw.WaitLog(`msg="bad-domain list loaded" file=`+good["bad_domains"]+" trigger=load entries=1", 5*time.Second)
}
