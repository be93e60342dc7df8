package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"sekisho/config"
	"sekisho/internal/testdns"
)

// keygen runs `sekisho dkim keygen` in dir and returns the exit status
// and the output.
func keygen(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	var out, errb bytes.Buffer
	code := run(append([]string{"dkim", "keygen"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// recordLine is the one line of keygen's output that is not a comment.
func recordLine(t *testing.T, out string) string {
	t.Helper()
	var recs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, ";") {
			recs = append(recs, l)
		}
	}
	if len(recs) != 1 {
		t.Fatalf("output has %d record lines, want 1:\n%s", len(recs), out)
	}
	return recs[0]
}

// TestDKIMKeygen: for both algorithms, keygen writes the key with mode
// 0600, prints a TXT record in zone-file syntax that parses, with strings of
// at most 255 octets, and whose key is the file's: a message signed with the
// file verifies against the printed record served by DNS.
func TestDKIMKeygen(t *testing.T) {
	dnsSrv := testdns.Start(t)
	dnsSrv.AddZone("campus.test.", 60)
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsSrv.Addr())
	}}
	for _, c := range []struct{ algo, sel, k string }{{"rsa", "s2026", "k=rsa"}, {"ed25519", "e2026", "k=ed25519"}} {
		t.Run(c.algo, func(t *testing.T) {
			dir := t.TempDir()
			code, out, errs := keygen(t, dir, "-domain", "Campus.Test", "-selector", c.sel, "-algo", c.algo)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			file := filepath.Join(dir, "campus.test."+c.sel+".key")
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			if pem, _ := os.ReadFile(file); !bytes.HasPrefix(pem, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Errorf("key file is not PEM PKCS#8: %.40q", pem)
			}
			line := recordLine(t, out)
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatalf("record %q does not parse: %v", line, err)
			}
			txt, ok := rr.(*dns.TXT)
			if !ok || txt.Hdr.Name != c.sel+"._domainkey.campus.test." {
				t.Fatalf("record %v: want a TXT record for %s._domainkey.campus.test", rr, c.sel)
			}
			for _, s := range txt.Txt {
				if len(s) > 255 {
					t.Errorf("string of %d octets in the record", len(s))
				}
			}
			value := strings.Join(txt.Txt, "")
			if !strings.HasPrefix(value, "v=DKIM1; "+c.k+"; p=") {
				t.Errorf("record value %q", value)
			}
			if !strings.Contains(out, "key_file: "+file) {
				t.Errorf("output does not show the config entry with %s:\n%s", file, out)
			}

			// Sign with the file, verify with the printed record.
			dnsSrv.Add(line)
			cfg := config.Defaults()
			cfg.DKIM = []config.DKIMConfig{{Domain: "campus.test", Selector: c.sel, KeyFile: file}}
			signer, err := cfg.DKIMSigner()
			if err != nil {
				t.Fatal(err)
			}
			msg := "From: a@campus.test\r\nTo: b@example.test\r\nSubject: s\r\n\r\nbody\r\n"
			field, err := signer.Sign(strings.NewReader(msg), "campus.test")
			if err != nil {
				t.Fatal(err)
			}
			vs, err := dkim.VerifyWithOptions(strings.NewReader(field+msg), &dkim.VerifyOptions{
				LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(context.Background(), name) },
			})
			if err != nil || len(vs) != 1 || vs[0].Err != nil {
				t.Fatalf("verify: %v %+v", err, vs)
			}
		})
	}
}

