package relay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/internal/harness"
	"sekisho/lookup"
)

// --- certificates --------------------------------------------------------

// testCA is a private CA made for one test, with its PEM file (what
// tls_ca_file names).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serial = big.NewInt(1)
var serialMu sync.Mutex

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial = new(big.Int).Add(serial, big.NewInt(1))
	return serial
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "sekisho test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pool: pool, file: file}
}

// leafTemplate is a server certificate for names (DNS names or IP
// addresses).
func leafTemplate(names []string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

// issue makes a certificate for names signed by the CA.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, leafTemplate(names), ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// selfSigned makes a self-signed certificate for names.
func selfSigned(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := leafTemplate(names)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// --- a next hop with STARTTLS ---------------------------------------------

// hello is one EHLO a tlsHop received, and whether it came over TLS.
type hello struct {
	Name string
	TLS  bool
}

// tlsHop is a go-smtp next hop that offers STARTTLS when it has a
// certificate (internal/harness.RawNextHop cannot do TLS). It records every
// EHLO name with whether it came over TLS (go-smtp opens a session at each
// EHLO, and after STARTTLS at the EHLO over TLS), and each message with the
// TLS state it was received in.
type tlsHop struct {
	Addr string

	mu       sync.Mutex
	hellos   []hello
	messages []tlsMessage
}

type tlsMessage struct {
	harness.Message
	TLS bool
}

// startTLSHop starts a next hop with cfg as its server TLS configuration
// (nil: no STARTTLS).
func startTLSHop(t *testing.T, cfg *tls.Config) *tlsHop {
	t.Helper()
	return startTLSHopAt(t, "127.0.0.1:0", cfg)
}

// startTLSHopAt is startTLSHop listening on addr.
func startTLSHopAt(t *testing.T, addr string, cfg *tls.Config) *tlsHop {
	t.Helper()
	return startTLSHopWith(t, addr, cfg, false)
}

// startTLSHopWith is startTLSHopAt speaking LMTP if lmtp.
func startTLSHopWith(t *testing.T, addr string, cfg *tls.Config, lmtp bool) *tlsHop {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &tlsHop{Addr: l.Addr().String()}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		h.mu.Lock()
		h.hellos = append(h.hellos, hello{c.Hostname(), isTLS})
		h.mu.Unlock()
		return &tlsSession{h: h, tls: isTLS}, nil
	}))
	srv.Domain = "tlshop.test"
	srv.TLSConfig = cfg
	srv.LMTP = lmtp
	srv.ErrorLog = nopLogger{}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

// serving is a server TLS configuration with one certificate.
func serving(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

func (h *tlsHop) Hellos() []hello {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hello(nil), h.hellos...)
}

func (h *tlsHop) Messages() []tlsMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]tlsMessage(nil), h.messages...)
}

type tlsSession struct {
	h    *tlsHop
	tls  bool
	from string
	to   []string
}

func (s *tlsSession) Reset()        { s.from, s.to = "", nil }
func (s *tlsSession) Logout() error { return nil }
func (s *tlsSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *tlsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *tlsSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.h.mu.Lock()
	s.h.messages = append(s.h.messages, tlsMessage{harness.Message{From: s.from, To: s.to, Data: b}, s.tls})
	s.h.mu.Unlock()
	return nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// --- the router under test ------------------------------------------------

// logBuffer collects a Router's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tlsRouter is a router with one catch-all route through hops with the TLS
// mode and CA pool given, logging into the returned buffer and counting.
func tlsRouter(mode TLSMode, roots *x509.CertPool, hops ...NextHop) (*Router, *logBuffer) {
	r := newRouter(hops...)
	r.Routes[0].TLS, r.Routes[0].TLSRoots = mode, roots
	logs := &logBuffer{}
	r.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.Counters = &TLSCounters{}
	return r, logs
}

// deliver runs a whole transaction through r and fails the test if any step
// fails; it returns the TLS state the transaction reported.
func deliver(t *testing.T, r *Router) *tls.ConnectionState {
	t.Helper()
	tx := beginRcpt(t, r, Envelope{From: sender})
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatalf("Data: %v", err)
	}
	st := tx.TLS()
	tx.Close()
	return st
}

func wantHellos(t *testing.T, h *tlsHop, want ...hello) {
	t.Helper()
	got := h.Hellos()
	if len(got) != len(want) {
		t.Fatalf("EHLOs %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("EHLOs %+v, want %+v", got, want)
		}
	}
}

