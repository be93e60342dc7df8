package relay

// DKIM signing of outbound mail (RFC 6376; Ed25519 keys: RFC 8463).
//
// The gateway decides what is outbound (a client in trusted_networks or an
// authenticated user; inbound mail is never signed) and asks the Signer for
// the DKIM-Signature field(s) to put on top of the message it relays. The
// message itself is not changed: the signature covers the bytes the next hop
// receives.
//
// Choices, each with its reason:
//
//   - Canonicalization relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4): it
//     survives the refolding of header fields and the trailing white space
//     that relays and list servers introduce; "simple" breaks on them.
//   - Signed header fields (RFC 6376 §5.4.1): of signedFields, each one the
//     message carries, as many times as it occurs. Fields absent from the
//     message are not listed, so that a list server adding List-Id or
//     Reply-To does not break the signature.
//   - From is oversigned (RFC 6376 §5.4.2, §8.15): listed once more than it
//     occurs, so that a verifier computes the hash over a null field for the
//     extra instance and a From added in transit breaks the signature.
//   - No l= tag (RFC 6376 §8.2: a body length limit lets anyone append
//     content), no x= expiry, t= set (go-msgauth does).
//   - The key file's type decides the algorithm: rsa-sha256 (RSA 1024 to
//     4096 bits, RFC 8301 §3.2: signers MUST use at least 1024 and SHOULD use
//     2048) or ed25519-sha256 (RFC 8463 §3). A domain may have several keys,
//     for example one RSA and one Ed25519 key while not every verifier knows
//     Ed25519 yet: the message then gets one signature per key, and a
//     verifier uses the one it understands (RFC 6376 §4.2).
//
// go-msgauth (github.com/emersion/go-msgauth/dkim) computes the hashes and
// signatures; this file adds the key store, the domain matching (the
// mailaddr matcher, as everywhere in sekisho) and the choice of fields.

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"sekisho/filters"
	"sekisho/internal/mailaddr"
)

// DKIMKey is one signing key (the config's dkim: entries): mail whose From
// domain is Domain — or, with Subdomains, any name below Domain — is signed
// with d=Domain and s=Selector, by the private key in KeyFile (PEM: PKCS#8
// "PRIVATE KEY" with an RSA or Ed25519 key, or PKCS#1 "RSA PRIVATE KEY").
type DKIMKey struct {
	Domain, Selector, KeyFile string
	Subdomains                bool
}

// RSA key sizes accepted (RFC 8301 §3.2: signers MUST use at least 1024 bits;
// verifiers MUST validate 1024 to 4096 bits, so a larger key may not verify).
const (
	minRSABits = 1024
	maxRSABits = 4096
)

// signedFields are the header fields signed when present (RFC 6376 §5.4.1's
// list, the MIME fields that decide how the body is shown, and
// List-Unsubscribe-Post, which RFC 8058 §4 requires to be signed).
var signedFields = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive",
}

// signingKey is a loaded DKIMKey.
type signingKey struct {
	DKIMKey
	signer crypto.Signer
}

// Signer signs outbound mail with the configured keys. It is immutable and
// safe for concurrent use; a nil *Signer has no keys.
type Signer struct {
	exact mailaddr.DomainSet       // every key's domain
	below mailaddr.DomainSet       // ".d" for each domain d with a Subdomains key: names below d
	keys  map[string][]*signingKey // by folded domain, in configuration order
}

