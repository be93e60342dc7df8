package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/policy"
)

// strictReader enforces RFC 5321 §2.3.8 on message data: a line ends with
// CRLF and nothing else. A bare CR or a bare LF — the raw material of SMTP
// smuggling, where a receiver that accepts "\n.\n" as end of data sees a second
// message we never saw — ends the message with a 550, and so does NUL, which
// some MTAs strip (making "\r\n\x00.\r\n" an end marker for them).
//
// It reads what go-smtp's DATA reader yields (dot-unstuffed, the final
// ".\r\n" removed) and also turns the client-side failures into replies:
// a read deadline into 421, go-smtp's size limit into 552.
type strictReader struct {
	r      io.Reader
	prevCR bool
	err    error
}

// maxDataRead caps each read from go-smtp's DATA reader, which returns only
// once the caller's buffer is full: small reads keep the message streaming to
// the next hop as the client sends it.
const maxDataRead = 4 << 10

func (s *strictReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if len(p) > maxDataRead {
		p = p[:maxDataRead]
	}
	n, err := s.r.Read(p)
	for i := 0; i < n; i++ {
		c := p[i]
		switch {
		case s.prevCR && c != '\n', !s.prevCR && c == '\n':
			s.err = policy.BareLineEnding
		case c == 0:
			s.err = policy.NULInData
		}
		if s.err != nil {
			return i, s.err
		}
		s.prevCR = c == '\r'
	}
	if err == io.EOF && s.prevCR {
		s.err = policy.BareLineEnding
		return n, s.err
	}
	if err != nil && err != io.EOF {
		err = clientReadErr(err)
		s.err = err
	}
	return n, err
}

// clientReadErr annotates a failure reading from the client with the reply it
// deserves. An unannotated error would become a generic 451; these are known.
func clientReadErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		return policy.MessageTooBig
	case errors.Is(err, smtp.ErrTooLongLine):
		return policy.LineTooLong
	case errors.As(err, &ne) && ne.Timeout():
		return policy.DataTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%w: client went away during DATA", policy.TempLocal)
	}
	return err
}

// maxHeaderBytes bounds the header section sekisho reads into memory before
// deciding; the header check may set a smaller bound of its own.
const maxHeaderBytes = 1 << 20

// readHeader reads the header section, up to and including the empty line
// that ends it (or the whole message if it has none).
func readHeader(br *bufio.Reader) ([]byte, error) {
	var hdr bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		hdr.Write(line)
		if hdr.Len() > maxHeaderBytes {
			return nil, policy.HeaderTooBig
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return hdr.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		if string(line) == "\r\n" {
			return hdr.Bytes(), nil
		}
	}
}

// maxReceived is the hop count above which a message is taken to loop (RFC
// 5321 §6.3; Postfix's hopcount_limit is also 50).
const maxReceived = 50

// countReceived counts Received fields in a header section.
func countReceived(hdr []byte) int {
	n := 0
	for _, line := range bytes.Split(hdr, []byte("\r\n")) {
		if len(line) >= 9 && strings.EqualFold(string(line[:9]), "received:") {
			n++
		}
	}
	return n
}

// receivedHeader builds our trace field (RFC 5321 §4.4, with the protocol
// names of RFC 3848).
func receivedHeader(helo, clientIP, hostname, protocol, id string, rcpts []string, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (sekisho) with %s id %s", helo, clientIP, hostname, protocol, id)
	if len(rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", rcpts[0])
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// asReply reports whether err carries a deliberate reply.
func asReply(err error) (*policy.Reply, bool) {
	var r *policy.Reply
	ok := errors.As(err, &r)
	return r, ok
}

// stripOwnFields removes from an incoming header section the fields that
// only sekisho may write, so that a sender cannot forge our verdicts:
// X-Sekisho-* fields, and Authentication-Results fields that carry our
// authserv-id (RFC 8601 §5: an MTA removes those from incoming mail). A
// field's continuation lines go with it. Everything else is left byte for
// byte.
func stripOwnFields(hdr []byte, authservID string) []byte {
	lines := bytes.SplitAfter(hdr, []byte("\n"))
	out := make([]byte, 0, len(hdr))
	dropping := false
	for _, line := range lines {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !dropping {
				out = append(out, line...)
			}
			continue
		}
		dropping = isOwnField(line, authservID)
		if !dropping {
			out = append(out, line...)
		}
	}
	return out
}

func isOwnField(line []byte, authservID string) bool {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	n := strings.ToLower(strings.TrimSpace(string(name)))
	switch {
	case strings.HasPrefix(n, "x-sekisho-"):
		return true
	case n == "authentication-results":
		id, _, _ := strings.Cut(string(value), ";")
		// The authserv-id may be followed by a version number (RFC 8601
		// §2.2): compare the first word.
		fields := strings.Fields(id)
		return len(fields) > 0 && strings.EqualFold(fields[0], authservID)
	}
	return false
}