func wantOneMessage(t *testing.T, h *tlsHop, overTLS bool) {
	t.Helper()
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop has %d messages, want 1", len(msgs))
	}
	if msgs[0].TLS != overTLS {
		t.Errorf("message received with TLS=%v, want %v", msgs[0].TLS, overTLS)
	}
	if !bytes.Equal(msgs[0].Data, []byte(testMessage)) {
		t.Errorf("message %q, want %q", msgs[0].Data, testMessage)
	}
}

// --- the modes ------------------------------------------------------------

// may: the next hop offers STARTTLS, so the mail goes over TLS, and our EHLO
// is Router.Hostname both before STARTTLS and after it (go-smtp's client
// alone would say "localhost").
func TestTLSMayUsesSTARTTLS(t *testing.T) {
	hop := startTLSHop(t, serving(selfSigned(t, "mx.elsewhere.test")))
	r, logs := tlsRouter(TLSMay, nil, smtpHop(t, hop.Addr))
	st := deliver(t, r)
	if st == nil || !st.HandshakeComplete {
		t.Fatalf("Transaction.TLS() = %v, want the TLS state", st)
	}
	wantHellos(t, hop, hello{"gw.campus.test", false}, hello{"gw.campus.test", true})
	wantOneMessage(t, hop, true)
	if n := r.Counters.Encrypted.Load(); n != 1 {
		t.Errorf("Encrypted = %d, want 1", n)
	}
	if n := r.Counters.Verified.Load(); n != 0 {
		t.Errorf("Verified = %d, want 0 (self-signed, not checked under may)", n)
	}
	if !strings.Contains(logs.String(), `tls="TLS 1.`) || !strings.Contains(logs.String(), "verified=false") {
		t.Errorf("log does not record the TLS session:\n%s", logs)
	}
}

// may: a handshake that fails (the server cannot produce a certificate) is
// retried once in clear on a new connection, logged and counted; the mail
// is delivered in clear.
func TestTLSMayHandshakeFailureRetriedInClear(t *testing.T) {
	broken := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate here")
	}}
	hop := startTLSHop(t, broken)
	r, logs := tlsRouter(TLSMay, nil, smtpHop(t, hop.Addr))
	if st := deliver(t, r); st != nil {
		t.Fatalf("Transaction.TLS() = %+v, want nil (clear)", st)
	}
	// Two connections, each with one EHLO in clear: the first one's
	// STARTTLS failed, the second one did not try.
	wantHellos(t, hop, hello{"gw.campus.test", false}, hello{"gw.campus.test", false})
	wantOneMessage(t, hop, false)
	if n := r.Counters.ClearAfterHandshakeFailure.Load(); n != 1 {
		t.Errorf("ClearAfterHandshakeFailure = %d, want 1", n)
	}
	if n := r.Counters.Encrypted.Load(); n != 0 {
		t.Errorf("Encrypted = %d, want 0", n)
	}
	if got := logs.String(); !strings.Contains(got, "TLS handshake failed, retrying in clear") || !strings.Contains(got, hop.Addr) {
		t.Errorf("log does not record the fallback for %s:\n%s", hop.Addr, got)
	}
}

// may: no STARTTLS offered is clear, counted; a STARTTLS refused (454) goes
// on in clear on the same connection (RFC 3207 §4).
func TestTLSMayWithoutTLS(t *testing.T) {
	t.Run("not offered", func(t *testing.T) {
		hop := startTLSHop(t, nil)
		r, _ := tlsRouter(TLSMay, nil, smtpHop(t, hop.Addr))
		if st := deliver(t, r); st != nil {
			t.Fatalf("TLS() = %+v, want nil", st)
		}
		wantOneMessage(t, hop, false)
		if n := r.Counters.ClearNotOffered.Load(); n != 1 {
			t.Errorf("ClearNotOffered = %d, want 1", n)
		}
	})
	t.Run("refused", func(t *testing.T) {
		hop := startHop(t, offering("STARTTLS"), replyAt("STARTTLS", "454 4.7.0 TLS not available now"))
		r, logs := tlsRouter(TLSMay, nil, smtpHop(t, hop.Addr))
		if st := deliver(t, r); st != nil {
			t.Fatalf("TLS() = %+v, want nil", st)
		}
		if n := hop.Sessions(); n != 1 {
			t.Errorf("%d connections, want 1 (clear on the same one)", n)
		}
		if got := transcript(t, hop); !strings.Contains(got, "STARTTLS\r\nMAIL FROM:") {
			t.Errorf("transcript %q: want MAIL right after the refused STARTTLS", got)
		}
		if n := r.Counters.ClearRefused.Load(); n != 1 {
			t.Errorf("ClearRefused = %d, want 1", n)
		}
		if !strings.Contains(logs.String(), "STARTTLS refused: 454") {
			t.Errorf("log does not say STARTTLS was refused:\n%s", logs)
		}
	})
}

