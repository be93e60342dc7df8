package gateway

import (
	"bufio"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// writeCountingListener counts the writes made on the connections it
// accepts: each is one flush of the replies towards the client.
type writeCountingListener struct {
	net.Listener
	writes atomic.Int32
}

func (l *writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return writeCountingConn{c, &l.writes}, nil
}

type writeCountingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c writeCountingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// pipelineClient is a raw client of a gateway serving on a counting
// listener.
type pipelineClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
	l *writeCountingListener
}

func startPipelineGateway(t *testing.T) *pipelineClient {
	t.Helper()
	var l *writeCountingListener
	addr := startTestGateway(t, nil, func(inner net.Listener) net.Listener {
		l = &writeCountingListener{Listener: inner}
		return l
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a held reply would show as a timeout
	p := &pipelineClient{t: t, c: c, r: bufio.NewReader(c), l: l}
	p.expect("220 ")
	p.send("EHLO client.example.org\r\n")
	p.expect("250 ")
	return p
}

func (p *pipelineClient) send(s string) {
	p.t.Helper()
	if _, err := p.c.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads one reply (its last line) and checks how it starts.
func (p *pipelineClient) expect(prefix string) {
	p.t.Helper()
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("reading the reply %q: %v", prefix, err)
		}
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		if !strings.HasPrefix(line, prefix) {
			p.t.Fatalf("reply %q, want %q", line, prefix)
		}
		return
	}
}

// TestPipelinedGroupOneWrite: the replies to a pipelined MAIL, RCPT, RCPT,
// DATA group go out together (RFC 2920 §3.2 (4)), not in a write each.
func TestPipelinedGroupOneWrite(t *testing.T) {
	p := startPipelineGateway(t)
	before := p.l.writes.Load()
	p.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@campus.test>\r\nRCPT TO:<carol@campus.test>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		p.expect(want)
	}
	// One write when the group arrived in one piece, as it does on
	// loopback; four without the grouping. (Two would mean the kernel
	// split the group.)
	if n := p.l.writes.Load() - before; n >= 4 {
		t.Errorf("the four replies to a pipelined group took %d writes, want them grouped", n)
	} else {
		t.Logf("four replies in %d write(s)", n)
	}
}

// TestPipelinedRepliesNeverWait: a held reply goes out as soon as the
// gateway would wait for the client (RFC 2920 §3.2 (6)): after the group's
// last command, and when the next command has only partly arrived.
func TestPipelinedRepliesNeverWait(t *testing.T) {
	p := startPipelineGateway(t)
	p.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@campus.test>\r\n")
	p.expect("250 ")
	p.expect("250 ")
	p.send("RSET\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<al")
	p.expect("250 ") // RSET
	p.expect("250 ") // MAIL: its reply may not wait for the rest of RCPT
	p.send("ice@campus.test>\r\n")
	p.expect("250 ")
}

// TestOtherRepliesNotHeld: replies other than to MAIL, RCPT and RSET are sent
// at once even with more commands waiting (RFC 2920 §3.2 (5)).
func TestOtherRepliesNotHeld(t *testing.T) {
	p := startPipelineGateway(t)
	before := p.l.writes.Load()
	p.send("NOOP\r\nNOOP\r\nNOOP\r\n")
	for range 3 {
		p.expect("250 ")
	}
	if n := p.l.writes.Load() - before; n != 3 {
		t.Errorf("three NOOP replies took %d writes, want one each", n)
	}
}
