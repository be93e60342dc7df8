package relay

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-msgauth/dkim"

	"sekisho/internal/testdns"
)

// dkimKeyFile writes a new private key of the algorithm ("rsa" or
// "ed25519") to a PKCS#8 PEM file and returns the file and the value of the
// key's TXT record (RFC 6376 §3.6.1, RFC 8463 §4).
func dkimKeyFile(t *testing.T, algo string) (file, record string) {
	t.Helper()
	var priv crypto.Signer
	var p []byte
	switch algo {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
		if p, err = x509.MarshalPKIXPublicKey(&k.PublicKey); err != nil {
			t.Fatal(err)
		}
	case "ed25519":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, p = k, pub
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), algo+".key")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, "v=DKIM1; k=" + algo + "; p=" + base64.StdEncoding.EncodeToString(p)
}

// publish serves a TXT record on the test DNS server, split into strings of
// at most 255 octets (RFC 6376 §3.6.2.2: a verifier concatenates them).
func publish(t *testing.T, s *testdns.Server, name, value string) {
	t.Helper()
	var strs []string
	for len(value) > 255 {
		strs = append(strs, `"`+value[:255]+`"`)
		value = value[255:]
	}
	strs = append(strs, `"`+value+`"`)
	s.Add(name + ". 300 IN TXT " + strings.Join(strs, " "))
}

// verifier verifies messages with the keys the test DNS server publishes,
// through a real resolver (the Go one, over UDP/TCP to the server).
func verifier(s *testdns.Server) *dkim.VerifyOptions {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}}
	return &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return r.LookupTXT(context.Background(), name)
	}}
}

// verify returns the verifications of a signed message.
func verify(t *testing.T, s *testdns.Server, signed string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(signed), verifier(s))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

// sign signs msg and returns the signed message (the fields on top).
func sign(t *testing.T, s *Signer, msg, fromDomain string) (field, signed string) {
	t.Helper()
	field, err := s.Sign(strings.NewReader(msg), fromDomain)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !strings.HasPrefix(field, "DKIM-Signature:") || !strings.HasSuffix(field, "\r\n") {
		t.Fatalf("field %q: want a DKIM-Signature field ending in CRLF", field)
	}
	return field, field + msg
}

const dkimMsg = "From: Alice <alice@campus.test>\r\n" +
	"To: bob@example.test\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0900\r\n" +
	"Message-ID: <1@campus.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob.\r\n"

// TestDKIMSignVerify: both algorithms, verified by go-msgauth against the
// key published in (test) DNS, for ordinary and awkward messages.
func TestDKIMSignVerify(t *testing.T) {
	dnsSrv := testdns.Start(t)
	dnsSrv.AddZone("campus.test.", 60)
	msgs := map[string]string{
		"plain":                    dkimMsg,
		"body ends in empty lines": strings.TrimSuffix(dkimMsg, "\r\n") + "\r\n\r\n\r\n\r\n",
		"folded header": "From: Alice\r\n <alice@campus.test>\r\n" +
			"To: bob@example.test,\r\n\tcarol@example.test\r\n" +
			"Subject: a subject that is long enough\r\n    to be folded   twice\r\n\tin all\r\n" +
			"Date: Mon, 02 Mar 2026 10:00:00 +0900\r\n\r\nbody\r\n",
		"empty body":           "From: alice@campus.test\r\nSubject: x\r\n\r\n",
		"header only":          "From: alice@campus.test\r\nSubject: x\r\n",
		"trailing white space": "From: alice@campus.test\r\nSubject: x \t\r\n\r\nline with spaces   \r\n\r\n",
	}
	for _, algo := range []string{"rsa", "ed25519"} {
		file, record := dkimKeyFile(t, algo)
		sel := "s" + algo
		publish(t, dnsSrv, sel+"._domainkey.campus.test", record)
		s, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: sel, KeyFile: file}})
		if err != nil {
			t.Fatal(err)
		}
		for name, msg := range msgs {
			t.Run(algo+"/"+name, func(t *testing.T) {
				field, signed := sign(t, s, msg, "campus.test")
				if want := "a=" + algo + "-sha256;"; !strings.Contains(field, want) {
					t.Errorf("field %q lacks %s", field, want)
				}
				if !strings.Contains(field, "c=relaxed/relaxed;") || strings.Contains(field, " l=") {
					t.Errorf("field %q: want relaxed/relaxed and no l=", field)
				}
				if name == "header only" {
					// go-msgauth's verifier needs the empty line; the
					// canonical body is CRLF with or without it
					// (RFC 6376 §3.4.3, §3.4.4).
					signed += "\r\n"
				}
				vs := verify(t, dnsSrv, signed)
				if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "campus.test" {
					t.Fatalf("verifications %+v; want one, valid, d=campus.test", vs[0])
				}
				// The body is not changed: a changed one fails.
				if vs := verify(t, dnsSrv, signed+"appended\r\n"); vs[0].Err == nil {
					t.Error("signature still valid after the body changed")
				}
			})
		}
	}
}

