package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"sekisho/relay"
)

// writeCA writes a self-signed CA certificate in PEM to a file.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRouteTLSConfig: routes[].tls and tls_ca_file reach the relay's
// routes; absent is the default (may for mx, none otherwise);
// next_hop.mta_sts parses.
func TestRouteTLSConfig(t *testing.T) {
	ca := writeCA(t)
	cfg, err := Parse("f.yaml", []byte(`hostname: mx
local_domains: [localhost]
routes:
  - {domains: [localhost], next_hops: ["maildir:var/mail"]}
  - {domains: [campus.test], next_hops: ["smtp://10.0.1.5:25"], tls: verify, tls_ca_file: `+ca+`}
  - {domains: ["*"], next_hops: [mx]}
next_hop:
  mta_sts: {fetch_timeout: 3s, port: 8443, ca_file: `+ca+`}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs := cfg.RelayRoutes()
	if rs[1].TLS != relay.TLSVerify || rs[1].TLSRoots == nil {
		t.Errorf("route 2: TLS %v, roots %v; want verify with the CA file", rs[1].TLS, rs[1].TLSRoots)
	}
	if rs[2].TLS != relay.TLSDefault || rs[2].TLSRoots != nil {
		t.Errorf("route 3: TLS %v, roots %v; want the default and the system's CAs", rs[2].TLS, rs[2].TLSRoots)
	}
	m := cfg.NextHop.MTASTS
	if m.Off || m.FetchTimeout != 3*time.Second || m.Port != 8443 || m.CAFile.Pool() == nil {
		t.Errorf("mta_sts = %+v", m)
	}
	// check-config prints the settings as written.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tls: verify", "tls_ca_file: " + ca, "tls: default"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
}

// TestRouteTLSConfigErrors: an unknown mode, an unreadable CA file, a file
// without certificates, tls on a Maildir-only route, a bad mta_sts value —
// each an error naming file:line.
func TestRouteTLSConfigErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	cases := []struct{ yaml, want string }{
		{"hostname: mx\nroutes:\n  - domains: [localhost]\n    next_hops: [mx]\n    tls: dane\n", `f.yaml:5: tls "dane": want none, may, encrypt or verify`},
		{"hostname: mx\nroutes:\n  - domains: [localhost]\n    next_hops: [mx]\n    tls: verify\n    tls_ca_file: /nonexistent/ca.pem\n", "f.yaml:6: CA file: open /nonexistent/ca.pem"},
		{"hostname: mx\nroutes:\n  - domains: [localhost]\n    next_hops: [mx]\n    tls_ca_file: " + notPEM + "\n", "f.yaml:5: CA file " + notPEM + ": no PEM certificate"},
		{"hostname: mx\nroutes:\n  - domains: [localhost]\n    next_hops: [\"maildir:x\"]\n    tls: verify\n", "f.yaml:2: route 1 has tls or tls_ca_file but only maildir next hops"},
		{"hostname: mx\nnext_hop:\n  mta_sts:\n    fetch_timeout: -1s\n", "f.yaml:4: fetch_timeout must not be negative"},
		{"hostname: mx\nnext_hop:\n  mta_sts:\n    ca_file: /nonexistent/ca.pem\n", "f.yaml:4: CA file: open /nonexistent/ca.pem"},
		{"hostname: mx\nnext_hop:\n  mta_sts:\n    of: true\n", `f.yaml:4: unknown key "of" in next_hop.mta_sts (did you mean "off"?)`},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}