// The default for smtp:// next hops is none: no STARTTLS even when offered.
func TestTLSDefaultNoneForSMTPNextHops(t *testing.T) {
	hop := startTLSHop(t, serving(selfSigned(t, "mx.elsewhere.test")))
	r, _ := tlsRouter(TLSDefault, nil, smtpHop(t, hop.Addr))
	if st := deliver(t, r); st != nil {
		t.Fatalf("TLS() = %+v, want nil", st)
	}
	wantHellos(t, hop, hello{"gw.campus.test", false})
	wantOneMessage(t, hop, false)
}

// encrypt: a next hop without STARTTLS (or refusing it) fails; with none
// left the client hears 451 4.7.5. Another next hop that has TLS takes the
// mail.
func TestTLSEncryptRequiresSTARTTLS(t *testing.T) {
	plain := startTLSHop(t, nil)
	refusing := startHop(t, offering("STARTTLS"), replyAt("STARTTLS", "454 4.7.0 TLS not available now"))
	r, logs := tlsRouter(TLSEncrypt, nil, smtpHop(t, plain.Addr), smtpHop(t, refusing.Addr))
	_, err := begin(t, r, Envelope{From: sender})
	wantReply(t, err, 451, [3]int{4, 7, 5})
	for _, want := range []string{plain.Addr + ": TLS required: EHLO: STARTTLS not offered", refusing.Addr + ": TLS required: STARTTLS: 454"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(transcript(t, refusing), "MAIL") {
		t.Error("MAIL sent in clear after a refused STARTTLS under encrypt")
	}
	if n := r.Counters.Refused.Load(); n != 2 {
		t.Errorf("Refused = %d, want 2", n)
	}
	if !strings.Contains(logs.String(), "tls=refused") {
		t.Errorf("log does not record the refusals:\n%s", logs)
	}

	good := startTLSHop(t, serving(selfSigned(t, "whatever.test")))
	r, _ = tlsRouter(TLSEncrypt, nil, smtpHop(t, plain.Addr), smtpHop(t, good.Addr))
	if st := deliver(t, r); st == nil {
		t.Fatal("TLS() = nil, want TLS")
	}
	wantOneMessage(t, good, true)
	if n := len(plain.Messages()); n != 0 {
		t.Errorf("the next hop without TLS got %d messages", n)
	}
}

// encrypt: a self-signed certificate for another name is good enough.
func TestTLSEncryptSelfSigned(t *testing.T) {
	hop := startTLSHop(t, serving(selfSigned(t, "not-this-host.test")))
	r, _ := tlsRouter(TLSEncrypt, nil, smtpHop(t, hop.Addr))
	if st := deliver(t, r); st == nil {
		t.Fatal("TLS() = nil, want TLS")
	}
	wantHellos(t, hop, hello{"gw.campus.test", false}, hello{"gw.campus.test", true})
	wantOneMessage(t, hop, true)
}

// encrypt: a handshake that fails is not retried in clear: 451 4.7.5.
func TestTLSEncryptHandshakeFailure(t *testing.T) {
	broken := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate here")
	}}
	hop := startTLSHop(t, broken)
	r, _ := tlsRouter(TLSEncrypt, nil, smtpHop(t, hop.Addr))
	_, err := begin(t, r, Envelope{From: sender})
	wantReply(t, err, 451, [3]int{4, 7, 5})
	if n := len(hop.Hellos()); n != 1 {
		t.Errorf("%d EHLOs, want 1 (no retry in clear under encrypt)", n)
	}
}

// verify: the certificate must be valid for the next hop's name (the host
// of smtp://host:port) and chain to the route's CA (tls_ca_file).
func TestTLSVerify(t *testing.T) {
	ca := newTestCA(t)
	cases := []struct {
		name  string
		cert  tls.Certificate
		roots *x509.CertPool
		ok    bool
		why   string // in the error when refused
	}{
		{"right name and CA", ca.issue(t, "127.0.0.1"), ca.pool, true, ""},
		{"wrong name", ca.issue(t, "mx.other.test"), ca.pool, false, "127.0.0.1"},
		{"self-signed", selfSigned(t, "127.0.0.1"), ca.pool, false, "unknown authority"},
		{"CA not given", ca.issue(t, "127.0.0.1"), nil, false, "unknown authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hop := startTLSHop(t, serving(c.cert))
			r, _ := tlsRouter(TLSVerify, c.roots, smtpHop(t, hop.Addr))
			if c.ok {
				st := deliver(t, r)
				if st == nil || len(st.VerifiedChains) == 0 {
					t.Fatalf("TLS() = %+v, want a verified session", st)
				}
				wantOneMessage(t, hop, true)
				if n := r.Counters.Verified.Load(); n != 1 {
					t.Errorf("Verified = %d, want 1", n)
				}
				return
			}
			_, err := begin(t, r, Envelope{From: sender})
			wantReply(t, err, 451, [3]int{4, 7, 5})
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q does not say %q", err, c.why)
			}
			if n := len(hop.Messages()); n != 0 {
				t.Errorf("next hop got %d messages", n)
			}
			if n := len(hop.Hellos()); n != 1 {
				t.Errorf("%d EHLOs, want 1 (nothing after the failed handshake)", n)
			}
		})
	}
}