// TestDKIMSignedFields: the fields present are signed, as often as they
// occur; absent ones are not listed; From is listed once more than it
// occurs (oversigned), so that adding a From anywhere breaks the signature.
func TestDKIMSignedFields(t *testing.T) {
	dnsSrv := testdns.Start(t)
	dnsSrv.AddZone("campus.test.", 60)
	file, record := dkimKeyFile(t, "ed25519")
	publish(t, dnsSrv, "s1._domainkey.campus.test", record)
	s, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: "s1", KeyFile: file}})
	if err != nil {
		t.Fatal(err)
	}
	msg := "Received: from x by y\r\n" + strings.Replace(dkimMsg, "To:", "Cc: c@example.test\r\nCC: d@example.test\r\nX-Mailer: m\r\nTo:", 1)
	_, signed := sign(t, s, msg, "campus.test")
	vs := verify(t, dnsSrv, signed)
	if vs[0].Err != nil {
		t.Fatal(vs[0].Err)
	}
	got := strings.Join(vs[0].HeaderKeys, ":")
	want := "From:From:To:Cc:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type"
	if got != want {
		t.Errorf("h=%s, want %s", got, want)
	}

	add := map[string]string{
		"From on top":            "From: mallory@evil.test\r\n" + signed,
		"From after the others":  strings.Replace(signed, "\r\n\r\n", "\r\nFrom: mallory@evil.test\r\n\r\n", 1),
		"Subject changed":        strings.Replace(signed, "Subject: hello", "Subject: hullo", 1),
		"To added (signed name)": strings.Replace(signed, "\r\n\r\n", "\r\nTo: mallory@evil.test\r\n\r\n", 1),
	}
	for name, m := range add {
		if vs := verify(t, dnsSrv, m); vs[0].Err == nil {
			t.Errorf("%s: signature still valid", name)
		}
	}
	// An unsigned field may be added (what relays do with Received).
	if vs := verify(t, dnsSrv, strings.Replace(signed, "\r\n\r\n", "\r\nX-Spam: no\r\n\r\n", 1)); vs[0].Err != nil {
		t.Errorf("adding an unsigned field broke the signature: %v", vs[0].Err)
	}
}

// TestDKIMSubdomains: a subdomain's mail is signed only by a key with
// Subdomains, with d= the key's domain; the domain's own keys all sign.
func TestDKIMSubdomains(t *testing.T) {
	dnsSrv := testdns.Start(t)
	dnsSrv.AddZone("campus.test.", 60)
	dnsSrv.AddZone("other.test.", 60)
	fileA, recA := dkimKeyFile(t, "ed25519")
	fileB, recB := dkimKeyFile(t, "rsa")
	publish(t, dnsSrv, "a._domainkey.campus.test", recA)
	publish(t, dnsSrv, "b._domainkey.other.test", recB)
	s, err := NewSigner([]DKIMKey{
		{Domain: "Campus.Test.", Selector: "a", KeyFile: fileA, Subdomains: true},
		{Domain: "other.test", Selector: "b", KeyFile: fileB},
	})
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{
		"campus.test": true, "CAMPUS.test.": true, "lab.campus.test": true, "a.b.campus.test": true,
		"other.test": true, "sub.other.test": false, "xcampus.test": false, "test": false, "": false,
		"[192.0.2.1]": false, "example.test": false,
	} {
		if got := s.KeyFor(d); got != want {
			t.Errorf("KeyFor(%q) = %v, want %v", d, got, want)
		}
	}
	msg := strings.ReplaceAll(dkimMsg, "alice@campus.test", "alice@lab.campus.test")
	_, signed := sign(t, s, msg, "lab.campus.test")
	if vs := verify(t, dnsSrv, signed); vs[0].Err != nil || vs[0].Domain != "campus.test" {
		t.Errorf("subdomain mail: %+v (err %v), want valid with d=campus.test", vs[0], vs[0].Err)
	}
	if f, err := s.Sign(strings.NewReader(msg), "sub.other.test"); f != "" || err != nil {
		t.Errorf("Sign for a subdomain without Subdomains = %q, %v; want nothing", f, err)
	}
}