// NewSigner loads every key. A key file that is missing, unreadable or does
// not hold a usable private key is an error naming the file; so are an
// invalid domain or selector and a domain listed twice with one selector.
func NewSigner(keys []DKIMKey) (*Signer, error) {
	s := &Signer{keys: map[string][]*signingKey{}}
	var domains, parents []string
	seen := map[string]bool{}
	for _, k := range keys {
		name, err := DKIMRecordName(k.Selector, k.Domain)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("dkim: selector %s of %s is listed twice", k.Selector, k.Domain)
		}
		seen[name] = true
		k.Selector, k.Domain, _ = strings.Cut(name, "._domainkey.")
		signer, err := LoadDKIMKey(k.KeyFile)
		if err != nil {
			return nil, err
		}
		s.keys[k.Domain] = append(s.keys[k.Domain], &signingKey{DKIMKey: k, signer: signer})
		domains = append(domains, k.Domain)
		if k.Subdomains {
			parents = append(parents, "."+k.Domain)
		}
	}
	s.exact = mailaddr.NewDomainSet(domains)
	s.below = mailaddr.NewDomainSet(parents)
	return s, nil
}

// DKIMRecordName returns the DNS name of a key's TXT record,
// "selector._domainkey.domain" (RFC 6376 §3.6.2.1), in ASCII form (U-labels
// as A-labels, lower case). It is an error when domain is not a domain name
// or selector is not a sequence of DNS labels (RFC 6376 §3.1).
func DKIMRecordName(selector, domain string) (string, error) {
	d, err := mailaddr.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("dkim: domain %q: %v", domain, err)
	}
	if selector == "" || strings.HasSuffix(selector, ".") {
		return "", fmt.Errorf("dkim: selector %q is not a DNS name (RFC 6376 section 3.1)", selector)
	}
	// The selector's labels are host-name labels; an all-digit one
	// ("20260101") is fine, since the domain's own top-level label is what
	// ToASCII checks for that. "domainkey" stands in for "_domainkey", whose
	// underscore no host name may have, so that the length of the whole name
	// is checked too.
	full, err := mailaddr.ToASCII(selector + ".domainkey." + d)
	if err != nil {
		return "", fmt.Errorf("dkim: selector %q of %s: %v", selector, domain, err)
	}
	sel := strings.TrimSuffix(full, ".domainkey."+d)
	return sel + "._domainkey." + d, nil
}

// LoadDKIMKey reads a PEM private key for DKIM: PKCS#8 ("PRIVATE KEY") with
// an RSA or Ed25519 key, or PKCS#1 ("RSA PRIVATE KEY", what opendkim-genkey
// and openssl genrsa write). Errors name the file.
func LoadDKIMKey(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("dkim: key file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("dkim: key file %s: no PEM block (want a PEM private key, PKCS#8)", file)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim: key file %s: PEM block %q is not a private key (want PRIVATE KEY, PKCS#8)", file, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: key file %s: %v", file, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("dkim: key file %s: RSA key of %d bits; want %d to %d, 2048 recommended (RFC 8301 section 3.2)", file, bits, minRSABits, maxRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("dkim: key file %s: a %T cannot sign DKIM (want RSA or Ed25519)", file, key)
}

// keysFor returns the keys that sign mail from a domain: every key of the
// domain itself, otherwise the Subdomains keys of its closest parent that
// has some.
func (s *Signer) keysFor(fromDomain string) []*signingKey {
	if s == nil {
		return nil
	}
	if d, ok := s.exact.Match(fromDomain); ok {
		return s.keys[d]
	}
	p, ok := s.below.Match(fromDomain)
	if !ok {
		return nil
	}
	var out []*signingKey
	for _, k := range s.keys[strings.TrimPrefix(p, ".")] {
		if k.Subdomains {
			out = append(out, k)
		}
	}
	return out
}

// KeyFor reports whether mail from this From domain is signed: there is a
// key for the domain itself, or for a parent domain with Subdomains.
// Domains are compared in their ASCII form (mailaddr.Fold).
func (s *Signer) KeyFor(fromDomain string) bool {
	return len(s.keysFor(fromDomain)) > 0
}

// Sign reads the whole message (header section, empty line, body; CRLF line
// ends) and returns the DKIM-Signature field to put on top of it, complete
// with its name and final CRLF; the message is not changed. A domain with
// several keys gets one field per key, one after the other. Without a key
// for fromDomain, Sign reads nothing and returns "", nil.
//
// fromDomain is the domain of the message's From field (FromDomain); the
// signature's d= is the key's domain, which is fromDomain or, for a
// Subdomains key, a parent of it (DMARC relaxed alignment, RFC 7489 §3.1.1).
func (s *Signer) Sign(msg io.Reader, fromDomain string) (field string, err error) {
	keys := s.keysFor(fromDomain)
	if len(keys) == 0 {
		return "", nil
	}
	br := bufio.NewReader(msg)
	header, err := readHeaderSection(br)
	if err != nil {
		return "", fmt.Errorf("dkim: reading the message: %w", err)
	}
	fields := headerKeys(header)
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	defer func() {
		// Close is a no-op after a successful Close; otherwise it stops
		// the signer's goroutine.
		for _, ds := range signers {
			ds.Close()
		}
	}()
	for _, k := range keys {
		ds, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             fields,
		})
		if err != nil {
			return "", fmt.Errorf("dkim: %s selector %s: %w", k.Domain, k.Selector, err)
		}
		signers = append(signers, ds)
		writers = append(writers, ds)
	}
	w := io.MultiWriter(writers...)
	if _, err := w.Write(header); err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	if _, err := io.Copy(w, br); err != nil {
		return "", fmt.Errorf("dkim: reading the message: %w", err)
	}
	var out strings.Builder
	for i, ds := range signers {
		if err := ds.Close(); err != nil {
			return "", fmt.Errorf("dkim: %s selector %s: %w", keys[i].Domain, keys[i].Selector, err)
		}
		out.WriteString(ds.Signature())
	}
	return out.String(), nil
}

