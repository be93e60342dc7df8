package relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// fakeHop is a raw-socket scripted SMTP/LMTP server on loopback: it answers
// scripted lines and records exactly the bytes it received, so that tests
// can check the wire and make a next hop misbehave in ways a real server
// library would not (silence, 421 at the greeting, closing mid-command).
// Set the script fields, then call start.
type fakeHop struct {
	// greeting is the banner line; "" accepts TCP and never says anything.
	greeting string
	// exts are the EHLO keywords announced ("8BITMIME", "SMTPUTF8",
	// "SIZE 1000").
	exts []string
	// replies by verb (EHLO, LHLO, MAIL, RCPT, DATA, "." for the final dot,
	// QUIT); a missing verb gets a success reply.
	replies map[string]string
	// silentAt: at this verb the server reads on and never answers.
	// closeAt: at this verb the server closes the connection.
	silentAt, closeAt string
	lmtp              bool   // one reply to the dot per accepted recipient
	network           string // "tcp" (default) or "unix"
	listenAddr        string // default 127.0.0.1:0 (tcp) or a temp socket

	Addr string
	ln   net.Listener

	// got receives each verb as the server reads it ("." once the data's
	// final dot arrived): the test's signal, instead of sleeping.
	got      chan string
	accepted chan *hopSession

	mu       sync.Mutex
	sessions []*hopSession
}

// hopSession records one connection.
type hopSession struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ended chan struct{} // closed when the connection is over
}

func (s *hopSession) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// Transcript is every byte the server received on this connection.
func (s *hopSession) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (h *fakeHop) start(t *testing.T) *fakeHop {
	t.Helper()
	if h.network == "" {
		h.network = "tcp"
	}
	if h.listenAddr == "" {
		h.listenAddr = "127.0.0.1:0"
		if h.network == "unix" {
			h.listenAddr = filepath.Join(t.TempDir(), "lmtp.sock")
		}
	}
	ln, err := net.Listen(h.network, h.listenAddr)
	if err != nil {
		t.Fatal(err)
	}
	h.ln, h.Addr = ln, ln.Addr().String()
	h.got = make(chan string, 256)
	h.accepted = make(chan *hopSession, 16)
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			s := &hopSession{ended: make(chan struct{})}
			h.mu.Lock()
			h.sessions = append(h.sessions, s)
			h.mu.Unlock()
			select {
			case h.accepted <- s:
			default:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.serve(c, s)
			}()
		}
	}()
	return h
}

// hop is the NextHop that reaches this server.
func (h *fakeHop) hop(t *testing.T) NextHop {
	t.Helper()
	s := "smtp://" + h.Addr
	switch {
	case h.network == "unix":
		s = "lmtp:unix:" + h.Addr
	case h.lmtp:
		s = "lmtp://" + h.Addr
	}
	nh, err := ParseNextHop(s)
	if err != nil {
		t.Fatal(err)
	}
	return nh
}

// Sessions returns the connections so far.
func (h *fakeHop) Sessions() []*hopSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*hopSession(nil), h.sessions...)
}

// Transcript is what the only (or first) connection received; "" if none.
func (h *fakeHop) Transcript() string {
	ss := h.Sessions()
	if len(ss) == 0 {
		return ""
	}
	return ss[0].Transcript()
}

// wait blocks until the server read verb.
func (h *fakeHop) wait(t *testing.T, verb string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v := <-h.got:
			if v == verb {
				return
			}
		case <-timeout:
			t.Fatalf("next hop %s never received %s; transcript %q", h.Addr, verb, h.Transcript())
		}
	}
}

// waitEnded blocks until the first connection is over.
func (h *fakeHop) waitEnded(t *testing.T) *hopSession {
	t.Helper()
	ss := h.Sessions()
	if len(ss) == 0 {
		t.Fatalf("next hop %s was never connected to", h.Addr)
	}
	select {
	case <-ss[0].ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("connection to %s never ended; transcript %q", h.Addr, ss[0].Transcript())
	}
	return ss[0]
}

func (h *fakeHop) reply(verb, def string) string {
	if r, ok := h.replies[verb]; ok {
		return r
	}
	return def
}

