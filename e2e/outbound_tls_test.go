package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// testCA is a certificate authority made for one test: its certificate is
// written to a PEM file for tls_ca_file and next_hop.mta_sts.ca_file.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	File string
	n    int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sekisho test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, File: file, n: 1}
}

// leaf issues a server certificate for names.
func (ca *testCA) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// recMessage is what a recording next hop saw of one message: the MAIL and
// RCPT parameters as go-smtp parsed them, and the TLS of the session.
type recMessage struct {
	From  string
	Mail  smtp.MailOptions
	To    []string
	Rcpts []smtp.RcptOptions
	TLS   *tls.ConnectionState // nil in clear
	Data  []byte
}

// recHop is a go-smtp next hop (standing in for a remote MX) that records
// the TLS state and the DSN parameters of what it accepts. configure sets up
// its server: TLSConfig (STARTTLS is offered when set), EnableDSN.
type recHop struct {
	Addr     string
	mu       sync.Mutex
	msgs     []recMessage
	sessions atomic.Int64
}

func startRecHop(t *testing.T, configure func(*smtp.Server)) *recHop {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &recHop{Addr: l.Addr().String()}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		h.sessions.Add(1)
		return &recSession{h: h, c: c}, nil
	}))
	srv.Domain = "mx.remote.test"
	srv.ErrorLog = quietLog{}
	if configure != nil {
		configure(srv)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

// port is the hop's port, for next_hop.mx_port.
func (h *recHop) port() string {
	_, p, _ := net.SplitHostPort(h.Addr)
	return p
}

// Messages returns the messages accepted so far.
func (h *recHop) Messages() []recMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recMessage(nil), h.msgs...)
}

