package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// strictReader enforces RFC 5321 §2.3.8 on message data: a line ends with
// CRLF and nothing else. A bare CR or a bare LF — the raw material of SMTP
// smuggling, where a receiver that accepts "\n.\n" as end of data sees a second
// message we never saw — ends the message with a 550, and so does NUL, which
// some MTAs strip (making "\r\n\x00.\r\n" an end marker for them). It also
// enforces the line length and the message size, and turns the client's
// failures into replies: a read deadline into 421.
//
// It reads the message as DATA's dotReader or BDAT's chunks yield it
// (dot-unstuffed, the end marker removed), so both get the same checks.
type strictReader struct {
	r        io.Reader
	maxBytes int64 // 0: no limit
	maxLine  int   // CRLF included; 0: no limit
	n        int64
	line     int
	prevCR   bool
	err      error
}

// maxDataRead caps each read, so that the message streams to the next hop in
// pieces as the client sends it.
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
		s.line++
		switch {
		case s.prevCR && c != '\n', !s.prevCR && c == '\n':
			s.err = policy.BareLineEnding
		case c == 0:
			s.err = policy.NULInData
		case s.maxLine > 0 && s.line > s.maxLine:
			s.err = policy.LineTooLong
		}
		if s.err != nil {
			return i, s.err
		}
		s.prevCR = c == '\r'
		if c == '\n' {
			s.line = 0
		}
	}
	s.n += int64(n)
	if s.maxBytes > 0 && s.n > s.maxBytes {
		s.err = policy.MessageTooBig
		return 0, s.err
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

// dotReader frames the message of DATA (RFC 5321 §4.5.2): it yields the
// bytes up to the end marker, with the transparency dot of each line
// removed. The end marker is a line "." ending in CRLF right after a line
// ending in CRLF — exactly <CRLF>.<CRLF>, nothing looser — so a "\n.\n" or
// "\r\n.\n" inside the message is content (refused by strictReader as a
// bare line ending) and not the end of it: whatever a smuggler puts after it
// is read as part of the refused message, never as commands.
type dotReader struct {
	br *bufio.Reader
	// line holds the current line (or piece), its storage kept from line
	// to line; pending is what Read has not returned of it. (Appending to
	// pending itself, resliced by Read down to its end, allocated anew for
	// every line.)
	line        []byte
	pending     []byte
	atLineStart bool
	prevCRLF    bool
	lastCR      bool // the previous piece of this line ended in CR
	done        bool
	err         error
}

func (d *dotReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		switch {
		case d.done:
			return 0, io.EOF
		case d.err != nil:
			return 0, d.err
		}
		d.next()
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// next reads the next line (or the next piece of a long one).
func (d *dotReader) next() {
	frag, err := d.br.ReadSlice('\n')
	if d.atLineStart && err == nil && d.prevCRLF && string(frag) == ".\r\n" {
		d.done = true
		return
	}
	if d.atLineStart && len(frag) > 0 && frag[0] == '.' {
		frag = frag[1:]
	}
	d.line = append(d.line[:0], frag...)
	d.pending = d.line
	switch {
	case err == nil:
		// A CRLF may straddle two pieces of a line longer than the buffer.
		d.prevCRLF = bytes.HasSuffix(frag, []byte("\r\n")) || (string(frag) == "\n" && d.lastCR)
		d.atLineStart, d.lastCR = true, false
	case err == bufio.ErrBufferFull:
		d.atLineStart, d.lastCR = false, len(frag) > 0 && frag[len(frag)-1] == '\r'
	case err == io.EOF:
		d.err = io.ErrUnexpectedEOF
	default:
		d.err = err
	}
}

// drain reads and discards the rest of the message up to the end marker. It
// returns the client's failure, if any.
func (d *dotReader) drain() error {
	for !d.done && d.err == nil {
		d.pending = nil
		d.next()
	}
	d.pending = nil
	if d.done {
		return nil
	}
	return d.err
}

// clientReadErr annotates a failure reading from the client with the reply it
// deserves. An unannotated error would become a generic 451; these are known.
func clientReadErr(err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w (%w)", policy.DataTimeout, errClientFailed)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, errTransferAbandoned):
		return fmt.Errorf("%w: client went away during DATA (%w)", policy.TempLocal, errClientFailed)
	}
	return fmt.Errorf("%w (%w)", err, errClientFailed)
}

// errClientFailed marks a failure on the client's side of the data (a
// stall, a hang-up, an abandoned BDAT): not a decision about the mail, and
// not an infrastructure failure, so it is not counted for the reports.
var errClientFailed = errors.New("client side failed")

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

// stripOwnFields removes from an incoming header section the fields that
// only sekisho may write, so that a sender cannot forge our verdicts:
// X-Sekisho-* fields; Authentication-Results fields whose authserv-id is
// ours or cannot be read (RFC 8601 §5: an MTA removes those that claim to
// come from within its trust boundary; one whose identifier cannot be read
// may be taken for ours by a lenient reader); Received-SPF fields whose
// receiver= is ours (RFC 7208 §9.1), which would otherwise pass for our SPF
// verdict wherever we write none. Each field is judged whole, its
// continuation lines unfolded, and goes with them. Everything else is left
// byte for byte.
func stripOwnFields(hdr []byte, authservID string) []byte {
	out := make([]byte, 0, len(hdr))
	var field []byte // the current field: its first line and continuations
	end := func() {
		if !isOwnField(field, authservID) {
			out = append(out, field...)
		}
		field = field[:0]
	}
	for _, line := range bytes.SplitAfter(hdr, []byte("\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(field) > 0 {
			field = append(field, line...)
			continue
		}
		end()
		field = append(field, line...)
	}
	end()
	return out
}

// isOwnField reports whether a whole header field (first line and
// continuation lines) is one only sekisho may write.
func isOwnField(field []byte, authservID string) bool {
	name, value, ok := bytes.Cut(field, []byte(":"))
	if !ok || len(name) == 0 || name[0] == ' ' || name[0] == '\t' {
		return false
	}
	// obs-optional (RFC 5322 §4.5.1): white space before the colon; and a
	// colon on a continuation line ("Authentication-Results\r\n : ..."),
	// which a reader that unfolds first takes for the same field.
	n := strings.ToLower(strings.TrimRight(unfold(string(name)), " \t"))
	switch {
	case strings.HasPrefix(n, "x-sekisho-"):
		return true
	case n == "authentication-results":
		id, ok := authServID(string(value))
		return !ok || sameHost(id, authservID)
	case n == "received-spf":
		for _, r := range receivedSPFReceivers(string(value)) {
			if sameHost(r, authservID) {
				return true
			}
		}
	}
	return false
}

// authServID reads the authserv-id of an Authentication-Results field value
// (RFC 8601 §2.2: [CFWS] authserv-id [CFWS authres-version] ...). authres
// (go-msgauth) splits the field and reads the identifier and its version;
// it knows neither comments nor quoted strings, which RFC 8601 allows around
// and as the identifier (a value: a token or a quoted-string, RFC 2045), so
// those are normalised first: the field unfolded, comments replaced by a
// space, a quoted-string identifier unquoted. ok is false when no
// identifier can be read (authres refuses a version other than 1, too).
func authServID(value string) (id string, ok bool) {
	v := strings.TrimLeft(uncomment(unfold(value)), " \t")
	if strings.HasPrefix(v, `"`) {
		q, rest := unquote(v)
		v = q + " " + rest
	}
	// An error in the results after a readable identifier still names it:
	// only the identifier counts.
	id, _, _ = authres.Parse(v)
	return id, id != ""
}

// receivedSPFReceivers returns the values of the receiver= keys of a
// Received-SPF field value (RFC 7208 §9.1: result [comment] key-value-list,
// key-value-pair = key [CFWS] "=" (dot-atom / quoted-string), pairs
// separated by ";"), comments removed and quoted-string values unquoted.
// There should be one at most; a reader may take any of them.
func receivedSPFReceivers(value string) []string {
	var out []string
	for _, pair := range strings.Split(uncomment(unfold(value)), ";") {
		k, v, ok := strings.Cut(pair, "=")
		// The key is the last word before "=": the first pair follows the
		// result ("pass receiver=...").
		words := strings.Fields(k)
		if !ok || len(words) == 0 || !strings.EqualFold(words[len(words)-1], "receiver") {
			continue
		}
		v = strings.TrimLeft(v, " \t")
		if strings.HasPrefix(v, `"`) {
			v, _ = unquote(v)
		} else if f := strings.Fields(v); len(f) > 0 {
			v = f[0]
		}
		out = append(out, v)
	}
	return out
}

// sameHost compares two host names as domains: case and one trailing dot
// do not count, U-labels equal their A-labels (mailaddr.Fold).
func sameHost(a, b string) bool {
	return a != "" && mailaddr.Fold(a) == mailaddr.Fold(b)
}

// unfold removes the CRLFs of folding (RFC 5322 §2.2.3); the white space
// after them stays.
func unfold(v string) string {
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
}

// uncomment replaces each comment of a field value (RFC 5322 §3.2.2: nested
// parentheses, quoted-pairs) by one space; quoted strings are kept as they
// are, parentheses in them included. An unclosed comment runs to the end.
func uncomment(v string) string {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			if depth == 0 {
				b.WriteByte(c)
				if i+1 < len(v) {
					b.WriteByte(v[i+1])
				}
			}
			i++
		case depth > 0:
			switch c {
			case '(':
				depth++
			case ')':
				if depth--; depth == 0 {
					b.WriteByte(' ')
				}
			}
		case quoted:
			quoted = c != '"'
			b.WriteByte(c)
		case c == '"':
			quoted = true
			b.WriteByte(c)
		case c == '(':
			depth = 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unquote reads the quoted-string at the start of v (RFC 5322 §3.2.4) and
// returns its content, quoted-pairs resolved, and what follows it.
func unquote(v string) (content, rest string) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		case '"':
			return b.String(), v[i+1:]
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}
