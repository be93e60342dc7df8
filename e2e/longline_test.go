package e2e

import (
	"strings"
	"testing"

	"sekisho/internal/harness"
)

// TestLinesLongerThanTheReadBuffer: with max_line_length above the session's
// 4 KiB read buffer (gateway.go), a command line and message lines longer
// than the buffer are read in pieces and relayed byte for byte, including a
// CRLF that straddles two pieces and a dot-stuffed long line; the limit is
// still enforced on a line made of several pieces.
func TestLinesLongerThanTheReadBuffer(t *testing.T) {
	hop := harness.StartRawNextHop(t) // go-smtp's server has its own line limit
	gw := harness.Start(t, site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		limits: "max_line_length: 20000",
	}.yaml(t))
	c := dataSession(t, gw, "alice@campus.test")
	body := strings.Repeat("a", 9000) + "\r\n" +
		strings.Repeat("b", 4095) + "\r\n" + // CR ends a 4 KiB piece, LF begins the next
		strings.Repeat("d", 4096) + ".d\r\n" + // a piece that begins with a dot: content, not stuffing
		"." + strings.Repeat("c", 12000) + "\r\n" +
		"short\r\n"
	stuffed := strings.ReplaceAll(body, "\r\n.", "\r\n..")
	c.SendRaw(hdr("long lines") + stuffed + ".\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop has %d messages, want 1", len(msgs))
	}
	if got := string(msgs[0].Wire); !strings.HasSuffix(got, hdr("long lines")+stuffed) {
		t.Errorf("relayed message differs from the client's (%d octets received)", len(got))
	}
	c.Expect("NOOP "+strings.Repeat("n", 9000), "250")
	c.Send("NOOP " + strings.Repeat("n", 20001))
	if r := c.Read(); !strings.HasPrefix(r.String(), "500 5.5.2") {
		t.Errorf("a 20 kB command line: %v, want 500 5.5.2", r)
	}
}