// verify for an "mx" next hop checks the MX host name, not the address.
func TestTLSVerifyMXHostName(t *testing.T) {
	ca := newTestCA(t)
	hop := startTLSHop(t, serving(ca.issue(t, "mx1.dest.test")))
	_, port, _ := net.SplitHostPort(hop.Addr)
	r, _ := tlsRouter(TLSVerify, ca.pool, NextHop{Kind: HopMX})
	r.MXPort = atoi(t, port)
	r.MailHosts = staticMX{"dest.test": {"mx1.dest.test", "mx2.dest.test"}}
	tx, err := r.Begin(context.Background(), 0, "dest.test", Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Abort()
	if tx.TLS() == nil || tx.Hop() != "mx mx1.dest.test [127.0.0.1]" {
		t.Fatalf("hop %s, TLS %v: want mx1 over TLS", tx.Hop(), tx.TLS())
	}

	// The same certificate for the second host's name fails.
	r.MailHosts = staticMX{"dest.test": {"mx2.dest.test"}}
	_, err = r.Begin(context.Background(), 0, "dest.test", Envelope{From: sender})
	wantReply(t, err, 451, [3]int{4, 7, 5})
	if !strings.Contains(err.Error(), "mx2.dest.test") {
		t.Errorf("error %q does not name mx2.dest.test", err)
	}
}

// The modes parse from their configuration names; anything else is an
// error.
func TestParseTLSMode(t *testing.T) {
	for _, m := range []TLSMode{TLSNone, TLSMay, TLSEncrypt, TLSVerify} {
		got, err := ParseTLSMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseTLSMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	for _, s := range []string{"", "default", "MAY", "dane", "secure"} {
		if _, err := ParseTLSMode(s); err == nil {
			t.Errorf("ParseTLSMode(%q) accepted", s)
		}
	}
	if TLSDefault.resolve(HopMX) != TLSMay || TLSDefault.resolve(HopSMTP) != TLSNone || TLSDefault.resolve(HopLMTP) != TLSNone {
		t.Error("defaults: want may for mx, none for smtp and lmtp")
	}
}

// The TLS state of Maildir and LMTP transactions: nil for a Maildir, the
// session's for LMTP with STARTTLS (LHLO as our name before and after).
func TestTLSOfOtherTransactions(t *testing.T) {
	r, _ := tlsRouter(TLSVerify, nil, mustHop(t, "maildir:"+t.TempDir()))
	tx := beginRcpt(t, r, Envelope{From: sender})
	if tx.TLS() != nil {
		t.Errorf("maildir TLS() = %v, want nil", tx.TLS())
	}

	ca := newTestCA(t)
	hop := startTLSHopWith(t, "127.0.0.1:0", serving(ca.issue(t, "127.0.0.1")), true)
	r, _ = tlsRouter(TLSVerify, ca.pool, mustHop(t, "lmtp://"+hop.Addr))
	st := deliver(t, r)
	if st == nil || len(st.VerifiedChains) == 0 {
		t.Fatalf("lmtp TLS() = %+v, want a verified session", st)
	}
	wantHellos(t, hop, hello{"gw.campus.test", false}, hello{"gw.campus.test", true})
	wantOneMessage(t, hop, true)
}

// staticMX answers MailHosts from a map of domain → host names, every host
// at 127.0.0.1.
type staticMX map[string][]string

func (s staticMX) MailHosts(_ context.Context, domain string) ([]lookup.MailHost, lookup.DomainResult) {
	var out []lookup.MailHost
	for _, n := range s[domain] {
		out = append(out, lookup.MailHost{Name: n, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	}
	if len(out) == 0 {
		return nil, lookup.DomainResult{Outcome: lookup.DomainNotFound}
	}
	return out, lookup.DomainResult{Outcome: lookup.DomainFound}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
