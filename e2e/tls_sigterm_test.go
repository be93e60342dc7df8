package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tlsClient is an SMTP client that has done STARTTLS (RFC 3207) with
// crypto/tls and verified the gateway's certificate: every reply it reads
// after that is read through TLS records, so a reply the gateway wrote in
// clear on the TCP connection would be a TLS error here, not a reply.
type tlsClient struct {
	t   *testing.T
	raw net.Conn
	tc  *tls.Conn
	r   *textproto.Reader
	log strings.Builder
}

// dialTLS connects from src, says EHLO, starts TLS trusting only the
// certificate in certPath for host, and says EHLO again.
func dialTLS(t *testing.T, src, addr, certPath, host string) *tlsClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsClient{t: t, raw: raw, r: textproto.NewReader(bufio.NewReader(raw))}
	t.Cleanup(func() {
		raw.Close()
		if t.Failed() {
			t.Logf("TLS SMTP transcript (%s):\n%s", src, c.log.String())
		}
	})
	c.want("banner", c.read(30*time.Second), "220")
	c.write("EHLO " + host + "\r\n")
	if r := c.read(30 * time.Second); !strings.HasPrefix(r, "250") || !strings.Contains(r, "STARTTLS") {
		t.Fatalf("EHLO: %q, want 250 offering STARTTLS", r)
	}
	c.write("STARTTLS\r\n")
	c.want("STARTTLS", c.read(30*time.Second), "220")

	pem, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in " + certPath)
	}
	c.tc = tls.Client(raw, &tls.Config{ServerName: "mx.campus.test", RootCAs: roots, MinVersion: tls.VersionTLS12})
	c.tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.tc.SetDeadline(time.Time{})
	c.log.WriteString("-- TLS " + tls.VersionName(c.tc.ConnectionState().Version) + " --\n")
	c.r = textproto.NewReader(bufio.NewReader(c.tc))
	c.cmd("EHLO "+host, "250")
	return c
}

func (c *tlsClient) conn() net.Conn {
	if c.tc != nil {
		return c.tc
	}
	return c.raw
}

func (c *tlsClient) write(s string) {
	c.t.Helper()
	fmt.Fprintf(&c.log, "C: %q\n", s)
	c.conn().SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn().Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one reply as "code text" (the lines of a multi-line reply
// joined by newlines); on an error it returns "error: ...".
func (c *tlsClient) read(timeout time.Duration) string {
	c.conn().SetReadDeadline(time.Now().Add(timeout))
	code, msg, err := c.r.ReadResponse(0)
	if err != nil {
		c.log.WriteString("S: <" + err.Error() + ">\n")
		return "error: " + err.Error()
	}
	r := fmt.Sprintf("%d %s", code, msg)
	c.log.WriteString("S: " + r + "\n")
	return r
}

func (c *tlsClient) want(what, got, prefix string) string {
	c.t.Helper()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want %q\n%s", what, got, prefix, c.log.String())
	}
	return got
}

func (c *tlsClient) cmd(line, prefix string) string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.want(line, c.read(30*time.Second), prefix)
}

// closed reports whether the gateway has closed the TLS connection (EOF,
// with or without close_notify) within timeout.
func (c *tlsClient) closed(timeout time.Duration) bool {
	r := c.read(timeout)
	return strings.HasPrefix(r, "error:") && strings.Contains(r, "EOF")
}

// TestSIGTERMLetsTLSDataFinish: SIGTERM while a STARTTLS session is in the
// middle of DATA (the next hop has begun receiving it, half the message
// sent). The session finishes: its DATA gets 250 over TLS, the message
// reaches the next hop exactly once, and then the session is told 421 4.3.2
// — through TLS, as a readable TLS record — and closed. An idle STARTTLS
// session is told 421 4.3.2 over TLS at once. The gateway then exits.
func TestSIGTERMLetsTLSDataFinish(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir(), "mx.campus.test")
	gw, hop := campus(t, func(s *site) { s.extra = fmt.Sprintf("tls: {cert: %q, key: %q}\n", cert, key) })
	hop.DataStarted = make(chan struct{}, 1)

	idle := dialTLS(t, "127.0.0.3", gw.SMTP, cert, "idle.example.org")
	busy := dialTLS(t, outside, gw.SMTP, cert, "client.example.org")
	busy.cmd("MAIL FROM:<bob@example.org>", "250 2.1.0")
	busy.cmd("RCPT TO:<alice@campus.test>", "250 2.1.5")
	busy.cmd("DATA", "354")
	busy.write(hdr("over TLS at shutdown") + "first half\r\n")
	waitDataStarted(t, hop)

	gw.Signal(syscall.SIGTERM)
	signalled := time.Now()

	r := idle.read(10 * time.Second)
	idleTook := time.Since(signalled)
	idle.want("idle TLS session at SIGTERM (read through TLS)", r, "421 4.3.2")
	t.Logf("idle TLS session: %q %v after SIGTERM", r, idleTook.Round(time.Millisecond))
	if idleTook > 5*time.Second {
		t.Errorf("idle TLS session told 421 %v after SIGTERM, want at once", idleTook)
	}
	if !idle.closed(10 * time.Second) {
		t.Errorf("idle TLS session not closed after its 421")
	}

	busy.write("second half\r\n.\r\n")
	busy.want("DATA in flight at SIGTERM", busy.read(30*time.Second), "250 2.0.0")
	busy.want("after the transaction, during shutdown (read through TLS)", busy.read(10*time.Second), "421 4.3.2")
	if !busy.closed(10 * time.Second) {
		t.Errorf("TLS session not closed after its 421")
	}

	if err := gw.Wait(15 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop holds %d messages, want exactly 1", len(msgs))
	}
	data := string(msgs[0].Data)
	if !strings.Contains(data, "first half\r\nsecond half\r\n") || !strings.Contains(data, "with ESMTPS id") {
		t.Errorf("relayed message lacks the whole body or the ESMTPS Received field:\n%s", data)
	}
	if n := hop.Aborted(); n != 0 {
		t.Errorf("next hop saw %d abandoned transfers, want 0", n)
	}
}