// to returns the one message accepted for a recipient; it fails the test
// unless there is exactly one.
func (h *recHop) to(t *testing.T, rcpt string) recMessage {
	t.Helper()
	var found []recMessage
	for _, m := range h.Messages() {
		for _, to := range m.To {
			if to == rcpt {
				found = append(found, m)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("next hop has %d messages for %s, want 1", len(found), rcpt)
	}
	return found[0]
}

type recSession struct {
	h     *recHop
	c     *smtp.Conn
	from  string
	mail  smtp.MailOptions
	to    []string
	rcpts []smtp.RcptOptions
}

func (s *recSession) Reset()        { s.from, s.mail, s.to, s.rcpts = "", smtp.MailOptions{}, nil, nil }
func (s *recSession) Logout() error { return nil }
func (s *recSession) Mail(from string, o *smtp.MailOptions) error {
	s.from = from
	if o != nil {
		s.mail = *o
	}
	return nil
}
func (s *recSession) Rcpt(to string, o *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	var ro smtp.RcptOptions
	if o != nil {
		ro = *o
	}
	s.rcpts = append(s.rcpts, ro)
	return nil
}
func (s *recSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := recMessage{From: s.from, Mail: s.mail, To: s.to, Rcpts: s.rcpts, Data: data}
	if st, ok := s.c.TLSConnectionState(); ok {
		m.TLS = &st
	}
	s.h.mu.Lock()
	s.h.msgs = append(s.h.msgs, m)
	s.h.mu.Unlock()
	return nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

// mxDNS is a test DNS server with campus.test (the canary) and, for each
// domain, an MX record naming host; every host name given has the address
// 127.0.0.1 (where the test's next hop listens, on next_hop.mx_port).
func mxDNS(t *testing.T, mx map[string]string) *testdns.Server {
	t.Helper()
	ns := testdns.Start(t)
	campusDNS(ns)
	ns.AddZone("net.", 0)
	hosts := map[string]bool{}
	for domain, host := range mx {
		ns.Add(fmt.Sprintf("%s. 0 IN MX 10 %s.", domain, host))
		if !hosts[host] {
			hosts[host] = true
			ns.Add(fmt.Sprintf("%s. 300 IN A 127.0.0.1", host))
		}
	}
	return ns
}

// tlsRoute is an mx route for one domain with a tls mode ("" for none set)
// and a CA file ("" for none).
func tlsRoute(domain, mode, caFile string) string {
	r := fmt.Sprintf("{domains: [%q], next_hops: [mx]", domain)
	if mode != "" {
		r += ", tls: " + mode
	}
	if caFile != "" {
		r += fmt.Sprintf(", tls_ca_file: %q", caFile)
	}
	return r + "}"
}

// sendOut sends one message from the trusted client (127.0.0.1) to rcpt
// through the smtp listener, and returns the reply to RCPT, or to the data
// when RCPT was accepted.
func sendOut(t *testing.T, gw *harness.Gateway, rcpt string) harness.Reply {
	t.Helper()
	c := harness.Dial(t, gw.SMTP)
	c.Expect("EHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	if r := c.Cmd("RCPT TO:<" + rcpt + ">"); r.Code != 250 {
		return r
	}
	c.Expect("DATA", "354")
	c.SendRaw(campusMsg("to "+rcpt, "hello\r\n") + ".\r\n")
	r := c.Read()
	c.Cmd("QUIT")
	return r
}

func wantReply(t *testing.T, what string, got harness.Reply, want string) {
	t.Helper()
	if !strings.HasPrefix(got.String(), want) {
		t.Errorf("%s: got %q, want %q", what, got.String(), want)
	}
}

// sniCerts serves good for the names it is valid for and, for any other
// name asked (SNI), a certificate for other.example: the wrong name.
func sniCerts(t *testing.T, ca *testCA, goodNames ...string) *tls.Config {
	good, wrong := ca.leaf(t, goodNames...), ca.leaf(t, "other.example")
	return &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		for _, n := range goodNames {
			if strings.EqualFold(hello.ServerName, n) {
				return &good, nil
			}
		}
		return &wrong, nil
	}}
}

// TestOutboundTLSModes: routes[].tls towards a remote MX found through the
// test DNS, whose next hop offers STARTTLS with a certificate of the test
// CA valid for mx.good.net only. may (and the default of an mx route) →
// delivered over TLS; none → in clear although STARTTLS is offered;
// encrypt → over TLS whatever the certificate; verify with tls_ca_file and
// the right name → over TLS; verify with the wrong name, or without the CA
// that issued it → 451 4.7.5, nothing delivered.
func TestOutboundTLSModes(t *testing.T) {
	ca := newTestCA(t)
	hop := startRecHop(t, func(s *smtp.Server) { s.TLSConfig = sniCerts(t, ca, "mx.good.net") })
	ns := mxDNS(t, map[string]string{
		"may.net": "mx.good.net", "default.net": "mx.good.net", "none.net": "mx.good.net",
		"encrypt.net": "mx.wrong.net", "verify.net": "mx.good.net", "wrongname.net": "mx.wrong.net",
		"noca.net": "mx.good.net",
	})
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+closedPort(t)),
			tlsRoute("may.net", "may", ""),
			tlsRoute("default.net", "", ""),
			tlsRoute("none.net", "none", ""),
			tlsRoute("encrypt.net", "encrypt", ""),
			tlsRoute("verify.net", "verify", ca.File),
			tlsRoute("wrongname.net", "verify", ca.File),
			tlsRoute("noca.net", "verify", ""),
		},
		extra: dnsExtra(ns) + fmt.Sprintf("next_hop: {mx_port: %s, connect_timeout: 5s}\n", hop.port()),
	}
	gw := harness.Start(t, s.yaml(t))

	for _, x := range []struct {
		rcpt, want string
		tls        bool
	}{
		{"a@may.net", "250 2.0.0", true},
		{"a@default.net", "250 2.0.0", true},
		{"a@none.net", "250 2.0.0", false},
		{"a@encrypt.net", "250 2.0.0", true},
		{"a@verify.net", "250 2.0.0", true},
		{"a@wrongname.net", "451 4.7.5", false},
		{"a@noca.net", "451 4.7.5", false},
	} {
		r := sendOut(t, gw, x.rcpt)
		wantReply(t, x.rcpt, r, x.want)
		if !strings.HasPrefix(x.want, "250") {
			for _, m := range hop.Messages() {
				if strings.Join(m.To, ",") == x.rcpt {
					t.Errorf("%s: refused with %v, yet delivered", x.rcpt, r)
				}
			}
			continue
		}
		m := hop.to(t, x.rcpt)
		switch {
		case x.tls && m.TLS == nil:
			t.Errorf("%s: delivered in clear, want over TLS", x.rcpt)
		case !x.tls && m.TLS != nil:
			t.Errorf("%s: delivered over TLS (%s), want in clear", x.rcpt, tls.VersionName(m.TLS.Version))
		case m.TLS != nil && m.TLS.Version < tls.VersionTLS12:
			t.Errorf("%s: %s, want TLS 1.2 or later", x.rcpt, tls.VersionName(m.TLS.Version))
		}
		if x.tls && m.TLS != nil && x.rcpt == "a@verify.net" && m.TLS.ServerName != "mx.good.net" {
			t.Errorf("%s: SNI %q, want the MX host name mx.good.net", x.rcpt, m.TLS.ServerName)
		}
	}
	line := gw.WaitLog("to=a@wrongname.net", 5*time.Second)
	if !strings.Contains(line, "4.7.5") {
		t.Errorf("log line for the refused verify:\n%s", line)
	}
}

