package e2e

import (
	"strings"
	"testing"

	"sekisho/internal/harness"
)

// wireHop is one of the two test next hops, seen the same way by the tests
// about the bytes a message is made of: go-smtp's server (harness.NextHop)
// and a raw-socket server that shares no code with go-smtp
// (harness.RawNextHop). A quirk shared by go-smtp's client and server — the
// client once rewrote a bare LF to CRLF, and the server would never show it —
// cannot hide a defect from the raw one.
type wireHop struct {
	addr string
	raw  *harness.RawNextHop // nil for go-smtp's
	// received returns each accepted message: for go-smtp what its DATA
	// reader gave (unstuffed), for the raw next hop the exact bytes that
	// crossed the wire between 354 and the final dot, still dot-stuffed.
	received func() [][]byte
}

// wire is what received returns for a message whose content is msg (CRLF
// line endings): the raw next hop sees the transparency dots (RFC 5321
// §4.5.2), go-smtp's has removed them.
func (h *wireHop) wire(msg string) string {
	if h.raw == nil {
		return msg
	}
	if strings.HasPrefix(msg, ".") {
		msg = "." + msg
	}
	return strings.ReplaceAll(msg, "\r\n.", "\r\n..")
}

// forEachHop runs test once against each kind of next hop.
func forEachHop(t *testing.T, test func(t *testing.T, hop *wireHop)) {
	t.Run("go-smtp", func(t *testing.T) {
		h := harness.StartNextHop(t, false)
		test(t, &wireHop{addr: h.Addr, received: func() [][]byte {
			var out [][]byte
			for _, m := range h.Messages() {
				out = append(out, m.Data)
			}
			return out
		}})
	})
	t.Run("raw", func(t *testing.T) {
		h := harness.StartRawNextHop(t)
		wh := &wireHop{addr: h.Addr, raw: h, received: func() [][]byte {
			var out [][]byte
			for _, m := range h.Messages() {
				out = append(out, m.Wire)
			}
			return out
		}}
		defer wh.checkWire(t) // also after a t.Fatal in test
		test(t, wh)
	})
}

// campusVia starts a gateway relaying campus.test to the next hop at addr.
func campusVia(t *testing.T, addr string) *harness.Gateway {
	t.Helper()
	return harness.Start(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+addr)}}.yaml(t))
}

// checkWire fails unless every command line and every message the raw next
// hop received ends its lines with CRLF: no bare LF, no bare CR, whatever
// the client sent.
func (h *wireHop) checkWire(t *testing.T) {
	t.Helper()
	if h.raw == nil {
		return
	}
	for _, l := range h.raw.Lines() {
		if bareLineEnding([]byte(l)) || !strings.HasSuffix(l, "\r\n") {
			t.Errorf("the next hop got the command line %q", l)
		}
	}
	for _, m := range h.raw.Messages() {
		if bareLineEnding(m.Wire) {
			t.Errorf("the next hop got a bare CR or LF in DATA:\n%q", m.Wire)
		}
	}
}

// bareLineEnding reports whether b holds a CR not followed by LF or an LF
// not preceded by CR.
func bareLineEnding(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			return true
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			return true
		}
	}
	return false
}

// commandsWith returns the command lines of the raw next hop containing s.
func (h *wireHop) commandsWith(s string) []string {
	if h.raw == nil {
		return nil
	}
	var out []string
	for _, l := range h.raw.Lines() {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
