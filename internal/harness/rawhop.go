package harness

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RawNextHop is a next hop written on the bare socket, sharing no code with
// go-smtp: it records every command line and every DATA byte exactly as they
// crossed the wire — no line-ending repair, no dot-unstuffing, no trimming —
// so a quirk shared by go-smtp's client and go-smtp's server cannot hide a
// defect (go-smtp's client once rewrote a bare LF to CRLF, and go-smtp's
// server would never have shown it).
//
// DATA ends only at CRLF "." CRLF, as RFC 5321 §4.1.1.4 says; a bare LF or
// CR followed by a dot is message content here, and is recorded as such.
type RawNextHop struct {
	Addr string // where it listens: host:port, or the socket's path

	// Network and Listen say where to listen: "" and "" are a free port
	// on 127.0.0.1. Listen may name a TCP address ("127.0.0.2:2525");
	// Network "unix" listens on the socket Listen (a new one in the test's
	// temporary directory if Listen is "").
	Network, Listen string
	// LMTP speaks LMTP (RFC 2033): LHLO instead of EHLO, and after the
	// final dot one reply (DataReply's) per accepted recipient.
	LMTP bool
	// Greeting is the banner; "" means "220 rawhop.test ESMTP". After a
	// banner other than 2xx the connection is closed (see Linger).
	Greeting string
	// Extensions are the EHLO keywords offered; nil offers 8BITMIME,
	// SMTPUTF8 and ENHANCEDSTATUSCODES (no CHUNKING: DATA is what is
	// recorded), an empty slice none.
	Extensions []string
	// Reply, if set, may answer a command line instead of the default: it
	// gets the line verbatim (with its line ending) and returns a whole
	// reply such as "451 4.3.0 try later", or "" for the default, or
	// Silence or HangUp. A 421 reply closes the connection (see Linger).
	Reply func(line string) string
	// DataReply, if set, answers the end of DATA given the recorded bytes;
	// "" or nil means "250 2.0.0 ok". Like Reply it may return Silence or
	// HangUp, and a 421 closes the connection. Only a 2xx records the
	// message.
	DataReply func(wire []byte) string
	// Linger keeps the connection after a banner other than 2xx or a 421
	// reply instead of closing it: it answers nothing more and records
	// what the peer still sends until the peer hangs up, so that a test
	// sees whether the client went on regardless.
	Linger bool

	l           net.Listener
	changes     // guards what follows
	lines       []string
	messages    []RawMessage
	transcripts []*bytes.Buffer
	sessions    int
	ended       int
	dataEnds    int
	aborted     int
}

// Replies of Reply and DataReply that are not replies.
const (
	// Silence answers nothing, then or later: the connection is held, and
	// what the peer sends is still recorded, until the peer hangs up.
	Silence = "\x00silence"
	// HangUp closes the connection without a reply.
	HangUp = "\x00hang up"
)

// RawMessage is one message a RawNextHop accepted.
type RawMessage struct {
	From string // the MAIL FROM path, between < and >
	To   []string
	// Wire is every byte between the 354 and the final dot, exactly as
	// received: still dot-stuffed, ending with the CRLF before ".\r\n".
	Wire []byte
}

// Unstuffed returns the message with the transparency dots removed
// (RFC 5321 §4.5.2: a line beginning with a dot got one more) and nothing
// else changed: only a dot at the start of the data or after CRLF counts.
func (m RawMessage) Unstuffed() []byte {
	w := m.Wire
	if bytes.HasPrefix(w, []byte(".")) {
		w = w[1:]
	}
	return bytes.ReplaceAll(w, []byte("\r\n."), []byte("\r\n"))
}

// StartRawNextHop starts a raw next hop (on a free loopback port unless
// told otherwise). Its settings (Network, Listen, LMTP, Greeting,
// Extensions, Reply, DataReply, Linger) are made by the configure
// functions, which run before it listens: the fields are not to be changed
// once it serves (the connections read them without a lock).
func StartRawNextHop(t testing.TB, configure ...func(*RawNextHop)) *RawNextHop {
	t.Helper()
	h := &RawNextHop{}
	for _, f := range configure {
		f(h)
	}
	network, addr := h.Network, h.Listen
	if network == "" {
		network = "tcp"
	}
	if addr == "" {
		addr = "127.0.0.1:0"
		if network == "unix" {
			addr = filepath.Join(t.TempDir(), "rawhop.sock")
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	h.l, h.Addr = l, l.Addr().String()
	ServeConns(t, l, func(c net.Conn) {
		rec := &bytes.Buffer{}
		h.update(func() {
			h.sessions++
			h.transcripts = append(h.transcripts, rec)
		})
		h.serve(c, &recorder{h, rec})
		c.Close()
		h.update(func() { h.ended++ })
	})
	return h
}

// Close stops accepting connections (the port then refuses them).
func (h *RawNextHop) Close() { h.l.Close() }

// Lines returns every command line received so far, verbatim, line ending
// included (DATA content is not a command line).
func (h *RawNextHop) Lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.lines...)
}

// Transcripts returns, for each connection in the order they were
// accepted, every byte received on it so far: command lines and DATA
// content alike, exactly as they came.
func (h *RawNextHop) Transcripts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, b := range h.transcripts {
		out = append(out, b.String())
	}
	return out
}

// Messages returns the messages accepted so far.
func (h *RawNextHop) Messages() []RawMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]RawMessage(nil), h.messages...)
}

// Sessions counts the connections accepted.
func (h *RawNextHop) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions
}

// Aborted counts DATA transfers cut off before the final dot.
func (h *RawNextHop) Aborted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.aborted
}

