// Package policy is the one place where sekisho decides what an SMTP client is
// told. Checks and the relay report verdicts and errors; policy turns them into
// replies, each with the RFC that defines its code next to it.
//
// The rule it enforces (DESIGN.md §1): an error that was not deliberately
// annotated with a reply — a panic, a context deadline, an unclassified I/O
// error — becomes a temporary 4xx with a generic text, never a 5xx and never
// the internal error text.
package policy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: the basic code (RFC 5321 §4.2), the enhanced status
// code (RFC 3463) and a human-readable text. A *Reply is also an error, so a
// function can return the reply it wants the client to get.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

// Error implements error; it is the reply as it appears on the wire.
func (r *Reply) Error() string { return r.String() }

// String formats the reply as one SMTP reply line, without CRLF. A reply
// without an enhanced code (the 3xx intermediate replies, RFC 2034 §2) has
// none on the wire.
func (r *Reply) String() string {
	b := make([]byte, 0, len(r.Text)+16)
	b = r.appendCodes(b, ' ')
	return string(append(b, r.Text...))
}

// appendCodes appends the basic code, sep, and the enhanced code with its
// space when there is one (strconv rather than fmt: every reply of every
// session passes here).
func (r *Reply) appendCodes(b []byte, sep byte) []byte {
	b = strconv.AppendInt(b, int64(r.Code), 10)
	b = append(b, sep)
	if r.Enhanced[0] != 0 {
		b = strconv.AppendInt(b, int64(r.Enhanced[0]), 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(r.Enhanced[1]), 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(r.Enhanced[2]), 10)
		b = append(b, ' ')
	}
	return b
}

// Wire is the reply as written to the client, CRLF included. A text with
// newlines becomes a multi-line reply (RFC 5321 §4.2.1), every line with the
// enhanced code (RFC 2034 §3). Any CR or control character in a text is
// replaced, so no reply can break the dialogue's framing.
func (r *Reply) Wire() string {
	b := make([]byte, 0, len(r.Text)+24)
	text := r.Text
	for {
		line, rest, more := strings.Cut(text, "\n")
		sep := byte(' ')
		if more {
			sep = '-'
		}
		b = r.appendCodes(b, sep)
		if printableASCII(line) {
			b = append(b, line...)
		} else {
			b = append(b, strings.Map(func(c rune) rune {
				if c < 32 || c == 127 {
					return '?'
				}
				return c
			}, line)...)
		}
		b = append(b, '\r', '\n')
		if !more {
			return string(b)
		}
		text = rest
	}
}

// printableASCII reports whether s has only octets 32 to 126, which Wire
// writes as they are.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] > 126 {
			return false
		}
	}
	return true
}

// Temporary reports whether the reply is a transient failure (4xx).
func (r *Reply) Temporary() bool { return r.Code/100 == 4 }

// Permanent reports whether the reply is a permanent failure (5xx).
func (r *Reply) Permanent() bool { return r.Code/100 == 5 }

// Withf returns a copy of r whose text is replaced by the formatted string.
// The codes stay those of r, so a check cannot change a reply's class by
// rewording it.
func (r *Reply) Withf(format string, args ...any) *Reply {
	c := *r
	c.Text = fmt.Sprintf(format, args...)
	return &c
}

// FromError is the single translation from any error to the reply a client
// gets. A *Reply anywhere in the chain is used as it is; everything else —
// context deadlines, network errors, bugs — becomes a generic temporary
// failure, so that an internal fault can delay mail but never bounce it.
func FromError(err error) *Reply {
	if err == nil {
		return nil
	}
	var r *Reply
	if errors.As(err, &r) {
		return r
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return TimeoutLocal
	}
	return TempLocal
}

// FromNextHop maps a next hop's reply onto the one we give our client: its 4xx
// stays a 4xx and its 5xx a 5xx (so a recipient refused downstream is refused
// here, and a deferral is a deferral). Anything else it might say — a 2xx where
// a failure was expected, a 3xx, garbage — is a temporary failure. An enhanced
// code whose class disagrees with the basic code is replaced by class.0.0, so
// a confused next hop cannot make us send "451 5.x.x".
func FromNextHop(code int, enhanced [3]int, text string) *Reply {
	class := code / 100
	if class != 4 && class != 5 {
		return NextHopTempFail.Withf("next hop gave unexpected reply %d: %s", code, text)
	}
	if enhanced[0] != class {
		enhanced = [3]int{class, 0, 0}
	}
	return &Reply{Code: code, Enhanced: enhanced, Text: "next hop says: " + text}
}