// TestDKIMNoKey: no key for the domain, or no signer at all: KeyFor is
// false, and Sign adds nothing and reads nothing.
func TestDKIMNoKey(t *testing.T) {
	file, _ := dkimKeyFile(t, "ed25519")
	s, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: "s", KeyFile: file}})
	if err != nil {
		t.Fatal(err)
	}
	var none *Signer
	for _, sg := range []*Signer{s, none} {
		if sg.KeyFor("example.test") {
			t.Error("KeyFor(example.test) = true")
		}
		r := strings.NewReader(dkimMsg)
		if f, err := sg.Sign(r, "example.test"); f != "" || err != nil || r.Len() != len(dkimMsg) {
			t.Errorf("Sign without a key = %q, %v, read %d octets", f, err, len(dkimMsg)-r.Len())
		}
	}
	if none.KeyFor("campus.test") {
		t.Error("a nil Signer has a key")
	}
}

// TestDKIMTwoKeysOneDomain: an RSA and an Ed25519 key for one domain give
// two signatures, each valid on its own (a verifier that does not know
// Ed25519 uses the RSA one, RFC 6376 §4.2).
func TestDKIMTwoKeysOneDomain(t *testing.T) {
	dnsSrv := testdns.Start(t)
	dnsSrv.AddZone("campus.test.", 60)
	fileR, recR := dkimKeyFile(t, "rsa")
	fileE, recE := dkimKeyFile(t, "ed25519")
	publish(t, dnsSrv, "r._domainkey.campus.test", recR)
	publish(t, dnsSrv, "e._domainkey.campus.test", recE)
	s, err := NewSigner([]DKIMKey{
		{Domain: "campus.test", Selector: "r", KeyFile: fileR},
		{Domain: "campus.test", Selector: "e", KeyFile: fileE},
	})
	if err != nil {
		t.Fatal(err)
	}
	field, signed := sign(t, s, dkimMsg, "campus.test")
	if n := strings.Count(field, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d fields, want 2:\n%s", n, field)
	}
	vs := verify(t, dnsSrv, signed)
	if len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		t.Fatalf("verifications %v %v", vs[0].Err, vs[len(vs)-1].Err)
	}
}

// TestDKIMInternationalizedDomain: a key for the A-label form signs mail
// whose From has the U-label form, and the other way round.
func TestDKIMInternationalizedDomain(t *testing.T) {
	file, _ := dkimKeyFile(t, "ed25519")
	s, err := NewSigner([]DKIMKey{{Domain: "bücher.test", Selector: "s", KeyFile: file}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"xn--bcher-kva.test", "BÜCHER.test", "bücher.test"} {
		if !s.KeyFor(d) {
			t.Errorf("KeyFor(%q) = false", d)
		}
	}
	f, err := s.Sign(strings.NewReader("From: a@bücher.test\r\n\r\nx\r\n"), "bücher.test")
	if err != nil || !strings.Contains(f, "d=xn--bcher-kva.test;") {
		t.Errorf("Sign = %q, %v; want d= in A-label form", f, err)
	}
}

// TestNewSignerErrors: every key that cannot be used is an error naming the
// file (or the domain and selector at fault).
func TestNewSignerErrors(t *testing.T) {
	dir := t.TempDir()
	good, _ := dkimKeyFile(t, "rsa")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ecKey := func() string {
		// An ECDSA key: x509 parses it, DKIM has no algorithm for it.
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write("ec.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	}
	missing := filepath.Join(dir, "missing.key")
	cases := []struct {
		key  DKIMKey
		want string
	}{
		{DKIMKey{Domain: "campus.test", Selector: "s", KeyFile: missing}, missing},
		{DKIMKey{Domain: "campus.test", Selector: "s", KeyFile: dir}, dir},
		{DKIMKey{Domain: "campus.test", Selector: "s", KeyFile: write("garbage.key", "not a key")}, "garbage.key: no PEM block"},
		{DKIMKey{Domain: "campus.test", Selector: "s", KeyFile: write("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, "cert.pem: PEM block \"CERTIFICATE\""},
		{DKIMKey{Domain: "campus.test", Selector: "s", KeyFile: write("bad.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, "bad.key: "},
		{DKIMKey{Domain: "campus.test", Selector: "s", KeyFile: ecKey()}, "ec.key: a *ecdsa.PrivateKey cannot sign DKIM"},
		{DKIMKey{Domain: "campus..test", Selector: "s", KeyFile: good}, `domain "campus..test"`},
		{DKIMKey{Domain: "campus.test", Selector: "", KeyFile: good}, `selector ""`},
		{DKIMKey{Domain: "campus.test", Selector: "a_b", KeyFile: good}, `selector "a_b"`},
	}
	for _, c := range cases {
		_, err := NewSigner([]DKIMKey{c.key})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewSigner(%+v) = %v; want an error containing %q", c.key, err, c.want)
		}
	}
	_, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: "s", KeyFile: good}, {Domain: "CAMPUS.test", Selector: "S", KeyFile: good}})
	if err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("a selector listed twice: %v", err)
	}
	// An all-digit selector is usual (a date) and fine.
	if _, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: "20260301", KeyFile: good}}); err != nil {
		t.Errorf("all-digit selector: %v", err)
	}
}