// WaitLine waits until a command line beginning with prefix (in any case)
// was received; it reports false if that did not happen within timeout.
func (h *RawNextHop) WaitLine(prefix string, timeout time.Duration) bool {
	return h.wait(func() bool {
		for _, l := range h.lines {
			if len(l) >= len(prefix) && strings.EqualFold(l[:len(prefix)], prefix) {
				return true
			}
		}
		return false
	}, timeout)
}

// WaitData waits until n DATA transfers reached their final dot, whatever
// the reply; it reports false if that did not happen within timeout.
func (h *RawNextHop) WaitData(n int, timeout time.Duration) bool {
	return h.wait(func() bool { return h.dataEnds >= n }, timeout)
}

// WaitEnded waits until n connections have ended; it reports false if that
// did not happen within timeout.
func (h *RawNextHop) WaitEnded(n int, timeout time.Duration) bool {
	return h.wait(func() bool { return h.ended >= n }, timeout)
}

// recorder appends what a connection receives to its transcript.
type recorder struct {
	h   *RawNextHop
	buf *bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.h.update(func() { r.buf.Write(p) })
	return len(p), nil
}

const rawMaxData = 64 << 20

func (h *RawNextHop) serve(c net.Conn, rec io.Writer) {
	r := bufio.NewReader(io.TeeReader(c, rec))
	say := func(reply string) bool {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write([]byte(reply + "\r\n"))
		return err == nil
	}
	// readLine reads and records a command line.
	readLine := func() (string, error) {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		line, err := r.ReadString('\n')
		if err == nil {
			h.update(func() { h.lines = append(h.lines, line) })
		}
		return line, err
	}
	// hold answers nothing more and records what comes until the peer
	// hangs up.
	hold := func() {
		for {
			if _, err := readLine(); err != nil {
				return
			}
		}
	}
	// answer says a reply, or does what Silence or HangUp asks; it
	// reports whether the session goes on.
	answer := func(reply string) bool {
		switch {
		case reply == Silence:
			hold()
			return false
		case reply == HangUp:
			return false
		case !say(reply):
			return false
		case strings.HasPrefix(reply, "421"):
			if h.Linger {
				hold()
			}
			return false
		}
		return true
	}
	greeting := h.Greeting
	if greeting == "" {
		greeting = "220 rawhop.test ESMTP"
	}
	if !say(greeting) {
		return
	}
	if !strings.HasPrefix(greeting, "2") {
		if h.Linger {
			hold()
		}
		return
	}
	hello := "EHLO"
	if h.LMTP {
		hello = "LHLO"
	}
	var from string
	var to []string
	inMail := false
	for {
		line, err := readLine()
		if err != nil {
			return
		}
		if h.Reply != nil {
			if reply := h.Reply(line); reply != "" {
				if !answer(reply) {
					return
				}
				continue
			}
		}
		verb := strings.ToUpper(strings.TrimRight(line, "\r\n"))
		if i := strings.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		var ok bool
		switch verb {
		case hello:
			ext := h.Extensions
			if ext == nil {
				ext = []string{"8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"}
			}
			lines := append([]string{"rawhop.test"}, ext...)
			for i := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				lines[i] = "250" + sep + lines[i]
			}
			ok = say(strings.Join(lines, "\r\n"))
		case "HELO", "NOOP":
			ok = say("250 2.0.0 ok")
		case "RSET":
			from, to, inMail = "", nil, false
			ok = say("250 2.0.0 ok")
		case "MAIL":
			from, to, inMail = path(line), nil, true
			ok = say("250 2.1.0 ok")
		case "RCPT":
			if !inMail {
				ok = say("503 5.5.1 MAIL first")
				break
			}
			to = append(to, path(line))
			ok = say("250 2.1.5 ok")
		case "DATA":
			if len(to) == 0 {
				ok = say("503 5.5.1 no valid recipients")
				break
			}
			if ok = say("354 go ahead"); !ok {
				break
			}
			wire, err := readData(c, r)
			if err != nil {
				h.update(func() { h.aborted++ })
				return
			}
			h.update(func() { h.dataEnds++ })
			reply := ""
			if h.DataReply != nil {
				reply = h.DataReply(wire)
			}
			if reply == "" {
				reply = "250 2.0.0 ok"
			}
			if strings.HasPrefix(reply, "2") {
				h.update(func() { h.messages = append(h.messages, RawMessage{From: from, To: to, Wire: wire}) })
			}
			replies := 1
			if h.LMTP {
				replies = len(to)
			}
			from, to, inMail = "", nil, false
			ok = true
			for range replies {
				if ok = answer(reply); !ok {
					break
				}
			}
		case "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			ok = say("502 5.5.2 command not recognised")
		}
		if !ok {
			return
		}
	}
}

// readData reads up to CRLF "." CRLF and returns what came before the dot.
func readData(c net.Conn, r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		chunk, err := r.ReadBytes('\n')
		buf = append(buf, chunk...)
		if bytes.Equal(buf, []byte(".\r\n")) {
			return []byte{}, nil
		}
		if bytes.HasSuffix(buf, []byte("\r\n.\r\n")) {
			return buf[:len(buf)-3], nil
		}
		if err != nil {
			return nil, err
		}
		if len(buf) > rawMaxData {
			return nil, errors.New("message too large")
		}
	}
}

// path returns what lies between the first < and the next > of a MAIL or
// RCPT line ("" if there is none).
func path(line string) string {
	i := strings.IndexByte(line, '<')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(line[i:], '>')
	if j < 0 {
		return ""
	}
	return line[i+1 : i+j]
}
