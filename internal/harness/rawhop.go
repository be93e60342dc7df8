package harness

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
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
	Addr string

	// Greeting is the banner; "" means "220 rawhop.test ESMTP". After a
	// banner other than 2xx the connection is closed.
	Greeting string
	// Extensions are the EHLO keywords offered; nil offers 8BITMIME,
	// SMTPUTF8 and ENHANCEDSTATUSCODES (no CHUNKING: DATA is what is
	// recorded).
	Extensions []string
	// Reply, if set, may answer a command line instead of the default: it
	// gets the line verbatim (with its line ending) and returns a whole
	// reply such as "451 4.3.0 try later", or "" for the default. A 421
	// reply closes the connection.
	Reply func(line string) string
	// DataReply, if set, answers the end of DATA given the recorded bytes;
	// "" or nil means "250 2.0.0 ok". Only a 2xx records the message.
	DataReply func(wire []byte) string

	l        net.Listener
	mu       sync.Mutex
	lines    []string
	messages []RawMessage
	sessions int
	aborted  int
}

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

// StartRawNextHop starts a raw next hop on a free loopback port. Its replies
// (Greeting, Extensions, Reply, DataReply) are set by the configure
// functions, which run before it accepts anything: the fields are not to be
// changed once it serves (the connections read them without a lock).
func StartRawNextHop(t testing.TB, configure ...func(*RawNextHop)) *RawNextHop {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &RawNextHop{Addr: l.Addr().String(), l: l}
	for _, f := range configure {
		f(h)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.sessions++
			h.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				h.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
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

const rawMaxData = 64 << 20

func (h *RawNextHop) serve(c net.Conn) {
	r := bufio.NewReader(c)
	say := func(reply string) bool {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write([]byte(reply + "\r\n"))
		return err == nil
	}
	greeting := h.Greeting
	if greeting == "" {
		greeting = "220 rawhop.test ESMTP"
	}
	if !say(greeting) || !strings.HasPrefix(greeting, "2") {
		return
	}
	var from string
	var to []string
	inMail := false
	for {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		h.mu.Lock()
		h.lines = append(h.lines, line)
		h.mu.Unlock()
		if h.Reply != nil {
			if reply := h.Reply(line); reply != "" {
				if !say(reply) || strings.HasPrefix(reply, "421") {
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
		case "EHLO":
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
				h.mu.Lock()
				h.aborted++
				h.mu.Unlock()
				return
			}
			reply := ""
			if h.DataReply != nil {
				reply = h.DataReply(wire)
			}
			if reply == "" {
				reply = "250 2.0.0 ok"
			}
			if strings.HasPrefix(reply, "2") {
				h.mu.Lock()
				h.messages = append(h.messages, RawMessage{From: from, To: to, Wire: wire})
				h.mu.Unlock()
			}
			from, to, inMail = "", nil, false
			ok = say(reply)
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