// TestOutboundTLSNoSTARTTLS: a remote MX that does not offer STARTTLS gets
// mail in clear under may; encrypt and verify refuse it with 451 4.7.5.
func TestOutboundTLSNoSTARTTLS(t *testing.T) {
	ca := newTestCA(t)
	hop := startRecHop(t, nil)
	ns := mxDNS(t, map[string]string{"may.net": "mx.good.net", "encrypt.net": "mx.good.net", "verify.net": "mx.good.net"})
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+closedPort(t)),
			tlsRoute("may.net", "may", ""),
			tlsRoute("encrypt.net", "encrypt", ""),
			tlsRoute("verify.net", "verify", ca.File),
		},
		extra: dnsExtra(ns) + fmt.Sprintf("next_hop: {mx_port: %s, connect_timeout: 5s}\n", hop.port()),
	}
	gw := harness.Start(t, s.yaml(t))
	wantReply(t, "may", sendOut(t, gw, "a@may.net"), "250 2.0.0")
	if m := hop.to(t, "a@may.net"); m.TLS != nil {
		t.Error("may: TLS without STARTTLS offered?")
	}
	wantReply(t, "encrypt", sendOut(t, gw, "a@encrypt.net"), "451 4.7.5")
	wantReply(t, "verify", sendOut(t, gw, "a@verify.net"), "451 4.7.5")
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop has %d messages, want only may's", n)
	}
	gw.WaitLog("STARTTLS not offered", 5*time.Second)
}

// TestOutboundTLSBrokenHandshake: a remote MX offers STARTTLS and then
// fails every handshake. Under may the mail is delivered in clear on a
// second connection (the log says why); under encrypt it is refused with
// 451 4.7.5.
func TestOutboundTLSBrokenHandshake(t *testing.T) {
	hop := startRecHop(t, func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("broken TLS stack")
		}}
	})
	ns := mxDNS(t, map[string]string{"may.net": "mx.good.net", "encrypt.net": "mx.good.net"})
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+closedPort(t)),
			tlsRoute("may.net", "may", ""),
			tlsRoute("encrypt.net", "encrypt", ""),
		},
		extra: dnsExtra(ns) + fmt.Sprintf("next_hop: {mx_port: %s, connect_timeout: 5s}\n", hop.port()),
	}
	gw := harness.Start(t, s.yaml(t))
	wantReply(t, "may", sendOut(t, gw, "a@may.net"), "250 2.0.0")
	if m := hop.to(t, "a@may.net"); m.TLS != nil {
		t.Error("may: delivered over TLS through a broken handshake?")
	}
	if n := hop.sessions.Load(); n != 2 {
		t.Errorf("may: %d sessions at the next hop, want 2 (the failed handshake, then clear)", n)
	}
	gw.WaitLog("retrying in clear", 5*time.Second)
	wantReply(t, "encrypt", sendOut(t, gw, "a@encrypt.net"), "451 4.7.5")
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop has %d messages, want only may's", n)
	}
}

// stsServer is the HTTPS server of the mta-sts.<domain> hosts: it serves
// each domain's policy (set with set; "" answers 404) and counts fetches.
type stsServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	policies map[string]string
	fetches  map[string]int
}

