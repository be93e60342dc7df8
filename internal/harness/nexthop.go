package harness

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
)

// Message is one message a next hop accepted, byte for byte as received
// (dot-unstuffed, CRLF line endings).
type Message struct {
	From string
	To   []string
	Data []byte
}

// NextHop is a real SMTP (or LMTP) server on loopback (go-smtp's) that
// records the messages it accepts. Hooks decide its replies; a nil hook
// accepts. go-smtp normalises what it reads (line endings, dot-stuffing), so
// tests about the exact bytes on the wire use RawNextHop as well.
type NextHop struct {
	Addr string

	// OnMail decides the reply to MAIL FROM; nil accepts. Return a
	// *smtp.SMTPError for a given code (451 4.3.0, 550 5.7.1, …).
	OnMail func(from string) error
	// OnRcpt decides the reply to RCPT TO; nil accepts.
	OnRcpt func(to string) error
	// OnData decides the reply once the whole message was read; nil accepts.
	OnData func(m Message) error
	// DataStarted, if set, receives a value when a DATA begins (before its
	// bytes are read), so a test can act while the message is in flight.
	DataStarted chan struct{}

	srv      *smtp.Server
	mu       sync.Mutex
	messages []Message
	aborted  atomic.Int64
	conns    atomic.Int64
	open     []net.Conn // every connection accepted (DropConnections); guarded by mu
}

// StartNextHop starts a next hop on a free loopback port; lmtp selects LMTP.
func StartNextHop(t testing.TB, lmtp bool) *NextHop {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &NextHop{Addr: l.Addr().String()}
	h.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		h.conns.Add(1)
		h.mu.Lock()
		h.open = append(h.open, c.Conn())
		h.mu.Unlock()
		return &nextHopSession{h: h}, nil
	}))
	h.srv.Domain = "nexthop.test"
	h.srv.LMTP = lmtp
	h.srv.EnableSMTPUTF8 = true
	h.srv.ErrorLog = discardLogger{}
	go h.srv.Serve(l)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// Messages returns the messages accepted so far.
func (h *NextHop) Messages() []Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Message(nil), h.messages...)
}

// Aborted counts DATA transfers that ended without the final dot (the
// gateway abandoned them): such messages are discarded, as a real MTA does.
func (h *NextHop) Aborted() int { return int(h.aborted.Load()) }

// Sessions counts the SMTP sessions opened to this next hop.
func (h *NextHop) Sessions() int { return int(h.conns.Load()) }

// DropConnections closes every connection accepted so far, as a next hop
// does with an idle client (or when it restarts), while it keeps listening.
func (h *NextHop) DropConnections() {
	h.mu.Lock()
	open := h.open
	h.open = nil
	h.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// Close stops the next hop (the port then refuses connections).
func (h *NextHop) Close() { h.srv.Close() }

type nextHopSession struct {
	h    *NextHop
	from string
	to   []string
}

func (s *nextHopSession) Reset()        { s.from, s.to = "", nil }
func (s *nextHopSession) Logout() error { return nil }
func (s *nextHopSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.h.OnMail != nil {
		if err := s.h.OnMail(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}
func (s *nextHopSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.h.OnRcpt != nil {
		if err := s.h.OnRcpt(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *nextHopSession) Data(r io.Reader) error {
	if s.h.DataStarted != nil {
		s.h.DataStarted <- struct{}{}
	}
	data, err := io.ReadAll(r)
	if err != nil {
		s.h.aborted.Add(1)
		return err
	}
	m := Message{From: s.from, To: append([]string(nil), s.to...), Data: data}
	if s.h.OnData != nil {
		if err := s.h.OnData(m); err != nil {
			return err
		}
	}
	s.h.mu.Lock()
	s.h.messages = append(s.h.messages, m)
	s.h.mu.Unlock()
	return nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}
