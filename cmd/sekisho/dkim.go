package main

// DKIM: the dkim: key of the configuration (DESIGN.md §7) and the
// `sekisho dkim keygen` subcommand that makes a key and prints the DNS
// record to publish (RFC 6376 §3.6, RFC 8463 §4). The signing itself is
// relay.Signer's.

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"sekisho/relay"
)

const dkimUsage = `usage: sekisho dkim keygen -domain DOMAIN -selector SELECTOR [-algo rsa|ed25519] [-out FILE]

Makes a DKIM signing key (RFC 6376; Ed25519: RFC 8463), writes the private
key as PEM PKCS#8 with mode 0600 to FILE (default DOMAIN.SELECTOR.key in the
current directory; an existing file is never overwritten), and prints the
DNS TXT record to publish at SELECTOR._domainkey.DOMAIN, in zone-file
syntax. Then add to the configuration:

  dkim: [{domain: DOMAIN, selector: SELECTOR, key_file: FILE}]

-algo rsa (the default) makes a 2048-bit RSA key (rsa-sha256), which every
verifier checks; ed25519 a key for ed25519-sha256, which not every verifier
checks yet: publish and configure both for one domain to sign with both.

exit status: 0 done, 1 the key could not be written, 2 usage error.
`

// runDKIM is `sekisho dkim`.
func runDKIM(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dkim", dkimUsage, stdout, stderr)
	domain := fs.String("domain", "", "the signing domain (d=)")
	selector := fs.String("selector", "", "the selector (s=), e.g. s2026")
	algo := fs.String("algo", "rsa", "rsa (2048 bits) or ed25519")
	out := fs.String("out", "", "private key file (default DOMAIN.SELECTOR.key; never overwritten)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	switch {
	case fs.NArg() == 0:
		return usageError(fs, stderr, "a command is required: keygen")
	case fs.Arg(0) != "keygen":
		return usageError(fs, stderr, "unknown command %q", fs.Arg(0))
	case fs.NArg() > 1:
		return usageError(fs, stderr, "keygen: unexpected argument %q", fs.Arg(1))
	}
	if *domain == "" || *selector == "" {
		return usageError(fs, stderr, "keygen: -domain and -selector are required")
	}
	name, err := relay.DKIMRecordName(*selector, *domain)
	if err != nil {
		fmt.Fprintln(stderr, "sekisho dkim keygen:", err)
		return 2
	}
	sel, dom, _ := strings.Cut(name, "._domainkey.")

	var priv crypto.Signer
	var desc string
	switch *algo {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			fmt.Fprintln(stderr, "sekisho dkim keygen:", err)
			return 1
		}
		priv, desc = k, "rsa-sha256, RSA 2048 bits"
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			fmt.Fprintln(stderr, "sekisho dkim keygen:", err)
			return 1
		}
		priv, desc = k, "ed25519-sha256"
	default:
		fmt.Fprintf(stderr, "sekisho dkim keygen: -algo %q: want rsa or ed25519\n", *algo)
		return 2
	}
	record, err := dkimRecord(priv.Public())
	if err != nil {
		fmt.Fprintln(stderr, "sekisho dkim keygen:", err)
		return 1
	}
	file := *out
	if file == "" {
		file = dom + "." + sel + ".key"
	}
	if err := writeKeyFile(file, priv); err != nil {
		fmt.Fprintln(stderr, "sekisho dkim keygen:", err)
		return 1
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	fmt.Fprintf(stdout, "; DKIM key for %s, selector %s (%s)\n", dom, sel, desc)
	fmt.Fprintf(stdout, "; private key written to %s (mode 0600: keep it secret)\n", abs)
	fmt.Fprintf(stdout, "; publish this TXT record, then add to the configuration:\n")
	fmt.Fprintf(stdout, ";   dkim: [{domain: %s, selector: %s, key_file: %s}]\n", dom, sel, abs)
	fmt.Fprintf(stdout, "%s. 3600 IN TXT %s\n", name, txtStrings(record))
	return 0
}

// writeKeyFile writes a private key as PEM PKCS#8 to a new file of mode
// 0600: an existing file is never overwritten (O_EXCL), so that a key in use
// cannot be lost to a repeated command.
func writeKeyFile(file string, priv crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: not overwritten (choose another -out or selector)", file)
		}
		return err
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

// dkimRecord is the value of a key's TXT record (RFC 6376 §3.6.1): for RSA
// the SubjectPublicKeyInfo in DER, for Ed25519 the 32 octets of the public
// key itself (RFC 8463 §4), base64-encoded.
func dkimRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("no DKIM key type for %T", pub)
}

// txtStrings writes a TXT value as quoted character-strings of at most 255
// octets each (RFC 1035 §3.3.14; a verifier concatenates them, RFC 6376
// §3.6.2.2). The value holds no quote or backslash.
func txtStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}