// TestLoadDKIMKeyPKCS1: the "RSA PRIVATE KEY" form that opendkim-genkey
// and openssl genrsa write is accepted too.
func TestLoadDKIMKeyPKCS1(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
	if _, err := LoadDKIMKey(p); err != nil {
		t.Fatal(err)
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct{ hdr, want string }{
		{"From: Alice <alice@Campus.Test>\r\nSubject: x\r\n\r\n", "campus.test"},
		{"Subject: x\r\nfrom: =?utf-8?q?Al=C3=AFce?=\r\n <alice@lab.campus.test>\r\n\r\nbody", "lab.campus.test"},
		{"From: a@bücher.test\r\n\r\n", "xn--bcher-kva.test"},
		{"Subject: none\r\n\r\n", ""},
		{"From: a@x.test\r\nFrom: b@x.test\r\n\r\n", ""},
		{"From: a@x.test, b@x.test\r\n\r\n", ""},
		{"From: not an address\r\n\r\n", ""},
		// Issue 16: a second From far down the header, past the 256 KiB
		// the header parser once stopped at; one whose name stands on a
		// line of its own (a From to a reader that unfolds first); a
		// group of one.
		{"From: a@x.test\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 90)+"\r\n", 3000) + "From: b@y.test\r\n\r\n", ""},
		{"From\r\n : b@y.test\r\nFrom: a@x.test\r\n\r\n", ""},
		{"From: g: a@x.test;\r\n\r\n", ""},
	}
	for _, c := range cases {
		got, err := FromDomain([]byte(c.hdr))
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("FromDomain(%q) = %q, %v; want %q", c.hdr, got, err, c.want)
		}
	}
}

// TestDKIMSignConcurrent: one Signer, many goroutines (run with -race).
func TestDKIMSignConcurrent(t *testing.T) {
	dnsSrv := testdns.Start(t)
	dnsSrv.AddZone("campus.test.", 60)
	file, record := dkimKeyFile(t, "ed25519")
	publish(t, dnsSrv, "s._domainkey.campus.test", record)
	s, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: "s", KeyFile: file}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			msg := strings.Replace(dkimMsg, "Hello Bob.", fmt.Sprintf("Hello number %d.", i), 1)
			f, err := s.Sign(strings.NewReader(msg), "campus.test")
			if err != nil {
				errs <- err
				return
			}
			vs, err := dkim.VerifyWithOptions(strings.NewReader(f+msg), verifier(dnsSrv))
			if err == nil && vs[0].Err != nil {
				err = vs[0].Err
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDKIMSignReadError: a failing reader is an error, not a signature.
func TestDKIMSignReadError(t *testing.T) {
	file, _ := dkimKeyFile(t, "ed25519")
	s, err := NewSigner([]DKIMKey{{Domain: "campus.test", Selector: "s", KeyFile: file}})
	if err != nil {
		t.Fatal(err)
	}
	r := io.MultiReader(strings.NewReader(dkimMsg), iotest.ErrReader(errors.New("disk gone")))
	if f, err := s.Sign(r, "campus.test"); err == nil || f != "" {
		t.Errorf("Sign = %q, %v; want the read error", f, err)
	}
	if f, err := s.Sign(strings.NewReader(""), "campus.test"); err == nil || f != "" {
		t.Errorf("Sign(empty) = %q, %v; want an error", f, err)
	}
}