// TestDKIMKeygenRefuses: an existing file is never overwritten, and bad
// arguments are usage errors that write nothing.
func TestDKIMKeygenRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "in-use.key")
	os.WriteFile(existing, []byte("the key in use\n"), 0o600)
	code, _, errs := keygen(t, dir, "-domain", "campus.test", "-selector", "s1", "-algo", "ed25519", "-out", existing)
	if code != 1 || !strings.Contains(errs, "exists: not overwritten") {
		t.Errorf("over an existing file: exit %d, %q", code, errs)
	}
	if b, _ := os.ReadFile(existing); string(b) != "the key in use\n" {
		t.Errorf("existing file changed: %q", b)
	}
	// The default name, twice.
	if code, _, errs := keygen(t, dir, "-domain", "campus.test", "-selector", "s1", "-algo", "ed25519"); code != 0 {
		t.Fatalf("first keygen: exit %d %s", code, errs)
	}
	first, _ := os.ReadFile(filepath.Join(dir, "campus.test.s1.key"))
	if code, _, _ := keygen(t, dir, "-domain", "campus.test", "-selector", "s1", "-algo", "ed25519"); code != 1 {
		t.Errorf("second keygen to the same file: exit %d, want 1", code)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "campus.test.s1.key")); !bytes.Equal(first, again) {
		t.Error("the key file was overwritten")
	}
	for _, args := range [][]string{
		{"-selector", "s1"},
		{"-domain", "campus.test"},
		{"-domain", "campus..test", "-selector", "s1"},
		{"-domain", "campus.test", "-selector", "s_1"},
		{"-domain", "campus.test", "-selector", "s2", "-algo", "dsa"},
		{"-domain", "campus.test", "-selector", "s3", "extra"},
	} {
		if code, _, _ := keygen(t, dir, args...); code != 2 {
			t.Errorf("keygen %q: exit %d, want 2", args, code)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 2 {
		t.Errorf("files %v: usage errors wrote something", files)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"dkim"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage: sekisho dkim keygen") {
		t.Errorf("sekisho dkim: exit %d, %q", code, errb.String())
	}
}

// TestDKIMConfig: a key file that is missing, unreadable or not a key is a
// check-config error naming file:line (the line of its key_file), serve
// refuses to start with it, and a good configuration gives a signer.
func TestDKIMConfig(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if code, _, errs := keygen(t, dir, "-domain", "campus.test", "-selector", "s1", "-algo", "ed25519"); code != 0 {
		t.Fatal(errs)
	}
	good := filepath.Join(dir, "campus.test.s1.key")
	missing := filepath.Join(dir, "missing.key")
	os.WriteFile(filepath.Join(dir, "junk.key"), []byte("junk"), 0o600)
	head := "hostname: mx\ntrusted_networks: [10.0.0.0/8]\n"
	cases := []struct{ yaml, want string }{
		{head + "dkim:\n  - domain: campus.test\n    selector: s1\n    key_file: " + missing + "\n",
			"f.yaml:6: dkim: key file: open " + missing + ": no such file or directory"},
		{head + "dkim: [{domain: campus.test, selector: s1, key_file: " + good + "}, {domain: lab.test, selector: s1, key_file: junk.key}]\n",
			"f.yaml:3: dkim: key file junk.key: no PEM block"},
		{head + "dkim:\n  - domain: campus.test\n    selector: s1\n    key_file: " + dir + "\n",
			"f.yaml:6: dkim: key file: read " + dir},
		{head + "dkim:\n  - domain: campus.test\n    selector: s1\n    keyfile: " + good + "\n",
			`f.yaml:6: unknown key "keyfile" in dkim[0] (did you mean "key_file"?)`},
		{head + "dkim:\n  - domain: campus.test\n    selector: s1\n", "f.yaml:4: dkim: key_file is required"},
		{head + "dkim:\n  - domain: campus.test\n    key_file: x\n", "f.yaml:4: dkim: selector is required"},
		{head + "dkim:\n  - domain: campus..test\n    selector: s1\n    key_file: " + good + "\n", "f.yaml:4: dkim: domain \"campus..test\""},
		{head + "dkim:\n  - domain: campus.test\n    selector: s_1\n    key_file: " + good + "\n", "f.yaml:5: dkim: selector \"s_1\""},
		{head + "dkim:\n  - {domain: campus.test, selector: s1, key_file: " + good + "}\n  - {domain: campus.test, selector: S1, key_file: " + good + "}\n",
			"f.yaml:3: dkim: selector S1 of campus.test is listed twice"},
		{head + "dkim: campus.test\n", "f.yaml:3:"},
	}
	for _, c := range cases {
		_, err := config.Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q:\nerror %v\nwant it to contain %q", c.yaml, err, c.want)
		}
	}

	// check-config and serve, on a file.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(cases[0].yaml), 0o600)
	for _, cmd := range []string{"check-config", "serve"} {
		var out, errb bytes.Buffer
		if code := run([]string{cmd, "-config", bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), bad+":6: ") || !strings.Contains(errb.String(), missing) {
			t.Errorf("%s with a missing key file: exit %d, %q", cmd, code, errb.String())
		}
	}

	okFile := filepath.Join(dir, "ok.yaml")
	os.WriteFile(okFile, []byte(head+"dkim: [{domain: campus.test, selector: s1, key_file: campus.test.s1.key, subdomains: true}]\n"+localSite), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "-config", okFile}, &out, &errb); code != 0 || !strings.Contains(out.String(), "key_file: campus.test.s1.key") {
		t.Fatalf("check-config: exit %d, %s%s", code, errb.String(), out.String())
	}
	cfg, err := config.Load(okFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.DKIMSigner()
	if err != nil || !s.KeyFor("lab.campus.test") || s.KeyFor("example.test") {
		t.Errorf("dkimSigner = %v, %v", s, err)
	}

	// A file removed after loading: validate (what serve runs) notices.
	cfg.DKIM[0].KeyFile = missing
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("validate with a missing key file: %v", err)
	}
	// No keys: no signer, and nothing to sign with.
	def := config.Defaults()
	if s, err := def.DKIMSigner(); s != nil || err != nil {
		t.Errorf("dkimSigner without keys = %v, %v", s, err)
	}
}
