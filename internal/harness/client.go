package harness

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client is a raw SMTP client that keeps a transcript ("C: ..." / "S: ...")
// which failing tests print, so a failure reads like a mail log.
type Client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	log  strings.Builder
}

// Reply is one SMTP reply.
type Reply struct {
	Code int
	Text string // all lines joined with "\n", codes removed
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// Dial connects from 127.0.0.1 and reads the banner.
func Dial(t testing.TB, addr string) *Client { return DialFrom(t, "", addr) }

// DialFrom connects from a given loopback source address ("127.0.0.2" is
// outside a trusted 127.0.0.1/32) and reads the banner.
func DialFrom(t testing.TB, src, addr string) *Client {
	t.Helper()
	c := DialNoBanner(t, src, addr)
	if r := c.Read(); r.Code != 220 {
		t.Fatalf("banner: %v\n%s", r, c.Transcript())
	}
	return c
}

// DialNoBanner connects without reading the banner.
func DialNoBanner(t testing.TB, src, addr string) *Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() {
		conn.Close()
		if t.Failed() {
			t.Logf("SMTP transcript:\n%s", c.Transcript())
		}
	})
	return c
}

// Transcript returns the session so far.
func (c *Client) Transcript() string { return c.log.String() }

// Conn exposes the connection for tests that misbehave on purpose.
func (c *Client) Conn() net.Conn { return c.conn }

// Send writes a line, adding CRLF.
func (c *Client) Send(line string) {
	c.SendRaw(line + "\r\n")
}

// SendRaw writes bytes as they are.
func (c *Client) SendRaw(s string) {
	c.t.Helper()
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if i == 8 && len(lines) > 12 {
			fmt.Fprintf(&c.log, "C: ... (%d more lines)\n", len(lines)-9)
			l = lines[len(lines)-1]
			if l == "" {
				l = lines[len(lines)-2]
			}
			c.log.WriteString("C: " + strconv.Quote(l) + "\n")
			break
		}
		if l != "" {
			c.log.WriteString("C: " + strconv.Quote(l) + "\n")
		}
	}
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v\n%s", err, c.Transcript())
	}
}

// Read reads one reply (all its lines). On EOF or timeout it returns code 0
// with the error as text.
func (c *Client) Read() Reply {
	return c.ReadTimeout(30 * time.Second)
}

// ReadTimeout is Read with a deadline.
func (c *Client) ReadTimeout(d time.Duration) Reply {
	c.conn.SetReadDeadline(time.Now().Add(d))
	var texts []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.log.WriteString("S: <" + err.Error() + ">\n")
			return Reply{Code: 0, Text: err.Error()}
		}
		c.log.WriteString("S: " + strings.TrimRight(line, "\r\n") + "\n")
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return Reply{Code: 0, Text: "malformed reply: " + line}
		}
		code, _ := strconv.Atoi(line[:3])
		if len(line) > 4 {
			texts = append(texts, line[4:])
		}
		if len(line) == 3 || line[3] == ' ' {
			return Reply{Code: code, Text: strings.Join(texts, "\n")}
		}
	}
}

// Cmd sends a command and reads its reply.
func (c *Client) Cmd(line string) Reply {
	c.Send(line)
	return c.Read()
}

// Expect sends a command and fails the test unless the reply starts with
// want (e.g. "250", "554 5.7.1").
func (c *Client) Expect(line, want string) Reply {
	c.t.Helper()
	r := c.Cmd(line)
	if !strings.HasPrefix(r.String(), want) {
		c.t.Fatalf("%s: got %q, want %q\n%s", line, r.String(), want, c.Transcript())
	}
	return r
}

// Closed reports whether the server has closed the connection (a read gets
// EOF within the timeout).
func (c *Client) Closed(timeout time.Duration) bool {
	r := c.ReadTimeout(timeout)
	return r.Code == 0 && strings.Contains(r.Text, "EOF")
}

// Close closes the connection.
func (c *Client) Close() { c.conn.Close() }