func startSTSServer(t *testing.T, ca *testCA, domains ...string) *stsServer {
	t.Helper()
	var names []string
	for _, d := range domains {
		names = append(names, "mta-sts."+d)
	}
	s := &stsServer{policies: map[string]string{}, fetches: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		domain := strings.TrimPrefix(host, "mta-sts.")
		s.mu.Lock()
		s.fetches[domain]++
		p := s.policies[domain]
		s.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || p == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, p)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, names...)}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stsServer) set(domain, policy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies[domain] = policy
}

func (s *stsServer) fetched(domain string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[domain]
}

func (s *stsServer) port() string {
	_, p, _ := net.SplitHostPort(s.srv.Listener.Addr().String())
	return p
}

func stsPolicy(mode string, mx ...string) string {
	p := "version: STSv1\nmode: " + mode + "\n"
	for _, m := range mx {
		p += "mx: " + m + "\n"
	}
	return p + "max_age: 86400\n"
}

// TestOutboundMTASTS: MTA-STS through the binary, the policies served over
// HTTPS by a local server (next_hop.mta_sts.port and ca_file point the fetch
// at it). The route's own mode is may. enforce with a matching MX whose
// certificate is valid → delivered over TLS; enforce and a certificate for
// another name → 451 4.7.5; enforce and an MX the policy does not list →
// 451 4.7.5; testing and a bad certificate → delivered (logged). The
// policy is cached: a second message with the same TXT id fetches nothing,
// and when the id changes and the fetch fails, the cached policy stays in
// force (an MX outside it is refused).
func TestOutboundMTASTS(t *testing.T) {
	ca := newTestCA(t)
	hop := startRecHop(t, func(s *smtp.Server) { s.TLSConfig = sniCerts(t, ca, "mx.good.net") })
	domains := []string{"enforce.net", "badcert.net", "nomatch.net", "testing.net", "cache.net"}
	sts := startSTSServer(t, ca, domains...)
	ns := mxDNS(t, map[string]string{
		"enforce.net": "mx.good.net", "badcert.net": "mx.wrong.net", "nomatch.net": "mx.good.net",
		"testing.net": "mx.wrong.net", "cache.net": "mx.good.net",
	})
	for _, d := range domains {
		ns.Add("mta-sts."+d+". 300 IN A 127.0.0.1", "_mta-sts."+d+". 0 IN TXT \"v=STSv1; id=1;\"")
	}
	sts.set("enforce.net", stsPolicy("enforce", "mx.good.net"))
	sts.set("badcert.net", stsPolicy("enforce", "mx.wrong.net"))
	sts.set("nomatch.net", stsPolicy("enforce", "mx.elsewhere.net"))
	sts.set("testing.net", stsPolicy("testing", "mx.wrong.net"))
	sts.set("cache.net", stsPolicy("enforce", "*.good.net"))
	s := site{
		routes: []string{
			routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+closedPort(t)),
			tlsRoute("*", "may", ca.File),
		},
		extra: dnsExtra(ns) + fmt.Sprintf("next_hop: {mx_port: %s, connect_timeout: 5s, mta_sts: {port: %s, ca_file: %q, fetch_timeout: 5s}}\n",
			hop.port(), sts.port(), ca.File),
	}
	gw := harness.Start(t, s.yaml(t))

	wantReply(t, "enforce", sendOut(t, gw, "a@enforce.net"), "250 2.0.0")
	if m := hop.to(t, "a@enforce.net"); m.TLS == nil {
		t.Error("enforce: delivered in clear")
	}
	if sts.fetched("enforce.net") != 1 {
		t.Errorf("enforce.net policy fetched %d times, want 1", sts.fetched("enforce.net"))
	}
	wantReply(t, "enforce, wrong certificate", sendOut(t, gw, "a@badcert.net"), "451 4.7.5")
	wantReply(t, "enforce, MX not in the policy", sendOut(t, gw, "a@nomatch.net"), "451 4.7.5")
	wantReply(t, "testing, wrong certificate", sendOut(t, gw, "a@testing.net"), "250 2.0.0")
	gw.WaitLog("MTA-STS testing", 5*time.Second)

	// The cache.
	wantReply(t, "cache 1", sendOut(t, gw, "a@cache.net"), "250 2.0.0")
	wantReply(t, "cache 2", sendOut(t, gw, "b@cache.net"), "250 2.0.0")
	if n := sts.fetched("cache.net"); n != 1 {
		t.Errorf("cache.net policy fetched %d times for two messages under one TXT id, want 1", n)
	}
	// The domain moves its MX outside its policy, announces a new policy
	// id, and the policy host fails: the cached enforce policy still
	// applies, so the unlisted MX is not used.
	ns.Remove("cache.net.", mdns.TypeMX)
	ns.Remove("_mta-sts.cache.net.", mdns.TypeTXT)
	ns.Add("cache.net. 0 IN MX 10 mx.unlisted.net.", "mx.unlisted.net. 300 IN A 127.0.0.1",
		"_mta-sts.cache.net. 0 IN TXT \"v=STSv1; id=2;\"")
	sts.set("cache.net", "")
	wantReply(t, "cache 3, fetch failed", sendOut(t, gw, "c@cache.net"), "451 4.7.5")
	if n := sts.fetched("cache.net"); n != 2 {
		t.Errorf("cache.net policy fetched %d times, want 2 (the new id is tried)", n)
	}
	gw.WaitLog("the cached policy stays in force", 5*time.Second)
}