func verbOf(line string) string {
	line = strings.TrimRight(line, "\r\n")
	if i := strings.IndexAny(line, " :"); i >= 0 {
		line = line[:i]
	}
	return strings.ToUpper(line)
}

func (h *fakeHop) serve(c net.Conn, s *hopSession) {
	defer close(s.ended)
	defer c.Close()
	r := bufio.NewReader(io.TeeReader(c, s))
	say := func(line string) { io.WriteString(c, line+"\r\n") }
	drain := func() { io.Copy(io.Discard, r) }
	note := func(verb string) {
		select {
		case h.got <- verb:
		default:
		}
	}
	if h.greeting == "" {
		drain()
		return
	}
	say(h.greeting)
	if !strings.HasPrefix(h.greeting, "220") {
		drain()
		return
	}
	rcpts := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := verbOf(line)
		note(verb)
		if verb == h.silentAt {
			drain()
			return
		}
		if verb == h.closeAt {
			return
		}
		switch verb {
		case "EHLO", "LHLO":
			if rep, ok := h.replies[verb]; ok {
				say(rep)
				continue
			}
			lines := append([]string{"hop.test"}, h.exts...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				say("250" + sep + l)
			}
		case "HELO":
			say(h.reply(verb, "250 hop.test"))
		case "MAIL":
			say(h.reply(verb, "250 2.1.0 ok"))
		case "RCPT":
			rep := h.reply(verb, "250 2.1.5 ok")
			if strings.HasPrefix(rep, "2") {
				rcpts++
			}
			say(rep)
		case "DATA":
			rep := h.reply(verb, "354 go ahead")
			say(rep)
			if !strings.HasPrefix(rep, "354") {
				continue
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			note(".")
			if h.silentAt == "." {
				drain()
				return
			}
			if h.closeAt == "." {
				return
			}
			n := 1
			if h.lmtp {
				n = rcpts
			}
			for range n {
				say(h.reply(".", "250 2.0.0 queued"))
			}
			rcpts = 0
		case "QUIT":
			say("221 2.0.0 bye")
			return
		case "RSET", "NOOP":
			say("250 2.0.0 ok")
		default:
			say("500 5.5.1 unknown command")
		}
	}
}

// refusedAddr is a loopback port nobody listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mustHop(t *testing.T, s string) NextHop {
	t.Helper()
	h, err := ParseNextHop(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testTimeouts are short enough for tests, long enough for -race on busy
// cores.
var testTimeouts = Timeouts{Connect: 5 * time.Second, Command: 5 * time.Second, Data: 5 * time.Second, CallAhead: 20 * time.Second}

// newRouter is a router with one catch-all route through hops.
func newRouter(hops ...NextHop) *Router {
	return &Router{
		Routes:   Routes{{Domains: mailaddr.NewDomainSet([]string{"*"}), NextHops: hops}},
		Timeouts: testTimeouts,
		Hostname: "gw.campus.test",
	}
}

var (
	sender    = mailaddr.Address{Local: "alice", Domain: "sender.test"}
	recipient = mailaddr.Address{Local: "bob", Domain: "campus.test"}
)

// replyOf is the reply a client would get for err.
func replyOf(t *testing.T, err error) *policy.Reply {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	return policy.FromError(err)
}

func wantReply(t *testing.T, err error, code int, enhanced [3]int) {
	t.Helper()
	r := replyOf(t, err)
	if r.Code != code || r.Enhanced != enhanced {
		t.Fatalf("reply %v, want %d %d.%d.%d (error: %v)", r, code, enhanced[0], enhanced[1], enhanced[2], err)
	}
}

func begin(t *testing.T, r *Router, env Envelope) (Transaction, error) {
	t.Helper()
	tx, err := r.Begin(context.Background(), 0, "campus.test", env)
	if err == nil {
		t.Cleanup(tx.Abort)
	}
	return tx, err
}

const testMessage = "From: alice@sender.test\r\nTo: bob@campus.test\r\nSubject: hi\r\n\r\nHello.\r\n"