// readHeaderSection reads the header section and the empty line that ends
// it. A message that ends without the empty line (a header and no body,
// RFC 5322 §3.5 makes the body optional) gets one, as the canonical form of
// an absent body is the same as that of an empty one (RFC 6376 §3.4.3,
// §3.4.4).
func readHeaderSection(br *bufio.Reader) ([]byte, error) {
	var h []byte
	for {
		line, err := br.ReadBytes('\n')
		h = append(h, line...)
		if err == io.EOF {
			if len(h) == 0 {
				return nil, errors.New("empty message")
			}
			if !bytes.HasSuffix(h, []byte("\n")) {
				h = append(h, "\r\n"...)
			}
			return append(h, "\r\n"...), nil
		}
		if err != nil {
			return nil, err
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			return h, nil
		}
	}
}

// headerKeys is the h= list for a header section: each of signedFields as
// many times as the message has it, and From once more (oversigned).
func headerKeys(header []byte) []string {
	count := map[string]int{}
	for _, line := range bytes.Split(header, []byte("\n")) {
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if name, _, ok := bytes.Cut(line, []byte(":")); ok {
			count[strings.ToLower(strings.TrimSpace(string(name)))]++
		}
	}
	var keys []string
	for _, f := range signedFields {
		n := count[strings.ToLower(f)]
		if f == "From" {
			n++
		}
		for range n {
			keys = append(keys, f)
		}
	}
	return keys
}

// FromDomain returns the domain of the From field of a header section
// (RFC 5322 §3.6.2), in ASCII form, as the header check parses it
// (filters.FromAddresses: the whole section, however long). A header
// without exactly one From field, a From that does not parse or holds more
// than one mailbox, or a header with a line that is neither a field nor a
// continuation is an error: there is no one author domain to sign for
// (DMARC, RFC 7489 §6.6.1, has the same difficulty).
func FromDomain(header []byte) (string, error) {
	addrs, err := filters.FromAddresses(header, true)
	if err != nil {
		return "", fmt.Errorf("from field: %w", err)
	}
	if len(addrs) != 1 {
		return "", fmt.Errorf("from field has %d mailboxes, not one", len(addrs))
	}
	at := strings.LastIndexByte(addrs[0], '@')
	if at < 0 || at == len(addrs[0])-1 {
		return "", fmt.Errorf("from address %q has no domain", addrs[0])
	}
	return mailaddr.Fold(addrs[0][at+1:]), nil
}