// TestDSNPassedOn: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT (RFC
// 3461) reach a next hop that offers DSN, through the smtp listener and the
// lmtp listener; a next hop that does not offer DSN gets none of them, and
// the mail is still delivered.
func TestDSNPassedOn(t *testing.T) {
	withDSN := startRecHop(t, func(s *smtp.Server) { s.EnableDSN = true })
	without := startRecHop(t, nil)
	s := site{routes: []string{
		routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+closedPort(t)),
		routeTo([]string{"dsn.net"}, "smtp://"+withDSN.Addr),
		routeTo([]string{"plain.net"}, "smtp://"+without.Addr),
	}}
	gw, lmtp := startWithLMTP(t, s)

	const mail = "MAIL FROM:<alice@campus.test> RET=HDRS ENVID=abc+2Bdef"
	rcpt := func(to string) string {
		return "RCPT TO:<" + to + "> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+2By@example.org"
	}
	for _, to := range []string{"a@dsn.net", "a@plain.net"} {
		c := harness.Dial(t, gw.SMTP)
		c.Expect("EHLO mail.campus.test", "250")
		c.Expect(mail, "250")
		c.Expect(rcpt(to), "250")
		c.Expect("DATA", "354")
		c.SendRaw(campusMsg("dsn", "hello\r\n") + ".\r\n")
		wantReply(t, "smtp "+to, c.Read(), "250 2.0.0")
	}
	c := harness.Dial(t, lmtp)
	c.Expect("LHLO mail.campus.test", "250")
	c.Expect(mail, "250")
	c.Expect(rcpt("b@dsn.net"), "250")
	c.Expect(rcpt("b@plain.net"), "250")
	expectReplies(t, lmtpData(t, c, campusMsg("dsn", "hello\r\n"), 2), []string{"b@dsn.net", "b@plain.net"}, []string{"250 2.0.0", "250 2.0.0"})

	for _, to := range []string{"a@dsn.net", "b@dsn.net"} {
		m := withDSN.to(t, to)
		if m.Mail.Return != smtp.DSNReturnHeaders || m.Mail.EnvelopeID != "abc+def" {
			t.Errorf("%s: MAIL RET=%q ENVID=%q, want HDRS and abc+def", to, m.Mail.Return, m.Mail.EnvelopeID)
		}
		r := m.Rcpts[0]
		if fmt.Sprint(r.Notify) != "[FAILURE DELAY]" || r.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || r.OriginalRecipient != "x+y@example.org" {
			t.Errorf("%s: RCPT NOTIFY=%v ORCPT=%s;%s, want [FAILURE DELAY] and rfc822;x+y@example.org", to, r.Notify, r.OriginalRecipientType, r.OriginalRecipient)
		}
	}
	for _, to := range []string{"a@plain.net", "b@plain.net"} {
		m := without.to(t, to)
		if m.Mail.Return != "" || m.Mail.EnvelopeID != "" || m.Rcpts[0].Notify != nil || m.Rcpts[0].OriginalRecipient != "" {
			t.Errorf("%s: DSN parameters reached a next hop without DSN: %+v %+v", to, m.Mail, m.Rcpts[0])
		}
	}
}
