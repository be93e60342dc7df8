package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sekisho/internal/testenv"
)

// selfSigned writes a certificate and key for host into dir.
func selfSigned(t *testing.T, dir, host string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certPath, keyPath
}

// TestSTARTTLS: with tls configured the smtp listener offers STARTTLS; swaks
// sends through it, and the relayed message's Received header says ESMTPS.
func TestSTARTTLS(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir(), "mx.campus.test")
	gw, hop := campus(t, func(s *site) { s.extra = fmt.Sprintf("tls: {cert: %q, key: %q}\n", cert, key) })
	swaks := testenv.Command(t, "swaks", "swaks")
	out, err := exec.Command(swaks, "--server", gw.SMTP, "--tls", "--from", "bob@example.org",
		"--to", "alice@campus.test", "--header", "Subject: over TLS").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks --tls: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "TLS started") {
		t.Errorf("swaks did not start TLS:\n%s", out)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "with ESMTPS id") {
		t.Fatalf("next hop: %+v", msgs)
	}
	// The TLS version and cipher in a comment, as Postfix writes them.
	if d := string(msgs[0].Data); !regexp.MustCompile(`\(using TLS 1\.[23] with cipher TLS_[A-Z0-9_]+\)\r\n\tby `).MatchString(d) {
		t.Errorf("Received lacks the TLS comment:\n%s", d)
	}
}
